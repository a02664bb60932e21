package vhostuser

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/virtio"
)

// Device is what a card implements; the backend does the protocol, the
// memory and the rings.
type Device interface {
	// Features returns the virtio device feature bits offered
	// (VERSION_1, EVENT_IDX and INDIRECT_DESC are added by the backend).
	Features() uint64
	NumQueues() int
	// Config returns the device configuration space.
	Config() []byte
	// Handle serves one request from queue q and returns the number of
	// bytes it wrote into the chain's writable buffers. chainErr is set
	// when the chain was malformed; the device should then answer with an
	// error status if it can find where to put one.
	Handle(q int, c *virtio.Chain, chainErr error) uint32
}

// ConcurrentDevice is a Device that can serve several requests of one
// queue at once: the worker hands up to Slots() chains to as many
// goroutines, each calling HandleSlot with its own slot number (so the
// device can keep per-slot buffers). Completions are published as they
// finish when the frontend set up inflight tracking, in ring order
// otherwise. Devices whose requests wait on a disk use it to keep the
// disk busy; Slots() of 1 means Handle, one request at a time.
type ConcurrentDevice interface {
	Device
	Slots() int
	HandleSlot(q, slot int, c *virtio.Chain, chainErr error) uint32
}

// QueueWaiter is a Device whose requests may wait inside Handle, as for a
// rate limit. The backend calls StopQueue(q) when ring q stops, before it
// waits for the requests the ring took to finish: a request waiting in the
// device must then go on at once (a frontend waits for GET_VRING_BASE with
// the guest paused). StartQueue(q) comes before the ring runs again.
type QueueWaiter interface {
	StopQueue(q int)
	StartQueue(q int)
}

// MaxQueueSize is the largest ring the backend accepts.
const MaxQueueSize = 1024

// Backend serves one Device to one frontend connection at a time.
type Backend struct {
	dev Device
	log *slog.Logger

	features, acked         uint64
	protocol, protocolAcked uint64
	mem                     *virtio.GuestMemory
	maps                    [][]byte
	vrings                  []*vring

	// ownInflightFD and ownInflight are the memfd GET_INFLIGHT_FD hands
	// out; inflight is the area in use, from GET or SET_INFLIGHT_FD.
	ownInflightFD int
	ownInflight   []byte
	inflight      *inflightArea
}

type vring struct {
	num     uint32
	addr    *VringAddr
	base    uint16
	kick    int
	call    int
	err     int
	enabled bool

	mu      sync.Mutex // guards call against SET_VRING_CALL replacing it while the worker signals
	worker  *worker
	lastIdx uint16 // last_avail when the worker stopped
}

// NewBackend prepares a backend for dev.
func NewBackend(dev Device, log *slog.Logger) *Backend {
	b := &Backend{dev: dev, log: log}
	b.features = dev.Features() | 1<<virtio.FVersion1 | 1<<virtio.FRingEventIdx | 1<<virtio.FRingIndirectDesc | 1<<FProtocolFeatures
	b.protocol = 1<<PFMQ | 1<<PFReplyAck | 1<<PFConfig | 1<<PFResetDevice
	for i := 0; i < dev.NumQueues(); i++ {
		b.vrings = append(b.vrings, &vring{kick: -1, call: -1, err: -1})
	}
	// Inflight tracking is always offered: a backend that follows one
	// whose rings completed out of order must take the area it left.
	// Without memory of its own, it answers GET_INFLIGHT_FD with an empty
	// area, and the frontend runs that life in ring order.
	b.protocol |= 1 << PFInflightShmfd
	fd, area, err := makeInflightMemfd(dev.NumQueues())
	if err != nil {
		log.Warn("no inflight tracking memory of its own; a new device completes requests in ring order", "err", err)
		fd = -1
	}
	b.ownInflightFD, b.ownInflight = fd, area
	return b
}

// Close releases the backend's own inflight memory; call it after the
// last Serve has returned.
func (b *Backend) Close() {
	b.dropInflight()
	if b.ownInflight != nil {
		unix.Munmap(b.ownInflight)
		b.ownInflight = nil
	}
	closeFD(&b.ownInflightFD)
}

