// Package keypairs owns azoted's SSH key pairs (table "key_pairs"): an
// imported public key or one azoted made, with EC2's semantics — names
// unique on the host's account, ed25519 and RSA of at least 2048 bits
// only, and fingerprints exactly as EC2 prints them (fingerprint.go).
//
// It never keeps a private key: one made by Create is returned once, to
// the caller, and leaves no trace in the store, the logs or the audit
// trail. A refusal leaves nothing made.
package keypairs
