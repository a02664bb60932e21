package vhostuser

import (
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
)

// Inflight I/O tracking (VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD), split
// rings. A backend that completes requests out of order cannot be resumed
// from the used index: some requests after it are done, some before it
// may not be. So it records, in shared memory that outlives it (the
// frontend keeps the fd), which heads it has taken and not yet returned,
// and a restarted backend resubmits exactly those, in the order they were
// taken, and carries on at used idx + their number.
//
// The area holds one region per queue: a 16-byte header
//
//	features u64 | version u16 | desc_num u16 | last_batch_head u16 | used_idx u16
//
// and desc_num 16-byte entries
//
//	inflight u8 | padding [5]u8 | next u16 | counter u64
//
// Every field is written with an atomic store of the aligned word holding
// it, so a backend killed between two stores leaves each word whole, and
// the stores happen in the order the recovery below relies on.
const (
	inflightHeader = 16
	inflightDesc   = 16
	inflightAlign  = 64
	inflightV1     = 1
	// maxInflightArea bounds an area the frontend hands back: 64 queues
	// of MaxQueueSize are 1 MiB.
	maxInflightArea = 64 << 20
)

// inflightQueueBytes is the size of one queue's region, 64-byte aligned.
func inflightQueueBytes(queueSize uint16) uint64 {
	n := uint64(inflightHeader + inflightDesc*int(queueSize))
	return (n + inflightAlign - 1) &^ (inflightAlign - 1)
}

// inflightArea is the area in use and where it came from.
type inflightArea struct {
	data      []byte // numQueues regions
	mapping   []byte // non-nil when mapped from SET_INFLIGHT_FD: unmapped on replace
	numQueues int
	queueSize uint16
}

