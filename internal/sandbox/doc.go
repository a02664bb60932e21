// Package sandbox gives each process azoted starts (a card, an engine) an
// identity of its own: a uid, with the gid of the same number, taken from a
// subordinate range that nothing else on the host uses (Allocator), and it
// starts a program under such an identity with no capabilities and no way
// to gain any (Exec).
//
// It never hands out a uid that another live process runs under, whether
// azoted started that process or not, so two cards or two engines never
// share one, across azoted restarts too.
package sandbox