// Serve speaks the protocol on c until the frontend disconnects or sends
// something malformed. On return every ring is stopped and the guest
// memory unmapped, so Serve can be called again for the next connection.
func (b *Backend) Serve(c *net.UnixConn) error {
	cn := newConn(c)
	defer cn.close()
	defer b.reset()
	for {
		m, err := cn.read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		reply, herr := b.handle(m)
		for _, fd := range m.FDs {
			if fd >= 0 && !b.keepsFD(fd) {
				unix.Close(fd)
			}
		}
		if herr != nil && errors.Is(herr, ErrMalformed) {
			return fmt.Errorf("%v: %w", m.Request, herr)
		}
		if herr != nil {
			b.log.Warn("vhost-user request failed", "request", m.Request.String(), "err", herr)
		}
		switch {
		case reply != nil:
			if err := cn.write(m.Request, flagVersion|flagReply, reply.payload, reply.fds); err != nil {
				return err
			}
		case m.NeedReply() && b.replyAck():
			status := uint64(0)
			if herr != nil {
				status = 1
			}
			if err := cn.write(m.Request, flagVersion|flagReply, u64Bytes(status), nil); err != nil {
				return err
			}
		}
	}
}

type replyMsg struct {
	payload []byte
	fds     []int
}

// replyAck tells whether REPLY_ACK was negotiated.
func (b *Backend) replyAck() bool {
	return b.protocolAcked&(1<<PFReplyAck) != 0
}

// keepsFD tells whether fd now belongs to a ring and must stay open.
func (b *Backend) keepsFD(fd int) bool {
	for _, r := range b.vrings {
		if r.kick == fd || r.call == fd || r.err == fd {
			return true
		}
	}
	return false
}

func (b *Backend) ring(i uint32) (*vring, error) {
	if int(i) >= len(b.vrings) {
		return nil, fmt.Errorf("%w: queue %d of %d", ErrMalformed, i, len(b.vrings))
	}
	return b.vrings[i], nil
}