// makeInflightMemfd creates the memfd that GET_INFLIGHT_FD hands out,
// large enough for n queues of MaxQueueSize. It is made when the backend is
// made because a card installs its system-call filter before any frontend
// connects; it is sealed against shrinking so that no one holding it can
// make the backend's accesses fault.
func makeInflightMemfd(n int) (int, []byte, error) {
	size := int(inflightQueueBytes(MaxQueueSize)) * n
	fd, err := unix.MemfdCreate("vhost-user-inflight", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, nil, err
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	data, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	return fd, data, nil
}

// checkInflightShape validates the queue count and size of an inflight
// message against the device.
func (b *Backend) checkInflightShape(in Inflight) error {
	if in.NumQueues == 0 || int(in.NumQueues) > len(b.vrings) {
		return fmt.Errorf("%w: inflight area for %d queues, device has %d", ErrMalformed, in.NumQueues, len(b.vrings))
	}
	if in.QueueSize == 0 || in.QueueSize > MaxQueueSize || in.QueueSize&(in.QueueSize-1) != 0 {
		return fmt.Errorf("%w: inflight queue size %d", ErrMalformed, in.QueueSize)
	}
	return nil
}

// getInflightFD answers GET_INFLIGHT_FD with a zeroed area in the
// backend's own memfd.
func (b *Backend) getInflightFD(m *Message) (*replyMsg, error) {
	in, err := m.Inflight()
	if err != nil {
		return nil, err
	}
	if err := b.checkInflightShape(in); err != nil {
		return nil, err
	}
	if b.running() {
		return nil, fmt.Errorf("%w: GET_INFLIGHT_FD while rings run", ErrMalformed)
	}
	if b.ownInflightFD < 0 {
		// An area of size 0 tells the frontend to go without tracking:
		// this life completes in ring order, which a later backend can
		// resume from the used index.
		return &replyMsg{payload: Inflight{NumQueues: in.NumQueues, QueueSize: in.QueueSize}.bytes()}, nil
	}
	b.dropInflight()
	size := uint64(in.NumQueues) * inflightQueueBytes(in.QueueSize)
	clear(b.ownInflight[:size])
	b.inflight = &inflightArea{data: b.ownInflight[:size], numQueues: int(in.NumQueues), queueSize: in.QueueSize}
	b.log.Info("inflight tracking area made", "queues", in.NumQueues, "queue_size", in.QueueSize)
	out := Inflight{MmapSize: size, MmapOffset: 0, NumQueues: in.NumQueues, QueueSize: in.QueueSize}
	return &replyMsg{payload: out.bytes(), fds: []int{b.ownInflightFD}}, nil
}

// setInflightFD maps the area a frontend hands back, typically one a
// previous instance of this backend made before it died. Every failure
// ends the connection: carrying on without the area would resume rings
// that completed out of order from the used index, losing some requests
// and repeating others.
func (b *Backend) setInflightFD(m *Message) error {
	if err := b.setInflight(m); err != nil {
		if !errors.Is(err, ErrMalformed) {
			err = fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return err
	}
	return nil
}

func (b *Backend) setInflight(m *Message) error {
	in, err := m.Inflight()
	if err != nil {
		return err
	}
	if len(m.FDs) != 1 {
		return fmt.Errorf("%w: SET_INFLIGHT_FD with %d fds", ErrMalformed, len(m.FDs))
	}
	if err := b.checkInflightShape(in); err != nil {
		return err
	}
	need := uint64(in.NumQueues) * inflightQueueBytes(in.QueueSize)
	switch {
	case in.MmapSize < need || in.MmapSize > maxInflightArea:
		return fmt.Errorf("%w: inflight area of %d bytes for %d queues of %d", ErrMalformed, in.MmapSize, in.NumQueues, in.QueueSize)
	case in.MmapOffset%inflightAlign != 0 || in.MmapOffset > maxInflightArea:
		return fmt.Errorf("%w: inflight area offset %d", ErrMalformed, in.MmapOffset)
	}
	if b.running() {
		return fmt.Errorf("%w: SET_INFLIGHT_FD while rings run", ErrMalformed)
	}
	fd := m.FDs[0]
	// The file must be unable to shrink and then hold the whole area (in
	// that order: a file sealed after its size was read could have shrunk
	// in between), or a later access would fault and kill the backend.
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil || seals&unix.F_SEAL_SHRINK == 0 {
		return fmt.Errorf("%w: inflight fd is not sealed against shrinking", ErrMalformed)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("inflight fd: %w", err)
	}
	if uint64(st.Size) < in.MmapOffset+in.MmapSize {
		return fmt.Errorf("%w: inflight fd holds %d bytes, area ends at %d", ErrMalformed, st.Size, in.MmapOffset+in.MmapSize)
	}
	mapping, err := unix.Mmap(fd, 0, int(in.MmapOffset+in.MmapSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap inflight area: %w", err)
	}
	b.dropInflight()
	b.inflight = &inflightArea{data: mapping[in.MmapOffset : in.MmapOffset+need], mapping: mapping,
		numQueues: int(in.NumQueues), queueSize: in.QueueSize}
	b.log.Info("inflight tracking area in use", "queues", in.NumQueues, "queue_size", in.QueueSize)
	return nil
}

// running tells whether any ring's worker runs.
func (b *Backend) running() bool {
	for _, r := range b.vrings {
		if r.worker != nil {
			return true
		}
	}
	return false
}

// resetInflight forgets everything the area says is in flight, for
// RESET_DEVICE: the driver starts over. The rings are stopped.
func (b *Backend) resetInflight() {
	if b.inflight != nil {
		clear(b.inflight.data)
	}
}

func (b *Backend) dropInflight() {
	if b.inflight != nil && b.inflight.mapping != nil {
		unix.Munmap(b.inflight.mapping)
	}
	b.inflight = nil
}

// tracker keeps one queue's region while its worker runs. Only the worker
// touches it.
type tracker struct {
	r        inflightRegion
	counter  uint64
	resubmit []uint16 // heads to serve again, oldest first
}

// tracker returns queue idx's tracker, or nil when the frontend set up no
// inflight area covering it (then the queue completes in ring order).
func (b *Backend) tracker(idx int, ringSize uint16) (*tracker, error) {
	a := b.inflight
	if a == nil || idx >= a.numQueues {
		return nil, nil
	}
	if ringSize > a.queueSize {
		return nil, fmt.Errorf("%w: ring %d has %d entries, its inflight region %d", ErrMalformed, idx, ringSize, a.queueSize)
	}
	n := inflightQueueBytes(a.queueSize)
	return &tracker{r: newInflightRegion(a.data[uint64(idx)*n:][:n], a.queueSize)}, nil
}

var errInflightRegion = errors.New("vhostuser: inflight region inconsistent")

// recover brings the region up to date with the used ring (usedIdx, read
// from guest memory) and returns where the ring resumes: base for a new
// region, or the used index plus the requests in flight, which it queues
// for resubmission in the order they were taken.
func (t *tracker) recover(usedIdx, base, ringSize uint16) (uint16, error) {
	r := &t.r
	switch v := r.version(); v {
	case 0:
		// A new region: nothing was ever taken through it.
		r.init(usedIdx)
		return base, nil
	case inflightV1:
	default:
		return 0, fmt.Errorf("%w: version %d", errInflightRegion, v)
	}
	if n := r.descNum(); n != r.capacity {
		return 0, fmt.Errorf("%w: desc_num %d, queue size %d", errInflightRegion, n, r.capacity)
	}
	last, published := r.batch()
	if published != usedIdx {
		// The backend died after publishing its last batch in the used
		// ring and before retiring it here: retire it now. The batch is a
		// list through next, at most one ring long.
		k := usedIdx - published
		if k > ringSize {
			return 0, fmt.Errorf("%w: used idx %d is %d past the region's %d", errInflightRegion, usedIdx, k, published)
		}
		h := last
		for range k {
			if h >= ringSize {
				return 0, fmt.Errorf("%w: batch list reaches head %d", errInflightRegion, h)
			}
			next := r.next(h)
			r.retire(h, next)
			h = next
		}
		r.setBatch(last, usedIdx)
	}
	type taken struct {
		head    uint16
		counter uint64
	}
	var list []taken
	for h := range r.capacity {
		if !r.inflight(h) {
			continue
		}
		if h >= ringSize {
			return 0, fmt.Errorf("%w: head %d in flight, ring size %d", errInflightRegion, h, ringSize)
		}
		list = append(list, taken{h, r.counter(h)})
	}
	slices.SortFunc(list, func(a, b taken) int {
		switch {
		case a.counter < b.counter:
			return -1
		case a.counter > b.counter:
			return 1
		}
		return 0
	})
	t.resubmit = t.resubmit[:0]
	for _, e := range list {
		t.resubmit = append(t.resubmit, e.head)
		t.counter = max(t.counter, e.counter+1)
	}
	return usedIdx + uint16(len(list)), nil
}

// took records that the device took head from the available ring.
func (t *tracker) took(head uint16) {
	t.r.take(head, t.counter)
	t.counter++
}

// returning is called before head is published in the used ring, at
// used index usedIdx; returned after.
func (t *tracker) returning(head, usedIdx uint16) {
	last, _ := t.r.batch()
	t.r.link(head, last)
	t.r.setBatch(head, usedIdx)
}

func (t *tracker) returned(head, usedIdx uint16) {
	t.r.retire(head, t.r.next(head))
	t.r.setBatch(head, usedIdx)
}
