// Package cardhost is azoted's side of every card: it starts a card
// process with its descriptors donated by name (Donation), hands it its
// configuration and key over a private socketpair, knows it ready when
// it has read them, re-adopts it after an azoted restart by pid and start
// time, restarts it when it dies (within a budget), takes an
// instance-store key back from a live card's escrow, stops it (TERM, then
// KILL) and scrapes its metrics. It also runs the one-shot rootfs card
// (RunRootfs).
//
// It knows card kinds (cardproto), not the records they serve: the
// controller says which file, which sockets, which key; cardhost never
// reads the state store and never decides who may use a volume. It never
// handles volume plaintext and never writes a key anywhere but into a
// card's private channel.
package cardhost
