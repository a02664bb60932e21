package etcd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/azote/azote/internal/store"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// scanPage bounds how many records one ForEach holds in memory at once.
const scanPage = 512

// tx is one run of a View or Update function: reads at one revision,
// writes buffered until commit.
type tx struct {
	s        *Store
	ctx      context.Context
	writable bool
	done     bool
	failed   error // the first read that failed: the transaction cannot commit

	rev     int64            // the snapshot's revision; 0 until the first read
	reads   map[string]read  // full key -> what the snapshot holds
	scanned map[string]int64 // table -> mod revision of its version key at rev
	writes  map[string]write // full key -> pending write
	order   []string         // full keys of writes, in the order first written
}

type read struct {
	modRev int64 // 0: absent
	value  []byte
}

type write struct {
	table   string
	key     string
	value   []byte
	deleted bool
}

func newTx(ctx context.Context, s *Store, writable bool) *tx {
	return &tx{s: s, ctx: ctx, writable: writable, reads: map[string]read{}, scanned: map[string]int64{}, writes: map[string]write{}}
}

// get reads key (or, with opts, a range) at the snapshot's revision,
// fixing the revision on the first read.
func (t *tx) get(op, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if t.rev != 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	resp, err := t.s.cli.Get(t.ctx, key, opts...)
	if err != nil {
		err = t.s.mapErr(t.ctx, op, err)
		if t.failed == nil {
			t.failed = err
		}
		return nil, err
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	return resp, nil
}

// readKey returns the record at full key in the snapshot, remembering its
// revision for the commit's compares.
func (t *tx) readKey(full string) (read, error) {
	if r, ok := t.reads[full]; ok {
		return r, nil
	}
	resp, err := t.get("get", full)
	if err != nil {
		return read{}, err
	}
	var r read
	if len(resp.Kvs) > 0 {
		r = read{modRev: resp.Kvs[0].ModRevision, value: resp.Kvs[0].Value}
	}
	t.reads[full] = r
	return r, nil
}

func (t *tx) check() error {
	if t.done {
		return errTxDone
	}
	return nil
}

func (t *tx) Get(table, key string, v any) error {
	if err := t.check(); err != nil {
		return err
	}
	if err := checkName(table, key); err != nil {
		return err
	}
	full := t.s.tablePrefix(table) + key
	var raw []byte
	if w, ok := t.writes[full]; ok {
		if w.deleted {
			return store.ErrNotFound
		}
		raw = w.value
	} else {
		r, err := t.readKey(full)
		if err != nil {
			return err
		}
		if r.modRev == 0 {
			return store.ErrNotFound
		}
		raw = r.value
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("store: decode %s/%s: %w", table, key, err)
	}
	return nil
}

func (t *tx) Put(table, key string, v any) error {
	if err := t.writeCheck(table, key); err != nil {
		return err
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encode %s/%s: %w", table, key, err)
	}
	t.buffer(write{table: table, key: key, value: raw})
	return nil
}

func (t *tx) Create(table, key string, v any) error {
	if err := t.writeCheck(table, key); err != nil {
		return err
	}
	full := t.s.tablePrefix(table) + key
	if w, ok := t.writes[full]; ok {
		if !w.deleted {
			return fmt.Errorf("%s/%s: %w", table, key, store.ErrExists)
		}
	} else {
		r, err := t.readKey(full)
		if err != nil {
			return err
		}
		if r.modRev != 0 {
			return fmt.Errorf("%s/%s: %w", table, key, store.ErrExists)
		}
	}
	return t.Put(table, key, v)
}

func (t *tx) Delete(table, key string) error {
	if err := t.writeCheck(table, key); err != nil {
		return err
	}
	t.buffer(write{table: table, key: key, deleted: true})
	return nil
}

func (t *tx) writeCheck(table, key string) error {
	if err := t.check(); err != nil {
		return err
	}
	if !t.writable {
		return errReadOnly
	}
	return checkName(table, key)
}

func (t *tx) buffer(w write) {
	full := t.s.tablePrefix(w.table) + w.key
	if _, ok := t.writes[full]; !ok {
		t.order = append(t.order, full)
	}
	t.writes[full] = w
}

// ForEach walks the table at the snapshot's revision, page by page,
// merged with the transaction's own writes, in key order. The table's
// version key joins the read set, so any write to the table by another
// transaction before this one commits makes it run again.
func (t *tx) ForEach(table string, fn func(key string, raw []byte) error) error {
	if err := t.check(); err != nil {
		return err
	}
	if err := checkTable(table); err != nil {
		return err
	}
	vresp, err := t.get("scan", t.s.versionKey(table))
	if err != nil {
		return err
	}
	var vrev int64
	if len(vresp.Kvs) > 0 {
		vrev = vresp.Kvs[0].ModRevision
	}
	t.scanned[table] = vrev

	prefix := t.s.tablePrefix(table)
	var pending []write // this transaction's writes to the table, by key
	for _, w := range t.writes {
		if w.table == table {
			pending = append(pending, w)
		}
	}
	slices.SortFunc(pending, func(a, b write) int { return strings.Compare(a.key, b.key) })
	// emit hands fn the pending writes that sort before key (or all of
	// them, with key ""), skipping deletions.
	emit := func(key string) error {
		for len(pending) > 0 && (key == "" || pending[0].key < key) {
			w := pending[0]
			pending = pending[1:]
			if !w.deleted {
				if err := fn(w.key, w.value); err != nil {
					return err
				}
			}
		}
		return nil
	}

	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	for {
		resp, err := t.get("scan", from, clientv3.WithRange(end), clientv3.WithLimit(scanPage))
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			key := string(kv.Key[len(prefix):])
			if err := emit(key); err != nil {
				return err
			}
			if len(pending) > 0 && pending[0].key == key {
				continue // this transaction replaced or deleted it: emit does the rest
			}
			if err := fn(key, kv.Value); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	return emit("")
}

// commit sends the buffered writes as one etcd transaction guarded by
// the read set; errConflict when another transaction got there first.
//
// The transaction also writes its id into the version key of each table
// it writes, and requires that its fence key does not exist. When the
// commit's outcome is unknown (the connection broke with the request in
// flight), resolve creates the fence key, after which the commit can
// never apply, and then looks whether it applied before: so the caller
// learns the outcome, and a commit that did not apply runs again.
func (t *tx) commit() error {
	if len(t.order) == 0 {
		return nil
	}
	id, err := newTxnID()
	if err != nil {
		return err
	}
	var ops []clientv3.Op
	tables := map[string]bool{}
	for _, full := range t.order {
		w := t.writes[full]
		if w.deleted {
			ops = append(ops, clientv3.OpDelete(full))
		} else {
			ops = append(ops, clientv3.OpPut(full, string(w.value)))
		}
		tables[w.table] = true
	}
	written := slices.Sorted(maps.Keys(tables))
	for _, table := range written {
		ops = append(ops, clientv3.OpPut(t.s.versionKey(table), id))
	}
	if len(ops) > t.s.maxTxnOps {
		return fmt.Errorf("store: etcd transaction writes %d records in %d tables: %d operations, more than the %d the cluster allows in one transaction",
			len(t.order), len(tables), len(ops), t.s.maxTxnOps)
	}
	cmps, err := t.compares()
	if err != nil {
		return err
	}
	fence := t.s.fenceKey(id)
	cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(fence), "=", 0))
	resp, err := t.s.cli.Txn(t.ctx).If(cmps...).Then(ops...).Commit()
	if errors.Is(err, rpctypes.ErrNoLeader) && t.ctx.Err() == nil {
		return fmt.Errorf("%w: %v", errNotProposed, err)
	}
	if err != nil {
		err = t.s.mapErr(t.ctx, "commit", err)
		if !errors.Is(err, store.ErrUnavailable) || t.ctx.Err() != nil {
			return err // refused, or no time left to find out
		}
		applied, rerr := t.resolve(id, fence, t.s.versionKey(written[0]))
		switch {
		case rerr != nil:
			return fmt.Errorf("%w (outcome unknown: %v)", err, rerr)
		case applied:
			return nil
		default:
			return fmt.Errorf("%w: %v", errNotProposed, err)
		}
	}
	if !resp.Succeeded {
		return errConflict
	}
	return nil
}

