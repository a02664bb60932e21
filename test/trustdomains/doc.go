// Package trustdomains holds the test that proves azote's trust domains with
// the linker: which internal packages each binary may link (go list -deps).
// A card that links the control plane, a CLI that links the state store or
// IAM evaluation, or an azoted that links the volume cipher fails it. It
// also keeps the table in docs/architecture.md of which binary links which
// internal package true to the code (TestLinkTable; -update rewrites it).
// It contains no code that ships.
package trustdomains
