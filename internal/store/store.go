package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Sentinel errors returned by every implementation.
var (
	ErrNotFound = errors.New("store: not found")
	ErrExists   = errors.New("store: already exists")
	// ErrUnavailable says the store could not reach its backing cluster
	// within its time bound. From Update it means the outcome is unknown:
	// the transaction may or may not have been applied. The embedded store
	// never returns it.
	ErrUnavailable = errors.New("store: unavailable")
	// ErrConflict says Update gave up after its transaction kept
	// conflicting with concurrent ones; nothing of it was applied.
	ErrConflict = errors.New("store: transaction kept conflicting with concurrent ones")
)

// Store is a set of named tables of JSON-encoded records keyed by string.
type Store interface {
	// View runs fn in a read-only transaction.
	View(fn func(Tx) error) error
	// Update runs fn in a read-write transaction; an error from fn rolls
	// every write in it back. fn may run more than once (the etcd store
	// runs it again when a concurrent transaction invalidated what it
	// read), so it must have no effect outside the transaction.
	Update(fn func(Tx) error) error
	Close() error
}

// Watcher is implemented by stores that report committed changes, so a
// process learns of a record another process (or another host) wrote
// without polling.
type Watcher interface {
	// Watch reports every change to table committed after Watch returns,
	// in commit order, until ctx is done or the store is closed; then the
	// channel is closed. A slow receiver never slows a commit: when it
	// falls too far behind, or the implementation cannot tell what it
	// missed, the pending changes are replaced by one Change with Resync
	// set, after which the receiver re-reads the table and goes on.
	Watch(ctx context.Context, table string) <-chan Change
}

// Change is one committed change to a record, as a Watcher reports it.
type Change struct {
	Table string
	Key   string
	// Deleted is set when the record was removed; Value is then nil.
	Deleted bool
	// Value is the record's JSON, as ForEach would hand it out. Every
	// receiver of the change shares it: read it, never modify it.
	Value []byte
	// Resync says changes may have been missed: Key and Value are empty,
	// and the receiver must re-read the whole table.
	Resync bool
}

// Tx is one transaction. It must not be used after the View or Update call
// that created it returns.
type Tx interface {
	// Get decodes the record table/key into v, or returns ErrNotFound.
	Get(table, key string, v any) error
	// Put encodes v as the record table/key, replacing any earlier one.
	Put(table, key string, v any) error
	// Create is Put that fails with ErrExists when the key is taken.
	Create(table, key string, v any) error
	// Delete removes table/key; deleting a missing key is not an error.
	Delete(table, key string) error
	// ForEach calls fn for each record of table in key order; fn decodes
	// the raw JSON itself. Returning an error stops the walk.
	ForEach(table string, fn func(key string, raw []byte) error) error
}

// All decodes every record of table, in key order.
func All[T any](tx Tx, table string) ([]T, error) {
	var out []T
	err := tx.ForEach(table, func(_ string, raw []byte) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("store: decode %s: %w", table, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}
