// Package store keeps azoted's durable state: instances, volumes, images,
// IAM principals and policies, and the audit trail's anchors. It is one
// interface (Store, Tx) with an embedded bbolt implementation; every
// mutation runs in a single transaction, so a crash leaves either the old
// or the new record, never half of one.
//
// The store never holds plaintext key material: callers store only wrapped
// keys (sealed by the host key) and public metadata. Only azoted links it:
// the CLI and the cards never do (test/trustdomains checks this).
package store