func (b *Backend) handle(m *Message) (*replyMsg, error) {
	switch m.Request {
	case GetFeatures:
		return &replyMsg{payload: u64Bytes(b.features)}, nil
	case SetFeatures:
		v, err := m.U64()
		if err != nil {
			return nil, err
		}
		if v&^b.features != 0 {
			return nil, fmt.Errorf("%w: features %#x not offered", ErrMalformed, v&^b.features)
		}
		b.acked = v
		if fa, ok := b.dev.(FeatureAcker); ok {
			fa.AckFeatures(v)
		}
		return nil, nil
	case GetProtocolFeatures:
		return &replyMsg{payload: u64Bytes(b.protocol)}, nil
	case SetProtocolFeatures:
		v, err := m.U64()
		if err != nil {
			return nil, err
		}
		if v&^b.protocol != 0 {
			return nil, fmt.Errorf("%w: protocol features %#x not offered", ErrMalformed, v&^b.protocol)
		}
		b.protocolAcked = v
		return nil, nil
	case SetOwner, ResetOwner:
		return nil, nil
	case ResetDevice:
		b.stopAll()
		for _, r := range b.vrings {
			closeFD(&r.kick)
		}
		b.resetInflight()
		return nil, nil
	case GetQueueNum:
		n := len(b.vrings)
		if qn, ok := b.dev.(QueueNumDevice); ok {
			n = qn.QueueNum()
		}
		return &replyMsg{payload: u64Bytes(uint64(n))}, nil
	case SetMemTable:
		return nil, b.setMemTable(m)
	case SetVringNum:
		s, r, err := b.stateRing(m)
		if err != nil {
			return nil, err
		}
		if s.Num == 0 || s.Num > MaxQueueSize || s.Num&(s.Num-1) != 0 {
			return nil, fmt.Errorf("%w: queue size %d", ErrMalformed, s.Num)
		}
		r.num = s.Num
		return nil, nil
	case SetVringAddr:
		a, err := m.VringAddr()
		if err != nil {
			return nil, err
		}
		r, err := b.ring(a.Index)
		if err != nil {
			return nil, err
		}
		r.addr = &a
		return nil, nil
	case SetVringBase:
		s, r, err := b.stateRing(m)
		if err != nil {
			return nil, err
		}
		if s.Num > 0xffff {
			return nil, fmt.Errorf("%w: ring base %d", ErrMalformed, s.Num)
		}
		r.base = uint16(s.Num)
		return nil, nil
	case GetVringBase:
		s, r, err := b.stateRing(m)
		if err != nil {
			return nil, err
		}
		// A stopped ring starts again only at its next SET_VRING_KICK, with
		// whatever NUM, BASE and ADDR came before it: a driver that reset
		// the device has new rings, and a SET_VRING_ENABLE or SET_MEM_TABLE
		// sent meanwhile must not restart the old one.
		last := b.stopRing(r)
		closeFD(&r.kick)
		return &replyMsg{payload: VringState{Index: s.Index, Num: uint32(last)}.bytes()}, nil
	case SetVringKick, SetVringCall, SetVringErr:
		idx, fd, err := m.VringFile()
		if err != nil {
			return nil, err
		}
		r, err := b.ring(idx)
		if err != nil {
			return nil, err
		}
		switch m.Request {
		case SetVringKick:
			if fd < 0 {
				return nil, fmt.Errorf("%w: polling mode (no kick fd) is not supported", ErrUnsupported)
			}
			b.stopRing(r)
			closeFD(&r.kick)
			r.kick = fd
			if b.acked&(1<<FProtocolFeatures) == 0 {
				r.enabled = true
			}
			return nil, b.maybeStart(idx, r)
		case SetVringCall:
			r.mu.Lock()
			closeFD(&r.call)
			r.call = fd
			r.mu.Unlock()
			if r.worker != nil {
				// The ring runs already: whatever it completed may
				// have been signalled on the old eventfd, or not at all
				// (see worker.run); one call on the new one.
				signal(r, &r.call)
			}
		case SetVringErr:
			closeFD(&r.err)
			r.err = fd
		}
		return nil, nil
	case SetVringEnable:
		s, r, err := b.stateRing(m)
		if err != nil {
			return nil, err
		}
		r.enabled = s.Num == 1
		if r.enabled {
			return nil, b.maybeStart(s.Index, r)
		}
		b.stopRing(r)
		return nil, nil
	case GetConfig:
		c, err := m.Config()
		if err != nil {
			return nil, err
		}
		cfg := b.dev.Config()
		out := make([]byte, c.Size)
		if int(c.Offset) < len(cfg) {
			copy(out, cfg[c.Offset:])
		}
		return &replyMsg{payload: ConfigMsg{Offset: c.Offset, Flags: c.Flags, Data: out}.bytes()}, nil
	case SetConfig:
		// The configuration space of azote's devices is read-only.
		if _, err := m.Config(); err != nil {
			return nil, err
		}
		return nil, nil
	case SetBackendReqFD:
		return nil, nil
	case GetInflightFD:
		return b.getInflightFD(m)
	case SetInflightFD:
		return nil, b.setInflightFD(m)
	}
	return nil, fmt.Errorf("%w: %v", ErrUnsupported, m.Request)
}

// stateRing decodes a vring-state payload and finds its ring.
func (b *Backend) stateRing(m *Message) (VringState, *vring, error) {
	s, err := m.VringState()
	if err != nil {
		return s, nil, err
	}
	r, err := b.ring(s.Index)
	return s, r, err
}

func closeFD(fd *int) {
	if *fd >= 0 {
		unix.Close(*fd)
		*fd = -1
	}
}

