// Package store keeps azoted's durable state: instances, images and, later,
// volumes, keys and principals. It is one interface with an embedded bbolt
// implementation; every mutation runs in a single transaction so a crash
// leaves either the old or the new record, never half of one.
//
// The store never holds plaintext key material: callers store only wrapped
// keys and public metadata.
package store
