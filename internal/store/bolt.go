package store

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bolt is the embedded single-file implementation of Store.
type Bolt struct {
	db *bolt.DB
}

// OpenBolt opens (creating if needed) the database at path, mode 0600. It
// fails fast instead of waiting when another process holds the file.
func OpenBolt(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

func (b *Bolt) View(fn func(Tx) error) error {
	return b.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b *Bolt) Update(fn func(Tx) error) error {
	return b.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

func (b *Bolt) Close() error { return b.db.Close() }

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) Get(table, key string, v any) error {
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

func (t boltTx) Put(table, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encode %s/%s: %w", table, key, err)
	}
	bk, err := t.tx.CreateBucketIfNotExists([]byte(table))
	if err != nil {
		return fmt.Errorf("store: table %s: %w", table, err)
	}
	return bk.Put([]byte(key), raw)
}

func (t boltTx) Create(table, key string, v any) error {
	if bk := t.tx.Bucket([]byte(table)); bk != nil && bk.Get([]byte(key)) != nil {
		return fmt.Errorf("%s/%s: %w", table, key, ErrExists)
	}
	return t.Put(table, key, v)
}

func (t boltTx) Delete(table, key string) error {
	bk := t.tx.Bucket([]byte(table))
	if bk == nil {
		return nil
	}
	return bk.Delete([]byte(key))
}

func (t boltTx) ForEach(table string, fn func(string, []byte) error) error {
	bk := t.tx.Bucket([]byte(table))
	if bk == nil {
		return nil
	}
	return bk.ForEach(func(k, v []byte) error { return fn(string(k), v) })
}
