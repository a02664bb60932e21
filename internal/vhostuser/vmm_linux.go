package vhostuser

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/virtio"
)

// VMMDevice is the frontend side of one card's device for a VMM whose
// driver is a real guest: unlike Frontend it owns no memory and plays no
// driver. The VMM hands it the guest's memory regions (shared memfds),
// and when the guest driver has set a device up (virtio-mmio DRIVER_OK)
// it passes on the features the driver accepted and the rings the driver
// placed, each with the eventfd the guest's notifications arrive on (a
// KVM ioeventfd) and the one the card signals (a KVM irqfd). After that
// a request goes guest → card → guest without the VMM.
type VMMDevice struct {
	conn    *conn
	regions []GuestRegion
	// offered are the device's features (VHOST_USER_F_PROTOCOL_FEATURES
	// removed: it is the frontend's, never the driver's).
	offered  uint64
	protocol uint64
	queues   int // what the backend serves
	started  []int
}

// GuestRegion is a piece of guest memory the card maps: the memfd, where
// it is in the guest, and where it is mapped in this process (vhost-user
// ring addresses are in the frontend's address space).
type GuestRegion struct {
	FD         int
	GuestAddr  uint64
	Size       uint64
	UserAddr   uint64
	MmapOffset uint64
}

// DeviceRing is one ring as the guest driver placed it.
type DeviceRing struct {
	Index              int
	Size               uint16
	Desc, Driver, Used uint64 // guest physical addresses
	Kick, Call         int    // eventfds
	Base               uint16 // where the device starts in the available ring
	Disabled           bool   // the driver did not make it ready
}

// ErrNoRegion is returned for a ring outside every memory region.
var ErrNoRegion = errors.New("vhostuser: ring outside guest memory")

