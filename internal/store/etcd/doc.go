// Package etcd is the state store of a fleet: store.Store over an etcd
// cluster (the v3 API; etcd 3.4 and later), so that azoted hosts sharing
// VPCs share their records, and store.Watcher, so that a host learns of a
// record another host wrote within a second.
//
// # Layout
//
// A record is the key <prefix>/<table>/<key> whose value is the record's
// JSON, byte for byte what bbolt stores. Each table also has a version
// key, <prefix>/<table> (no trailing slash, so no scan of the table sees
// it), that every transaction writing the table rewrites with its own
// random id. <prefix>/_fence/<id> fences off a commit whose outcome was
// unknown (below). Table names must not contain '/' nor start with '_';
// keys may hold anything. The prefix belongs to this package: nothing
// else may write under it.
//
// # Transactions
//
// Update runs fn against a transaction that reads from etcd at one
// revision, the one its first read saw, and buffers its writes (its reads
// see them). It then commits with one etcd transaction that compares
// every key it read against the modification revision it saw (zero for a
// key that was absent) and, for every table it scanned with ForEach, the
// table's version key: a scan is invalidated by any write to its table,
// which catches phantoms ("take the lowest free address" run on two hosts
// at once never hands out one address twice). When a compare fails, fn
// runs again on a fresh snapshot, after a short randomised backoff, at
// most Config.MaxAttempts times; then Update returns store.ErrConflict.
// The result is serializable: every committed transaction read exactly
// what was current when it committed. fn may therefore run more than
// once and must have no effect outside the transaction. View reads at
// one revision too and never writes.
//
// # Failure
//
// Every View, Update, Open and Watch call is bounded by Config.Timeout
// (3 s by default). A store that cannot reach a quorum of its cluster in
// that time returns an error wrapping store.ErrUnavailable and never
// hangs. A commit whose connection broke with the request in flight
// (the member it went to was killed) has an unknown outcome; while time
// is left, Update creates the commit's fence key, which the commit
// requires to be absent, so it can no longer apply, then reads the
// history of a version key it wrote: if its id is there the commit
// applied and Update returns nil, if not the function runs again. Only
// when the bound runs out first does Update return ErrUnavailable with
// the outcome unknown (a commit sent to a member that froze may still
// apply when it thaws); a caller that must know reads the record again.
// A commit refused before it was proposed (no leader) runs again within
// the bound. Watches
// outlive outages: they resume from the last revision they delivered when
// the cluster is back, and hand the receiver a store.Change with Resync
// set when that history has been compacted away.
//
// The package never stores anything but what its callers hand it (never
// key material in the clear: see package store), and it speaks to etcd
// only: it opens no listener.
package etcd
