package virtiommio

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/vhostuser"
)

// Card is a Backend served by a card over vhost-user. The kick eventfds
// (one per queue) and the call eventfd (shared by every queue: a
// virtio-mmio device has one interrupt line) are the VMM's: it registers
// them with KVM as ioeventfds on the notify register and as an irqfd on
// the device's GSI, so that the card and the guest reach each other
// without this process.
type Card struct {
	dev    *vhostuser.VMMDevice
	id     uint32
	config []byte
	kicks  []int
	call   int
}

// deviceConfigSize is what the transport reads of a card's configuration
// space: virtio_blk_config (60 bytes) and virtio_net_config fit.
const deviceConfigSize = 64

// NewCard wraps an opened card. id is the virtio device type; kicks has
// one eventfd per queue the transport shows (at most the card's), call
// the interrupt eventfd.
func NewCard(dev *vhostuser.VMMDevice, id uint32, kicks []int, call int) (*Card, error) {
	if len(kicks) == 0 || len(kicks) > dev.Queues() {
		return nil, fmt.Errorf("virtiommio: %d queues for a card that serves %d", len(kicks), dev.Queues())
	}
	cfg, err := dev.Config(deviceConfigSize)
	if err != nil {
		return nil, err
	}
	return &Card{dev: dev, id: id, config: cfg, kicks: kicks, call: call}, nil
}

func (c *Card) DeviceID() uint32 { return c.id }
func (c *Card) Features() uint64 { return c.dev.Features() }
func (c *Card) NumQueues() int   { return len(c.kicks) }

// ReadConfig reads the copy taken when the card was opened: blk's and
// net's configuration does not change while a guest runs.
func (c *Card) ReadConfig(off int, data []byte) {
	if off >= 0 && off < len(c.config) {
		copy(data, c.config[off:])
	}
}

func (c *Card) Activate(features uint64, rings []Ring) error {
	dr := make([]vhostuser.DeviceRing, len(rings))
	for i, r := range rings {
		dr[i] = vhostuser.DeviceRing{Index: r.Index, Size: r.Size, Desc: r.Desc, Driver: r.Driver, Used: r.Device,
			Kick: c.kicks[r.Index], Call: c.call, Disabled: !r.Ready}
	}
	return c.dev.Start(features, dr)
}

func (c *Card) Reset() error { return c.dev.Stop() }

// Kick forwards a notification that reached user space to the card.
func (c *Card) Kick(queue int) {
	if queue >= 0 && queue < len(c.kicks) {
		var one = [8]byte{1}
		unix.Write(c.kicks[queue], one[:])
	}
}