func (b *Backend) setMemTable(m *Message) error {
	regions, err := m.MemTable()
	if err != nil {
		return err
	}
	// A region must lie inside its file: a page mapped past the end of a
	// file faults on first access (SIGBUS), which would stop the card.
	// (A file shrunk later still would; QEMU's memfd memory is sealed
	// against shrinking by default.)
	for i, r := range regions {
		var st unix.Stat_t
		if err := unix.Fstat(m.FDs[i], &st); err != nil {
			return fmt.Errorf("%w: memory region %d: %v", ErrMalformed, i, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG && (st.Size < 0 || uint64(st.Size) < r.MmapOffset+r.Size) {
			return fmt.Errorf("%w: memory region %d ends at %d, past its file's %d bytes", ErrMalformed, i, r.MmapOffset+r.Size, st.Size)
		}
	}
	b.stopAll()
	b.unmap()
	var vr []virtio.Region
	for i, r := range regions {
		data, err := unix.Mmap(m.FDs[i], 0, int(r.MmapOffset+r.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			b.unmap()
			return fmt.Errorf("mmap region %d: %w", i, err)
		}
		b.maps = append(b.maps, data)
		vr = append(vr, virtio.Region{GuestAddr: r.GuestAddr, Size: r.Size, UserAddr: r.UserAddr, Data: data[r.MmapOffset:]})
	}
	mem, err := virtio.NewGuestMemory(vr)
	if err != nil {
		b.unmap()
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	b.mem = mem
	// Rings whose setup finished before the table arrived start now.
	for i, r := range b.vrings {
		if err := b.maybeStart(uint32(i), r); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) unmap() {
	for _, d := range b.maps {
		unix.Munmap(d)
	}
	b.maps, b.mem = nil, nil
}

// maybeStart starts the worker of ring r once everything it needs is set.
func (b *Backend) maybeStart(idx uint32, r *vring) error {
	if r.worker != nil || !r.enabled || r.kick < 0 || r.addr == nil || r.num == 0 || b.mem == nil {
		return nil
	}
	desc, err1 := b.mem.UserToGuest(r.addr.Desc)
	avail, err2 := b.mem.UserToGuest(r.addr.Avail)
	used, err3 := b.mem.UserToGuest(r.addr.Used)
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Errorf("%w: ring %d addresses: %v", ErrMalformed, idx, err)
	}
	cfg := virtio.QueueConfig{
		Size: uint16(r.num), DescTable: desc, AvailRing: avail, UsedRing: used,
		EventIdx: b.acked&(1<<virtio.FRingEventIdx) != 0, Indirect: b.acked&(1<<virtio.FRingIndirectDesc) != 0,
		MaxChainLen: int(r.num) + 2,
	}
	q, err := virtio.NewQueue(b.mem, cfg, r.base)
	if err != nil {
		return fmt.Errorf("%w: ring %d: %v", ErrMalformed, idx, err)
	}
	var t *tracker
	if dd, ok := b.dev.(DrivenDevice); !ok || !dd.Driven(int(idx)) {
		// A driven ring completes in ring order and keeps no record.
		if t, err = b.tracker(int(idx), uint16(r.num)); err != nil {
			return err
		}
	}
	if t != nil {
		// With inflight tracking the region, not the frontend's base, says
		// where the ring resumes: a frontend that lost its backend sends
		// the used index, which out-of-order completion made meaningless.
		base, err := t.recover(q.UsedIdx(), r.base, uint16(r.num))
		if err != nil {
			return fmt.Errorf("%w: ring %d: %v", ErrMalformed, idx, err)
		}
		if len(t.resubmit) > 0 {
			b.log.Info("resubmitting requests in flight when the backend stopped", "queue", idx, "requests", len(t.resubmit))
		}
		if base != r.base {
			if q, err = virtio.NewQueue(b.mem, cfg, base); err != nil {
				return fmt.Errorf("%w: ring %d: %v", ErrMalformed, idx, err)
			}
		}
	}
	w, err := startWorker(b, int(idx), r, q, t)
	if err != nil {
		return err
	}
	r.worker = w
	return nil
}

// stopRing stops r's worker and returns the ring's last available index.
func (b *Backend) stopRing(r *vring) uint16 {
	if r.worker != nil {
		r.lastIdx = r.worker.stop()
		r.base = r.lastIdx
		r.worker = nil
	}
	return r.base
}

func (b *Backend) stopAll() {
	for _, r := range b.vrings {
		b.stopRing(r)
	}
}

// reset returns the backend to its state before any connection.
func (b *Backend) reset() {
	b.stopAll()
	b.unmap()
	for _, r := range b.vrings {
		closeFD(&r.kick)
		r.mu.Lock()
		closeFD(&r.call)
		r.mu.Unlock()
		closeFD(&r.err)
		*r = vring{kick: -1, call: -1, err: -1}
	}
	b.dropInflight()
	b.acked, b.protocolAcked = 0, 0
}
