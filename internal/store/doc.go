// Package store keeps azoted's durable state: instances, volumes, images,
// IAM principals and policies, and the audit trail's anchors. It is one
// interface (Store, Tx) with two implementations: bbolt, embedded here,
// one file under the state directory (the single-host default), and etcd
// (package store/etcd), shared by the hosts of a fleet. Every mutation
// runs in a single transaction, so a crash leaves either the old or the
// new record, never half of one. Both also implement Watcher, which
// reports committed changes to a table; package storetest is the
// behaviour both are held to.
//
// The store never holds plaintext key material: callers store only wrapped
// keys (sealed by the host key) and public metadata. Only azoted links it:
// the CLI and the cards never do (test/trustdomains checks this).
package store
