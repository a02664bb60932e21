// Package virtio implements the device side of split virtqueues over guest
// memory shared by memfd (VIRTIO 1.2 section 2.7, "Split Virtqueues"), for
// the vhost-user backends that azote's cards run.
//
// It treats everything in guest memory as hostile: the driver can rewrite
// descriptors, rings and indices at any moment, from another CPU. Every
// descriptor is read exactly once into locals, and every index, address and
// length is validated (with overflow checks) before it is used: descriptor
// indices against the table they index, chain length against a bound that
// also ends loops, buffers against the guest memory map, total chain length
// against 4 GiB. A malformed chain is an error for that one request; a
// driver that corrupts the ring itself (an avail idx more than the queue
// size ahead, a head index beyond the table) gets a queue that reports
// ErrBroken until it is reset, which is the device's NEEDS_RESET. It never
// panics on guest input, never loops without bound, never returns a slice
// outside guest memory, and never allocates per request in steady state.
//
// Ring fields are little-endian in the spec, which is the native order of
// the hosts this package builds for (amd64, arm64 and the other
// little-endian ports). The 16-bit ring indices shared with the driver are
// read and written with sync/atomic through the aligned 32-bit word that
// holds them (Go has no 16-bit atomics); that code is in ring_unsafe.go.
//
// A Queue is driven by one goroutine at a time. A GuestMemory is immutable
// and may be shared by every queue of a device.
package virtio