// fenceTTL is how long a fence key outlives the commit it fences off:
// far longer than any request can sit in a member before it is applied.
const fenceTTL = 24 * 60 * 60 // seconds

// resolve finds out whether the commit with id applied, after fencing it
// off, within the transaction's time bound.
func (t *tx) resolve(id, fence, vkey string) (bool, error) {
	// Create the fence key, as often as it takes: creating it twice is
	// harmless. It lives on a lease so that fences do not pile up.
	var lease clientv3.LeaseID
	for attempt := 1; ; attempt++ {
		var err error
		if lease == 0 {
			var g *clientv3.LeaseGrantResponse
			if g, err = t.s.cli.Grant(t.ctx, fenceTTL); err == nil {
				lease = g.ID
			}
		}
		if lease != 0 {
			if _, err = t.s.cli.Put(t.ctx, fence, "", clientv3.WithLease(lease)); err == nil {
				break
			}
		}
		if !sleep(t.ctx, backoff(attempt)) {
			return false, fmt.Errorf("could not fence the commit off: %w", err)
		}
	}
	// The commit can no longer apply. It did if its id is among the
	// values the version key took since the snapshot.
	base := int64(0)
	if resp, err := t.s.cli.Get(t.ctx, vkey, clientv3.WithRev(t.rev)); err != nil {
		return false, fmt.Errorf("read %s at the snapshot: %w", vkey, err)
	} else if len(resp.Kvs) > 0 {
		base = resp.Kvs[0].ModRevision
	}
	var opts []clientv3.OpOption
	for {
		resp, err := t.s.cli.Get(t.ctx, vkey, opts...)
		if err != nil {
			return false, fmt.Errorf("read the history of %s: %w", vkey, err)
		}
		if len(resp.Kvs) == 0 {
			return false, nil
		}
		kv := resp.Kvs[0]
		if string(kv.Value) == id {
			return true, nil
		}
		if kv.ModRevision <= base {
			return false, nil
		}
		opts = []clientv3.OpOption{clientv3.WithRev(kv.ModRevision - 1)}
	}
}

