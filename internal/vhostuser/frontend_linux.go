package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/virtio"
)

// Frontend drives a vhost-user backend the way QEMU does: it owns guest
// memory (a memfd), sets up the rings in it, and plays the virtio driver.
// Tests and benchmarks use it to reach a card without a guest.
type Frontend struct {
	conn     *conn
	memfd    int
	Mem      []byte // guest memory; guest physical address 0 is Mem[0]
	brk      uint64 // bump allocator for Alloc
	Features uint64
	Protocol uint64
	Queues   []*DriverQueue
	// inflightFD and inflight are the backend's inflight area, handed
	// back to every backend that replaces it.
	inflightFD int
	inflight   Inflight
}

// FrontendConfig says what to negotiate.
type FrontendConfig struct {
	MemSize   int
	NumQueues int
	QueueSize int
	// Features are the device features to accept in addition to
	// VERSION_1 and PROTOCOL_FEATURES (only those the backend offers).
	Features uint64
	// NoEventIdx declines VIRTIO_F_EVENT_IDX.
	NoEventIdx bool
	// NoInflight declines inflight I/O tracking, which QEMU uses when a
	// backend offers it; without it the backend completes in ring order.
	NoInflight bool
	// QueuePairs, for a network device, is the number of queue pairs
	// GET_QUEUE_NUM must reach (it counts pairs, not queues).
	QueuePairs int
}

