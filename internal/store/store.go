package store

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Sentinel errors returned by every implementation.
var (
	ErrNotFound = errors.New("store: not found")
	ErrExists   = errors.New("store: already exists")
)

// Store is a set of named tables of JSON-encoded records keyed by string.
type Store interface {
	// View runs fn in a read-only transaction.
	View(fn func(Tx) error) error
	// Update runs fn in a read-write transaction; an error from fn rolls
	// every write in it back.
	Update(fn func(Tx) error) error
	Close() error
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
