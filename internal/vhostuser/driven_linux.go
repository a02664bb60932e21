package vhostuser

import (
	"github.com/azote/azote/internal/virtio"
)

// DrivenDevice is a Device that fills some of its queues when it has
// something for the driver, not when the driver kicks: a network device's
// receive queues. For those queues the backend runs no worker; it hands
// the device the started ring instead.
type DrivenDevice interface {
	Device
	// Driven reports whether queue q is filled by the device.
	Driven(q int) bool
	// Attach hands the device queue q's ring when the ring starts. The
	// device drives it, from one goroutine at a time, until Detach(q).
	Attach(q int, r *Ring)
	// Detach returns once the device no longer touches the ring it was
	// given for q, with no chain popped and not pushed: the backend calls
	// it before the ring stops (GET_VRING_BASE, disable, reset,
	// disconnect).
	Detach(q int)
}

// QueueNumDevice is a Device whose answer to GET_QUEUE_NUM is not its
// number of queues: a network device counts queue pairs.
type QueueNumDevice interface {
	QueueNum() int
}

// FeatureAcker is a Device that needs to know which of its features the
// driver accepted (a network device: the header layout and offloads). The
// backend calls AckFeatures on SET_FEATURES, before any ring starts.
type FeatureAcker interface {
	AckFeatures(acked uint64)
}

// Ring is a started ring that its device drives. A driven ring completes
// in ring order and keeps no inflight record: a backend that restarts
// resumes from the used index the frontend gives back, which offers again
// every buffer the previous one took and did not return.
type Ring struct {
	q *virtio.Queue
	r *vring
}

// Pop takes the next available chain (virtio.Queue.Pop).
func (r *Ring) Pop(c *virtio.Chain) (bool, error) { return r.q.Pop(c) }

// Unpop gives back the last n chains popped (virtio.Queue.Unpop).
func (r *Ring) Unpop(n int) error { return r.q.Unpop(uint16(n)) }

// Push returns one chain; PushAll several, published at once.
func (r *Ring) Push(head uint16, n uint32) error { return r.q.Push(head, n) }

// PushAll returns several chains, published by one used index update.
func (r *Ring) PushAll(used []virtio.Used) error { return r.q.PushAll(used) }

// Notify signals the driver if it asked to be told of what was pushed
// since the last Notify.
func (r *Ring) Notify() {
	if r.q.NeedNotify() {
		signal(r.r, &r.r.call)
	}
}

// EnableNotifications asks the driver to kick when it adds buffers; Pop
// again afterwards before waiting (virtio.Queue.EnableNotifications).
func (r *Ring) EnableNotifications() { r.q.EnableNotifications() }

// DisableNotifications tells the driver kicks are not needed.
func (r *Ring) DisableNotifications() { r.q.DisableNotifications() }

// KickFD is the eventfd the driver's kicks arrive on: the device polls it
// (and reads it to clear) while it waits for buffers.
func (r *Ring) KickFD() int { return r.r.kick }

// Broken returns the error that broke the ring, or nil.
func (r *Ring) Broken() error { return r.q.Broken() }

// Size is the ring's number of entries.
func (r *Ring) Size() int { return int(r.q.Size()) }

// Fail tells the driver the ring is broken (the error eventfd), once the
// device saw the driver corrupt it.
func (r *Ring) Fail() { signal(r.r, &r.r.err) }