// Dial connects to the backend at path and brings up every queue.
func Dial(path string, cfg FrontendConfig) (*Frontend, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	f := &Frontend{conn: newConn(c), memfd: -1, inflightFD: -1}
	if err := f.setup(cfg); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (f *Frontend) call(req Request, payload []byte, fds []int, wantReply bool) (*Message, error) {
	flags := uint32(flagVersion)
	ack := !wantReply && f.Protocol&(1<<PFReplyAck) != 0
	if ack {
		flags |= flagNeedReply
	}
	if err := f.conn.write(req, flags, payload, fds); err != nil {
		return nil, err
	}
	if !wantReply && !ack {
		return nil, nil
	}
	m, err := f.conn.read()
	if err != nil {
		return nil, err
	}
	if req != GetInflightFD || m.Request != req || m.Flags&flagReply == 0 {
		// The one reply that carries a descriptor is GET_INFLIGHT_FD's.
		for _, fd := range m.FDs {
			unix.Close(fd)
		}
		m.FDs = nil
	}
	if m.Request != req || m.Flags&flagReply == 0 {
		return nil, fmt.Errorf("vhostuser: reply %v to %v", m.Request, req)
	}
	if ack {
		v, err := m.U64()
		if err != nil {
			return nil, err
		}
		if v != 0 {
			return nil, fmt.Errorf("vhostuser: backend refused %v", req)
		}
	}
	return m, nil
}

func (f *Frontend) getU64(req Request) (uint64, error) {
	m, err := f.call(req, nil, nil, true)
	if err != nil {
		return 0, err
	}
	return m.U64()
}

func (f *Frontend) setup(cfg FrontendConfig) error {
	feat, err := f.getU64(GetFeatures)
	if err != nil {
		return err
	}
	want := uint64(1)<<virtio.FVersion1 | 1<<FProtocolFeatures | 1<<virtio.FRingEventIdx | cfg.Features
	if cfg.NoEventIdx {
		want &^= 1 << virtio.FRingEventIdx
	}
	f.Features = feat & want
	if f.Features&(1<<FProtocolFeatures) != 0 {
		pf, err := f.getU64(GetProtocolFeatures)
		if err != nil {
			return err
		}
		want := uint64(1<<PFMQ | 1<<PFReplyAck | 1<<PFConfig | 1<<PFInflightShmfd)
		if cfg.NoInflight {
			want &^= 1 << PFInflightShmfd
		}
		if _, err := f.call(SetProtocolFeatures, u64Bytes(pf&want), nil, false); err != nil {
			return err
		}
		f.Protocol = pf & want
	}
	if _, err := f.call(SetOwner, nil, nil, false); err != nil {
		return err
	}
	// As QEMU: the inflight area before the features and the rings.
	if f.Protocol&(1<<PFInflightShmfd) != 0 {
		if err := f.getInflight(cfg.NumQueues, cfg.QueueSize); err != nil {
			return err
		}
		if err := f.setInflight(); err != nil {
			return err
		}
	}
	if _, err := f.call(SetFeatures, u64Bytes(f.Features), nil, false); err != nil {
		return err
	}
	if f.Protocol&(1<<PFMQ) != 0 {
		n, err := f.getU64(GetQueueNum)
		if err != nil {
			return err
		}
		if cfg.QueuePairs > 0 && uint64(cfg.QueuePairs) > n {
			return fmt.Errorf("vhostuser: backend has %d queue pairs, want %d", n, cfg.QueuePairs)
		}
		if cfg.QueuePairs == 0 && uint64(cfg.NumQueues) > n {
			return fmt.Errorf("vhostuser: backend has %d queues, want %d", n, cfg.NumQueues)
		}
	}
	fd, err := unix.MemfdCreate("azote-frontend", unix.MFD_CLOEXEC)
	if err != nil {
		return err
	}
	f.memfd = fd
	if err := unix.Ftruncate(fd, int64(cfg.MemSize)); err != nil {
		return err
	}
	f.Mem, err = unix.Mmap(fd, 0, cfg.MemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	f.brk = 4096
	region := MemRegion{GuestAddr: 0, Size: uint64(cfg.MemSize), UserAddr: addrOf(f.Mem), MmapOffset: 0}
	if _, err := f.call(SetMemTable, memTableBytes([]MemRegion{region}), []int{fd}, false); err != nil {
		return err
	}
	for i := 0; i < cfg.NumQueues; i++ {
		q, err := f.setupQueue(i, cfg.QueueSize, 0)
		if err != nil {
			return err
		}
		f.Queues = append(f.Queues, q)
	}
	return nil
}

// getInflight asks the backend for its inflight area, as QEMU does before
// it first starts the rings.
func (f *Frontend) getInflight(queues, size int) error {
	m, err := f.call(GetInflightFD, Inflight{NumQueues: uint16(queues), QueueSize: uint16(size)}.bytes(), nil, true)
	if err != nil {
		return err
	}
	in, err := m.Inflight()
	if err == nil && in.MmapSize == 0 && len(m.FDs) == 0 {
		// The backend has no area to give: no tracking, as QEMU does.
		return nil
	}
	if err != nil || len(m.FDs) != 1 {
		for _, fd := range m.FDs {
			unix.Close(fd)
		}
		return fmt.Errorf("vhostuser: GET_INFLIGHT_FD reply with %d fds: %v", len(m.FDs), err)
	}
	f.inflightFD, f.inflight = m.FDs[0], in
	return nil
}

// setInflight hands the inflight area, if there is one, to the backend.
func (f *Frontend) setInflight() error {
	if f.inflightFD < 0 {
		return nil
	}
	_, err := f.call(SetInflightFD, f.inflight.bytes(), []int{f.inflightFD}, false)
	return err
}

// Alloc reserves n bytes of guest memory, 64-byte aligned, and returns the
// guest physical address and the host view.
func (f *Frontend) Alloc(n int) (uint64, []byte, error) {
	start := (f.brk + 63) &^ 63
	if start+uint64(n) > uint64(len(f.Mem)) {
		return 0, nil, errors.New("vhostuser: frontend guest memory exhausted")
	}
	f.brk = start + uint64(n)
	return start, f.Mem[start : start+uint64(n)], nil
}

// GetConfig reads size bytes of the device configuration space.
func (f *Frontend) GetConfig(size int) ([]byte, error) {
	m, err := f.call(GetConfig, ConfigMsg{Data: make([]byte, size)}.bytes(), nil, true)
	if err != nil {
		return nil, err
	}
	c, err := m.Config()
	if err != nil {
		return nil, err
	}
	return c.Data, nil
}

func (f *Frontend) setupQueue(i, size int, base uint16) (*DriverQueue, error) {
	descGPA, _, err := f.Alloc(16 * size)
	if err != nil {
		return nil, err
	}
	availGPA, _, err := f.Alloc(8 + 2*size) // 2 bytes of padding after used_event
	if err != nil {
		return nil, err
	}
	usedGPA, _, err := f.Alloc(6 + 8*size)
	if err != nil {
		return nil, err
	}
	q := &DriverQueue{f: f, index: i, size: uint16(size), desc: descGPA, avail: availGPA, used: usedGPA,
		eventIdx: f.Features&(1<<virtio.FRingEventIdx) != 0, kick: -1, callfd: -1}
	q.resetFree()
	if err := q.connect(base); err != nil {
		return nil, err
	}
	return q, nil
}

// Close disconnects and releases guest memory.
func (f *Frontend) Close() error {
	for _, q := range f.Queues {
		q.closeFDs()
	}
	if f.Mem != nil {
		unix.Munmap(f.Mem)
	}
	if f.memfd >= 0 {
		unix.Close(f.memfd)
	}
	if f.inflightFD >= 0 {
		unix.Close(f.inflightFD)
	}
	return f.conn.close()
}

// Reconnect replaces a dead backend connection: it dials path again and
// resends the inflight area, the memory table and every ring, with each
// ring's base at its used index, as QEMU does when it lost the backend: an
// in-order backend resumes there, a tracking one from its inflight area.
func (f *Frontend) Reconnect(path string, timeout time.Duration) error {
	f.conn.close()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err == nil {
			f.conn = newConn(c)
			break
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	feat, err := f.getU64(GetFeatures)
	if err != nil {
		return err
	}
	if feat&f.Features != f.Features {
		return errors.New("vhostuser: the restarted backend offers fewer features")
	}
	if f.Features&(1<<FProtocolFeatures) != 0 {
		pf, err := f.getU64(GetProtocolFeatures)
		if err != nil {
			return err
		}
		if pf&f.Protocol != f.Protocol {
			// Without the inflight area a ring that completed out of
			// order cannot be resumed.
			return fmt.Errorf("vhostuser: the restarted backend offers protocol features %#x, the connection had %#x", pf, f.Protocol)
		}
		if _, err := f.call(SetProtocolFeatures, u64Bytes(f.Protocol), nil, false); err != nil {
			return err
		}
	}
	for _, step := range []func() error{
		func() error { _, err := f.call(SetOwner, nil, nil, false); return err },
		f.setInflight,
		func() error { _, err := f.call(SetFeatures, u64Bytes(f.Features), nil, false); return err },
		func() error {
			region := MemRegion{GuestAddr: 0, Size: uint64(len(f.Mem)), UserAddr: addrOf(f.Mem)}
			_, err := f.call(SetMemTable, memTableBytes([]MemRegion{region}), []int{f.memfd}, false)
			return err
		},
	} {
		if err := step(); err != nil {
			return err
		}
	}
	for _, q := range f.Queues {
		q.closeFDs()
		if err := q.connect(q.usedIdx()); err != nil {
			return err
		}
	}
	return nil
}

// DriverReset does what QEMU does when the guest driver resets the device
// and sets it up again (a Debian guest does at boot): it stops every ring
// (GET_VRING_BASE), sends the SET_VRING_ENABLE QEMU sends while the rings
// are stopped, gets a fresh inflight area if it tracks, and then sends
// SET_FEATURES, SET_MEM_TABLE and each ring anew at fresh addresses from
// index 0, the driver having forgotten its old rings.
func (f *Frontend) DriverReset() error {
	for _, q := range f.Queues {
		if _, err := q.Stop(); err != nil {
			return fmt.Errorf("GET_VRING_BASE: %w", err)
		}
	}
	if f.Features&(1<<FProtocolFeatures) != 0 {
		for _, q := range f.Queues {
			if _, err := f.call(SetVringEnable, VringState{uint32(q.index), 1}.bytes(), nil, false); err != nil {
				return err
			}
		}
	}
	if f.inflightFD >= 0 {
		unix.Close(f.inflightFD)
		f.inflightFD = -1
		if err := f.getInflight(len(f.Queues), int(f.Queues[0].size)); err != nil {
			return err
		}
		if err := f.setInflight(); err != nil {
			return err
		}
	}
	if _, err := f.call(SetFeatures, u64Bytes(f.Features), nil, false); err != nil {
		return err
	}
	region := MemRegion{GuestAddr: 0, Size: uint64(len(f.Mem)), UserAddr: addrOf(f.Mem)}
	if _, err := f.call(SetMemTable, memTableBytes([]MemRegion{region}), []int{f.memfd}, false); err != nil {
		return err
	}
	for i, old := range f.Queues {
		old.closeFDs()
		q, err := f.setupQueue(i, int(old.size), 0)
		if err != nil {
			return err
		}
		f.Queues[i] = q
	}
	return nil
}

// DriverQueue is the driver side of one split virtqueue.
type DriverQueue struct {
	f                 *Frontend
	index             int
	size              uint16
	desc, avail, used uint64
	eventIdx          bool
	kick, callfd      int
	free              []uint16
	nextAvail         uint16
	lastUsed          uint16
	lens              []uint16 // chain length by head
}

func (q *DriverQueue) resetFree() {
	q.free = q.free[:0]
	for i := int(q.size) - 1; i >= 0; i-- {
		q.free = append(q.free, uint16(i))
	}
}

func (q *DriverQueue) closeFDs() {
	if q.kick >= 0 {
		unix.Close(q.kick)
		q.kick = -1
	}
	if q.callfd >= 0 {
		unix.Close(q.callfd)
		q.callfd = -1
	}
}

func (q *DriverQueue) connect(base uint16) error {
	var err error
	if q.kick, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return err
	}
	if q.callfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return err
	}
	f, i := q.f, uint32(q.index)
	ua := addrOf(f.Mem)
	steps := []struct {
		req     Request
		payload []byte
		fds     []int
	}{
		{SetVringNum, VringState{i, uint32(q.size)}.bytes(), nil},
		{SetVringAddr, VringAddr{Index: i, Desc: ua + q.desc, Used: ua + q.used, Avail: ua + q.avail}.bytes(), nil},
		{SetVringBase, VringState{i, uint32(base)}.bytes(), nil},
		{SetVringCall, u64Bytes(uint64(i)), []int{q.callfd}},
		{SetVringKick, u64Bytes(uint64(i)), []int{q.kick}},
	}
	if f.Features&(1<<FProtocolFeatures) != 0 {
		steps = append(steps, struct {
			req     Request
			payload []byte
			fds     []int
		}{SetVringEnable, VringState{i, 1}.bytes(), nil})
	}
	for _, s := range steps {
		if _, err := f.call(s.req, s.payload, s.fds, false); err != nil {
			return fmt.Errorf("%v: %w", s.req, err)
		}
	}
	return nil
}

// Stop stops the device's ring as QEMU does when the machine stops or the
// driver resets the device (GET_VRING_BASE) and returns where the device
// stopped in the available ring. The device answers once every request it
// took is finished.
func (q *DriverQueue) Stop() (uint16, error) {
	m, err := q.f.call(GetVringBase, VringState{uint32(q.index), 0}.bytes(), nil, true)
	if err != nil {
		return 0, err
	}
	s, err := m.VringState()
	return uint16(s.Num), err
}

// Start runs a stopped ring again from base.
func (q *DriverQueue) Start(base uint16) error {
	q.closeFDs()
	return q.connect(base)
}

// Buf is one buffer of a request: guest address, length, and whether the
// device writes it.
type Buf struct {
	Addr  uint64
	Len   uint32
	Write bool
}

// ErrQueueFull is returned when no descriptors are free.
var ErrQueueFull = errors.New("vhostuser: queue full")

// Add places a chain on the ring without notifying the device; Kick does.
func (q *DriverQueue) Add(bufs []Buf) (uint16, error) {
	if len(bufs) == 0 || len(bufs) > len(q.free) {
		return 0, ErrQueueFull
	}
	mem := q.f.Mem
	ids := q.free[len(q.free)-len(bufs):]
	q.free = q.free[:len(q.free)-len(bufs)]
	for k, b := range bufs {
		d := mem[q.desc+16*uint64(ids[k]):]
		binary.LittleEndian.PutUint64(d, b.Addr)
		binary.LittleEndian.PutUint32(d[8:], b.Len)
		var flags uint16
		if k+1 < len(bufs) {
			flags |= 1 // NEXT
			binary.LittleEndian.PutUint16(d[14:], ids[k+1])
		}
		if b.Write {
			flags |= 2
		}
		binary.LittleEndian.PutUint16(d[12:], flags)
	}
	head := ids[0]
	binary.LittleEndian.PutUint16(mem[q.avail+4+2*uint64(q.nextAvail%q.size):], head)
	q.nextAvail++
	storeIdx(mem[q.avail:], q.nextAvail)
	q.chainLen(head, uint16(len(bufs)))
	return head, nil
}

// Kick notifies the device.
func (q *DriverQueue) Kick() {
	var one [8]byte
	one[0] = 1
	unix.Write(q.kick, one[:])
}

// Completion is one used element.
type Completion struct {
	Head    uint16
	Written uint32
}

// Reap appends finished requests to out and frees their descriptors: a
// later Add may reuse a head returned here, so take every completion off
// the caller's books before adding new requests.
func (q *DriverQueue) Reap(out []Completion) []Completion {
	mem := q.f.Mem
	idx := loadIdx(mem[q.used:])
	for q.lastUsed != idx {
		e := mem[q.used+4+8*uint64(q.lastUsed%q.size):]
		head := uint16(binary.LittleEndian.Uint32(e))
		out = append(out, Completion{Head: head, Written: binary.LittleEndian.Uint32(e[4:])})
		q.release(head)
		q.lastUsed++
	}
	if q.eventIdx {
		// used_event: interrupt me when the next one completes.
		storeEvent(mem[q.avail+4+2*uint64(q.size):], q.lastUsed)
	}
	return out
}

// Wait blocks until the device signals or timeout passes. It returns at
// once when completions are already waiting: the device may have used them
// before Reap moved used_event, and then it does not signal them.
func (q *DriverQueue) Wait(timeout time.Duration) bool {
	if loadIdx(q.f.Mem[q.used:]) != q.lastUsed {
		return true
	}
	fds := []unix.PollFd{{Fd: int32(q.callfd), Events: unix.POLLIN}}
	n, _ := unix.Poll(fds, int(timeout.Milliseconds()))
	if n > 0 {
		var b [8]byte
		unix.Read(q.callfd, b[:])
		return true
	}
	return false
}

// InFlight is the number of requests added and not yet reaped.
func (q *DriverQueue) InFlight() int { return int(q.nextAvail - q.lastUsed) }

func (q *DriverQueue) usedIdx() uint16 { return loadIdx(q.f.Mem[q.used:]) }

// Descriptor chain bookkeeping: each head remembers its length so the
// chain can be returned to the free list when it completes.
func (q *DriverQueue) chainLen(head, n uint16) {
	if q.lens == nil {
		q.lens = make([]uint16, q.size)
	}
	q.lens[head] = n
}

func (q *DriverQueue) release(head uint16) {
	if int(head) >= int(q.size) || q.lens == nil {
		return
	}
	mem := q.f.Mem
	id := head
	for i := uint16(0); i < q.lens[head]; i++ {
		q.free = append(q.free, id)
		d := mem[q.desc+16*uint64(id):]
		id = binary.LittleEndian.Uint16(d[14:])
	}
}

// DescAddr is the guest physical address of the queue's descriptor table,
// where a test finds the buffer a completed head pointed at.
func (q *DriverQueue) DescAddr() uint64 { return q.desc }
