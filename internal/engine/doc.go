// Package engine runs guest machines behind one interface, so that the
// controller does not care whether an instance runs under azote-hv (hosts
// with hardware virtualization) or under QEMU (hosts without it, and CI).
//
// An engine process is started in a session of its own so that it outlives
// azoted: a restarted azoted re-adopts it from the Handle it persisted. The
// engine never emulates a disk or a network card itself; devices arrive as
// vhost-user cards. It never runs as root when given a uid (Spec.UID): it
// drops to it, with no capabilities, before it executes the engine, and
// hands it every file it needs as a descriptor.
package engine
