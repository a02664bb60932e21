package blk

import "github.com/azote/azote/internal/vhostuser"

// The device serves the backend's concurrent interface, and its requests
// may wait for the QoS budget, which a stopping ring cuts short.
var (
	_ vhostuser.ConcurrentDevice = (*Device)(nil)
	_ vhostuser.QueueWaiter      = (*Device)(nil)
)
