package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/azote/azote/internal/store/watchq"
	bolt "go.etcd.io/bbolt"
)

// watchBacklog bounds the changes held for one watcher that is not
// reading; past it the watcher gets a Resync instead.
const watchBacklog = 1024

// Bolt is the embedded single-file implementation of Store. It is also a
// Watcher: its watches see the commits of this process (the only one that
// can open the file).
type Bolt struct {
	db     *bolt.DB
	ctx    context.Context // cancelled by Close: ends every watch
	cancel context.CancelFunc
	wg     sync.WaitGroup // the watches' goroutines

	// commitMu makes "commit, then publish" one step, so watchers see
	// commits in the order bbolt made them.
	commitMu sync.Mutex

	mu       sync.Mutex
	watchers map[*boltWatch]struct{}
}

type boltWatch struct {
	table string
	q     *watchq.Queue[Change]
}

// OpenBolt opens (creating if needed) the database at path, mode 0600. It
// fails fast instead of waiting when another process holds the file.
func OpenBolt(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Bolt{db: db, ctx: ctx, cancel: cancel, watchers: map[*boltWatch]struct{}{}}, nil
}

func (b *Bolt) View(fn func(Tx) error) error {
	return b.db.View(func(tx *bolt.Tx) error { return fn(&boltTx{tx: tx}) })
}

func (b *Bolt) Update(fn func(Tx) error) error {
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	var changes []Change
	err := b.db.Update(func(tx *bolt.Tx) error {
		t := &boltTx{tx: tx}
		if err := fn(t); err != nil {
			return err
		}
		changes = t.changes
		return nil
	})
	if err == nil && len(changes) > 0 {
		b.publish(changes)
	}
	return err
}

func (b *Bolt) publish(changes []Change) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for w := range b.watchers {
		for _, c := range changes {
			if c.Table == w.table {
				w.q.Push(c)
			}
		}
	}
}

// Watch implements Watcher for the commits of this process.
func (b *Bolt) Watch(ctx context.Context, table string) <-chan Change {
	out := make(chan Change)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctx.Err() != nil {
		close(out)
		return out
	}
	w := &boltWatch{table: table, q: watchq.New[Change](watchBacklog)}
	b.watchers[w] = struct{}{}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer stop()
		defer cancel()
		w.q.Run(ctx, out, Change{Table: table, Resync: true})
		b.mu.Lock()
		delete(b.watchers, w)
		b.mu.Unlock()
	}()
	return out
}

// Close ends every watch and closes the database.
func (b *Bolt) Close() error {
	b.mu.Lock()
	b.cancel()
	b.mu.Unlock()
	b.wg.Wait()
	return b.db.Close()
}

type boltTx struct {
	tx      *bolt.Tx
	changes []Change // what this transaction wrote, for the watchers
}

func (t *boltTx) Get(table, key string, v any) error {
	bk := t.tx.Bucket([]byte(table))
	if bk == nil {
		return ErrNotFound
	}
	raw := bk.Get([]byte(key))
	if raw == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("store: decode %s/%s: %w", table, key, err)
	}
	return nil
}

func (t *boltTx) Put(table, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encode %s/%s: %w", table, key, err)
	}
	bk, err := t.tx.CreateBucketIfNotExists([]byte(table))
	if err != nil {
		return fmt.Errorf("store: table %s: %w", table, err)
	}
	if err := bk.Put([]byte(key), raw); err != nil {
		return fmt.Errorf("store: put %s/%s: %w", table, key, err)
	}
	t.changes = append(t.changes, Change{Table: table, Key: key, Value: raw})
	return nil
}

func (t *boltTx) Create(table, key string, v any) error {
	if bk := t.tx.Bucket([]byte(table)); bk != nil && bk.Get([]byte(key)) != nil {
		return fmt.Errorf("%s/%s: %w", table, key, ErrExists)
	}
	return t.Put(table, key, v)
}

func (t *boltTx) Delete(table, key string) error {
	bk := t.tx.Bucket([]byte(table))
	if bk == nil || bk.Get([]byte(key)) == nil {
		return nil
	}
	if err := bk.Delete([]byte(key)); err != nil {
		return fmt.Errorf("store: delete %s/%s: %w", table, key, err)
	}
	t.changes = append(t.changes, Change{Table: table, Key: key, Deleted: true})
	return nil
}

func (t *boltTx) ForEach(table string, fn func(string, []byte) error) error {
	bk := t.tx.Bucket([]byte(table))
	if bk == nil {
		return nil
	}
	return bk.ForEach(func(k, v []byte) error { return fn(string(k), v) })
}