// OpenVMMDevice connects to the card's socket and negotiates what can be
// negotiated before a driver exists: protocol features, ownership, the
// memory table. want limits the device features offered to the guest
// (the VMM's transport supports only some).
func OpenVMMDevice(path string, regions []GuestRegion, want uint64) (*VMMDevice, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	d := &VMMDevice{conn: newConn(c), regions: regions}
	if err := d.open(want); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *VMMDevice) call(req Request, payload []byte, fds []int, wantReply bool) (*Message, error) {
	flags := uint32(flagVersion)
	ack := !wantReply && d.protocol&(1<<PFReplyAck) != 0
	if ack {
		flags |= flagNeedReply
	}
	if err := d.conn.write(req, flags, payload, fds); err != nil {
		return nil, err
	}
	if !wantReply && !ack {
		return nil, nil
	}
	m, err := d.conn.read()
	if err != nil {
		return nil, err
	}
	if m.Request != req || m.Flags&flagReply == 0 {
		for _, fd := range m.FDs {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("vhostuser: %v answered by %v", req, m.Request)
	}
	if ack {
		v, err := m.U64()
		if err != nil {
			return nil, err
		}
		if v != 0 {
			return nil, fmt.Errorf("vhostuser: %v refused (%d)", req, v)
		}
	}
	return m, nil
}

func (d *VMMDevice) getU64(req Request) (uint64, error) {
	m, err := d.call(req, nil, nil, true)
	if err != nil {
		return 0, err
	}
	return m.U64()
}

func (d *VMMDevice) open(want uint64) error {
	feat, err := d.getU64(GetFeatures)
	if err != nil {
		return err
	}
	if feat&(1<<virtio.FVersion1) == 0 {
		return errors.New("vhostuser: the device does not offer VIRTIO_F_VERSION_1")
	}
	if feat&(1<<FProtocolFeatures) != 0 {
		pf, err := d.getU64(GetProtocolFeatures)
		if err != nil {
			return err
		}
		// No inflight tracking: a card restart under azote-hv restarts
		// the device (a later change can bring QEMU's reconnect here).
		pf &= 1<<PFMQ | 1<<PFReplyAck | 1<<PFConfig
		if _, err := d.call(SetProtocolFeatures, u64Bytes(pf), nil, false); err != nil {
			return err
		}
		d.protocol = pf
	}
	d.offered = feat &^ (1 << FProtocolFeatures) & want
	if _, err := d.call(SetOwner, nil, nil, false); err != nil {
		return err
	}
	d.queues = 1
	if d.protocol&(1<<PFMQ) != 0 {
		n, err := d.getU64(GetQueueNum)
		if err != nil {
			return err
		}
		if n == 0 || n > 1024 {
			return fmt.Errorf("vhostuser: the device has %d queues", n)
		}
		d.queues = int(n)
	}
	if len(d.regions) == 0 || len(d.regions) > MaxRegions {
		return fmt.Errorf("vhostuser: %d memory regions", len(d.regions))
	}
	table := make([]MemRegion, len(d.regions))
	fds := make([]int, len(d.regions))
	for i, r := range d.regions {
		table[i] = MemRegion{GuestAddr: r.GuestAddr, Size: r.Size, UserAddr: r.UserAddr, MmapOffset: r.MmapOffset}
		fds[i] = r.FD
	}
	_, err = d.call(SetMemTable, memTableBytes(table), fds, false)
	return err
}

// Features are the device features the guest may accept.
func (d *VMMDevice) Features() uint64 { return d.offered }

// Queues is the number of queues the card serves (for net, queue pairs
// count twice).
func (d *VMMDevice) Queues() int { return d.queues }

// Config reads size bytes of the device's configuration space (the card
// answers only with PFConfig negotiated; zeros otherwise).
func (d *VMMDevice) Config(size int) ([]byte, error) {
	if d.protocol&(1<<PFConfig) == 0 {
		return make([]byte, size), nil
	}
	m, err := d.call(GetConfig, ConfigMsg{Data: make([]byte, size)}.bytes(), nil, true)
	if err != nil {
		return nil, err
	}
	c, err := m.Config()
	if err != nil {
		return nil, err
	}
	if len(c.Data) != size {
		return nil, fmt.Errorf("vhostuser: GET_CONFIG answered %d bytes, want %d", len(c.Data), size)
	}
	return c.Data, nil
}

// userAddr translates a guest physical range to this process's address.
func (d *VMMDevice) userAddr(gpa, n uint64) (uint64, error) {
	for _, r := range d.regions {
		if gpa >= r.GuestAddr && gpa-r.GuestAddr <= r.Size && n <= r.Size-(gpa-r.GuestAddr) {
			return r.UserAddr + (gpa - r.GuestAddr), nil
		}
	}
	return 0, fmt.Errorf("%w: [%#x, +%#x)", ErrNoRegion, gpa, n)
}

// Start gives the card the features the driver accepted and the rings it
// placed. Rings marked Disabled are left stopped.
func (d *VMMDevice) Start(features uint64, rings []DeviceRing) error {
	if features&^d.offered != 0 {
		return fmt.Errorf("vhostuser: driver features %#x beyond those offered %#x", features, d.offered)
	}
	if d.protocol != 0 || d.offered&(1<<FProtocolFeatures) != 0 {
		features |= 1 << FProtocolFeatures
	}
	if _, err := d.call(SetFeatures, u64Bytes(features), nil, false); err != nil {
		return err
	}
	for _, r := range rings {
		if r.Disabled {
			continue
		}
		if r.Index < 0 || r.Index >= d.queues {
			return fmt.Errorf("vhostuser: ring %d of a device with %d queues", r.Index, d.queues)
		}
		if r.Size == 0 || r.Size&(r.Size-1) != 0 {
			return fmt.Errorf("vhostuser: ring %d size %d", r.Index, r.Size)
		}
		n := uint64(r.Size)
		desc, err := d.userAddr(r.Desc, 16*n)
		if err != nil {
			return err
		}
		avail, err := d.userAddr(r.Driver, 6+2*n)
		if err != nil {
			return err
		}
		used, err := d.userAddr(r.Used, 6+8*n)
		if err != nil {
			return err
		}
		i := uint32(r.Index)
		steps := []struct {
			req     Request
			payload []byte
			fds     []int
		}{
			{SetVringNum, VringState{i, uint32(r.Size)}.bytes(), nil},
			{SetVringAddr, VringAddr{Index: i, Desc: desc, Used: used, Avail: avail}.bytes(), nil},
			{SetVringBase, VringState{i, uint32(r.Base)}.bytes(), nil},
			{SetVringCall, u64Bytes(uint64(i)), []int{r.Call}},
			{SetVringKick, u64Bytes(uint64(i)), []int{r.Kick}},
		}
		for _, s := range steps {
			if _, err := d.call(s.req, s.payload, s.fds, false); err != nil {
				return fmt.Errorf("%v: %w", s.req, err)
			}
		}
		if features&(1<<FProtocolFeatures) != 0 {
			if _, err := d.call(SetVringEnable, VringState{i, 1}.bytes(), nil, false); err != nil {
				return fmt.Errorf("%v: %w", SetVringEnable, err)
			}
		}
		d.started = append(d.started, r.Index)
	}
	return nil
}

// Stop stops every started ring (GET_VRING_BASE: the card answers once
// the requests it took are done), as a driver's reset asks.
func (d *VMMDevice) Stop() error {
	var first error
	for _, i := range d.started {
		if _, err := d.call(GetVringBase, VringState{uint32(i), 0}.bytes(), nil, true); err != nil && first == nil {
			first = err
		}
	}
	d.started = d.started[:0]
	return first
}

// Close disconnects; the card sees the device go.
func (d *VMMDevice) Close() error { return d.conn.close() }