func newTxnID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("store: transaction id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// compares is the read set as etcd compares: a version key per scanned
// table, a mod revision per key read in a table that was not scanned.
// When that is more than one transaction may hold, the tables read key
// by key are guarded by their version keys instead: coarser (a write to
// another record of the table also conflicts) but as correct.
func (t *tx) compares() ([]clientv3.Cmp, error) {
	byTable := map[string][]string{}
	for full := range t.reads {
		table, _, _ := strings.Cut(full[len(t.s.prefix)+1:], "/")
		if _, ok := t.scanned[table]; !ok {
			byTable[table] = append(byTable[table], full)
		}
	}
	n := len(t.scanned)
	for _, keys := range byTable {
		n += len(keys)
	}
	limit := t.s.maxTxnOps - 1 // the commit adds its fence
	if n > limit {
		for table := range byTable {
			resp, err := t.get("commit", t.s.versionKey(table))
			if err != nil {
				return nil, err
			}
			var vrev int64
			if len(resp.Kvs) > 0 {
				vrev = resp.Kvs[0].ModRevision
			}
			t.scanned[table] = vrev
		}
		byTable = nil
		if len(t.scanned) > limit {
			return nil, fmt.Errorf("store: etcd transaction read %d tables, more than the %d compares the cluster allows in one transaction", len(t.scanned), limit)
		}
	}
	var cmps []clientv3.Cmp
	for table, vrev := range t.scanned {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(t.s.versionKey(table)), "=", vrev))
	}
	for _, keys := range byTable {
		for _, full := range keys {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(full), "=", t.reads[full].modRev))
		}
	}
	return cmps, nil
}
