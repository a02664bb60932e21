package virtio

import (
	"encoding/binary"
	"fmt"
)

// Device IDs (VIRTIO 1.2 section 5).
const (
	IDNet   = 1
	IDBlock = 2
	IDVsock = 19
)

// Feature bit numbers (VIRTIO 1.2 section 6).
const (
	FRingIndirectDesc = 28
	FRingEventIdx     = 29
	FVersion1         = 32
)

// Split ring layout and flags, section 2.7.
const (
	descSize     = 16 // struct virtq_desc
	usedElemSize = 8  // struct virtq_used_elem

	descFNext     = 1 // VIRTQ_DESC_F_NEXT
	descFWrite    = 2 // VIRTQ_DESC_F_WRITE
	descFIndirect = 4 // VIRTQ_DESC_F_INDIRECT

	availFNoInterrupt = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT
	usedFNoNotify     = 1 // VIRTQ_USED_F_NO_NOTIFY

	maxQueueSize = 32768
	// maxChainBytes bounds the buffers of one chain: "Drivers MUST NOT add
	// a descriptor chain longer than 2^32 bytes in total", and the used
	// element's len is 32 bits.
	maxChainBytes = 1<<32 - 1
	// maxChainLenLimit bounds MaxChainLen, and with it the work one Pop
	// can be made to do.
	maxChainLenLimit = 1 << 16
)

// QueueConfig describes one split virtqueue as the driver set it up.
type QueueConfig struct {
	// Size is the queue size: a power of 2 from 1 to 32768.
	Size uint16
	// DescTable, AvailRing and UsedRing are the guest physical addresses
	// of the three parts, aligned to 16, 2 and 4 bytes.
	DescTable, AvailRing, UsedRing uint64
	// EventIdx is set when VIRTIO_F_EVENT_IDX was negotiated.
	EventIdx bool
	// Indirect is set when VIRTIO_F_INDIRECT_DESC was negotiated.
	Indirect bool
	// MaxChainLen bounds the descriptors of a chain, counting the entries
	// of an indirect table but not the descriptor that points to it (for
	// virtio-blk, seg_max + 2). Zero means Size; at most 65536.
	MaxChainLen int
}

// Chain is one request: its head descriptor index and its buffers, the
// device-readable ones first, then the device-writable ones, in chain
// order. The slices alias guest memory, which the driver can change at any
// time: copy what must not change before using it.
//
// Reuse one Chain for every Pop: its slices keep their capacity, so Pop
// does not allocate in steady state.
type Chain struct {
	Head     uint16
	Readable [][]byte
	Writable [][]byte
}

// Queue is the device side of one split virtqueue. Its methods must be
// called from one goroutine at a time.
type Queue struct {
	mem        *GuestMemory
	size, mask uint16
	eventIdx   bool
	indirect   bool
	maxChain   int

	desc      []byte // the descriptor table, Size entries
	availRing []byte // avail->ring[], Size entries
	usedRing  []byte // used->ring[], Size entries

	availIdx   field16 // avail->idx, written by the driver
	availFlags field16 // avail->flags, written by the driver
	usedEvent  field16 // avail->used_event, written by the driver
	availEvent field16 // used->avail_event, written by the device
	usedHdr    word32  // used->flags and used->idx, written by the device

	lastAvail   uint16 // next avail ring entry to consume
	shadowAvail uint16 // avail->idx as last read
	usedIdx     uint16 // used->idx as last written
	usedFlags   uint16 // used->flags as last written
	signalled   uint16 // usedIdx at the last NeedNotify
	pushed      uint32 // Push calls since the last NeedNotify, saturating at 1<<16

	notify         bool   // notifications enabled
	availEventSet  bool   // availEvent holds availEventLast
	availEventLast uint16 //

	err error // set once the queue is broken
}

// NewQueue checks cfg against mem and returns the queue, resuming at
// lastAvail (vhost-user's SET_VRING_BASE; 0 for a new ring). The used
// index is read from guest memory, so a restarted backend carries on where
// the used ring is.
//
// The queue keeps slices of mem's mappings: stop using it before they are
// unmapped (vhost-user SET_MEM_TABLE, GET_VRING_BASE, disconnect).
//
// NewQueue writes nothing to guest memory. The notification state is
// whatever guest memory holds, so a caller must EnableNotifications and
// then Pop before it first waits for a kick.
func NewQueue(mem *GuestMemory, cfg QueueConfig, lastAvail uint16) (*Queue, error) {
	if mem == nil {
		return nil, fmt.Errorf("%w: no guest memory", ErrInvalidConfig)
	}
	n := uint64(cfg.Size)
	switch {
	case n == 0 || n > maxQueueSize || n&(n-1) != 0:
		return nil, fmt.Errorf("%w: queue size %d is not a power of 2 up to %d", ErrInvalidConfig, n, maxQueueSize)
	case cfg.MaxChainLen < 0 || cfg.MaxChainLen > maxChainLenLimit:
		return nil, fmt.Errorf("%w: MaxChainLen %d not in 0..%d", ErrInvalidConfig, cfg.MaxChainLen, maxChainLenLimit)
	case cfg.DescTable%16 != 0:
		return nil, fmt.Errorf("%w: descriptor table %#x not 16-byte aligned", ErrInvalidConfig, cfg.DescTable)
	case cfg.AvailRing%2 != 0:
		return nil, fmt.Errorf("%w: available ring %#x not 2-byte aligned", ErrInvalidConfig, cfg.AvailRing)
	case cfg.UsedRing%4 != 0:
		return nil, fmt.Errorf("%w: used ring %#x not 4-byte aligned", ErrInvalidConfig, cfg.UsedRing)
	}
	q := &Queue{
		mem: mem, size: cfg.Size, mask: cfg.Size - 1,
		eventIdx: cfg.EventIdx, indirect: cfg.Indirect, maxChain: cfg.MaxChainLen,
		lastAvail: lastAvail, shadowAvail: lastAvail,
	}
	if q.maxChain == 0 {
		q.maxChain = int(cfg.Size)
	}
	var ok bool
	if q.desc, ok = mem.slice(cfg.DescTable, descSize*n); !ok {
		return nil, fmt.Errorf("%w: descriptor table %#x+%#x", ErrOutOfBounds, cfg.DescTable, descSize*n)
	}
	// The avail ring is flags, idx, ring[Size], used_event; the used ring
	// is flags, idx, ring[Size], avail_event. Both event fields are
	// counted whether or not EVENT_IDX is negotiated, as the spec's
	// sizes do.
	avail, ar, ok := ringIn(mem, cfg.AvailRing, 6+2*n)
	if !ok {
		return nil, fmt.Errorf("%w: available ring %#x+%#x", ErrOutOfBounds, cfg.AvailRing, 6+2*n)
	}
	used, ur, ok := ringIn(mem, cfg.UsedRing, 6+usedElemSize*n)
	if !ok {
		return nil, fmt.Errorf("%w: used ring %#x+%#x", ErrOutOfBounds, cfg.UsedRing, 6+usedElemSize*n)
	}
	// The atomics need the host addresses aligned like the guest ones,
	// which they are unless a region's mapping starts at an odd offset.
	if hostAddr(avail)%2 != 0 || hostAddr(used)%4 != 0 {
		return nil, fmt.Errorf("%w: ring misaligned in host memory", ErrInvalidConfig)
	}
	q.availRing = avail[4 : 4+2*n]
	q.usedRing = used[4 : 4+usedElemSize*n]
	ao := cfg.AvailRing - ar.GuestAddr
	uo := cfg.UsedRing - ur.GuestAddr
	q.availFlags = newField16(ar.Data, ao)
	q.availIdx = newField16(ar.Data, ao+2)
	q.usedEvent = newField16(ar.Data, ao+4+2*n)
	q.availEvent = newField16(ur.Data, uo+4+usedElemSize*n)
	q.usedHdr = newWord32(used)

	hdr := q.usedHdr.load()
	q.usedIdx = uint16(hdr >> 16)
	q.signalled = q.usedIdx
	if !q.eventIdx {
		// With EVENT_IDX the device must keep used->flags 0.
		q.usedFlags = uint16(hdr) & usedFNoNotify
	}
	q.notify = q.usedFlags&usedFNoNotify == 0 && !q.eventIdx
	if inFlight := q.lastAvail - q.usedIdx; inFlight > q.size {
		q.fail(fmt.Errorf("%w: used idx %d is %d behind last_avail %d, queue size %d",
			ErrBroken, q.usedIdx, inFlight, q.lastAvail, q.size))
	}
	return q, nil
}

// ringIn returns the length bytes at gpa and the region that holds them.
func ringIn(mem *GuestMemory, gpa, length uint64) ([]byte, *Region, bool) {
	b, ok := mem.slice(gpa, length)
	if !ok {
		return nil, nil, false
	}
	return b, mem.find(gpa), true
}

// fail breaks the queue for good and returns err, which every later call
// returns too.
func (q *Queue) fail(err error) error {
	q.err = err
	return err
}

// Broken returns the error that broke the queue, or nil.
func (q *Queue) Broken() error { return q.err }

// Size returns the queue size.
func (q *Queue) Size() uint16 { return q.size }

// LastAvail returns the index of the next available ring entry to consume,
// which is what vhost-user GET_VRING_BASE reports.
func (q *Queue) LastAvail() uint16 { return q.lastAvail }

// UsedIdx returns the used index as the device last wrote it.
func (q *Queue) UsedIdx() uint16 { return q.usedIdx }

// Pop takes the next available chain and fills c with it.
//
// It returns ok=false and a nil error when no chain is available. When the
// chain is malformed it returns ok=true and an error saying why: the head
// is consumed, c.Head is set, and c holds the buffers validated before the
// fault (all inside guest memory), so the device may answer with an error
// status; the caller must still Push(c.Head, n). When the driver has
// corrupted the ring (avail idx more than Size ahead of the last consumed
// entry, or a head index beyond the table, which leaves nothing to return
// in the used ring), it returns ok=false and an error wrapping ErrBroken,
// and keeps returning it.
func (q *Queue) Pop(c *Chain) (ok bool, err error) {
	if q.err != nil {
		return false, q.err
	}
	if q.lastAvail == q.shadowAvail {
		// Atomic: the ring entries and descriptors read below were
		// written by the driver before it published this index.
		idx := q.availIdx.load()
		if ahead := idx - q.lastAvail; ahead > q.size {
			return false, q.fail(fmt.Errorf("%w: avail idx %d is %d ahead of last_avail %d, queue size %d",
				ErrBroken, idx, ahead, q.lastAvail, q.size))
		}
		q.shadowAvail = idx
		if idx == q.lastAvail {
			return false, nil
		}
	}
	head := binary.LittleEndian.Uint16(q.availRing[2*uint32(q.lastAvail&q.mask):])
	q.lastAvail++
	if q.notify && q.eventIdx {
		// Keep asking for a kick for the entry after this one, so that a
		// caller that pops with notifications on does not miss one.
		q.setAvailEvent(q.lastAvail)
	}
	c.Head = head
	c.Readable = c.Readable[:0]
	c.Writable = c.Writable[:0]
	if head >= q.size {
		return false, q.fail(fmt.Errorf("%w: driver made head %d available, queue size %d", ErrBroken, head, q.size))
	}
	return true, q.walk(c, head)
}

// Unpop gives back the last n chains popped and not yet pushed, so that
// the next Pop takes them again. A receive queue uses it when the frame
// it has does not fit in the buffers it took.
func (q *Queue) Unpop(n uint16) error {
	if q.err != nil {
		return q.err
	}
	if n > q.lastAvail-q.usedIdx {
		return fmt.Errorf("virtio: unpop of %d chains, %d in flight", n, q.lastAvail-q.usedIdx)
	}
	q.lastAvail -= n
	if q.notify && q.eventIdx {
		q.setAvailEvent(q.lastAvail)
	}
	return nil
}

// Resume fills c with the chain at head without consuming an available
// ring entry: it is for a request that a device took before it was
// restarted and never completed (vhost-user inflight tracking), whose
// descriptors still belong to the device. The chain is walked and
// checked as Pop does, and the caller must Push(c.Head, n) it. head must
// be below the queue size, and LastAvail must already count it (NewQueue
// resumed at the used index plus the requests in flight).
func (q *Queue) Resume(c *Chain, head uint16) error {
	if q.err != nil {
		return q.err
	}
	c.Head = head
	c.Readable = c.Readable[:0]
	c.Writable = c.Writable[:0]
	if head >= q.size {
		return fmt.Errorf("%w: resumed head %d, queue size %d", ErrOutOfBounds, head, q.size)
	}
	return q.walk(c, head)
}

// walk follows the chain at head, reading each descriptor once and
// checking it before anything it names is touched. The loop ends: every
// iteration either fails, returns, switches to the indirect table (once),
// or counts a descriptor against the table size and MaxChainLen.
func (q *Queue) walk(c *Chain, head uint16) error {
	table := q.desc
	tableLen := uint32(q.size) // entries in table
	idx := uint32(head)
	hops := uint32(0) // descriptors visited in table, for loop detection
	inIndirect := false
	writable := false
	var total uint64
	count := 0
	for {
		if idx >= tableLen {
			return errNextRange
		}
		if hops++; hops > tableLen {
			return ErrChainLoop
		}
		d := table[descSize*uint64(idx):][:descSize]
		addr := binary.LittleEndian.Uint64(d[0:])
		length := binary.LittleEndian.Uint32(d[8:])
		flags := binary.LittleEndian.Uint16(d[12:])
		next := binary.LittleEndian.Uint16(d[14:])

		if flags&descFIndirect != 0 {
			// Section 2.7.5.3: only with the feature, one level, never
			// with NEXT, a whole number of descriptors. The WRITE flag of
			// this descriptor is ignored, as the device must.
			switch {
			case !q.indirect:
				return errIndirectNotAllowed
			case inIndirect:
				return errNestedIndirect
			case flags&descFNext != 0:
				return errIndirectNext
			case length == 0 || length%descSize != 0:
				return errIndirectLen
			}
			t, ok := q.mem.slice(addr, uint64(length))
			if !ok {
				return errIndirectTable
			}
			table, tableLen, idx, hops, inIndirect = t, length/descSize, 0, 0, true
			continue
		}

		if count++; count > q.maxChain {
			return errTooMany
		}
		if flags&descFWrite != 0 {
			writable = true
		} else if writable {
			return errWrongDirection
		}
		if total += uint64(length); total > maxChainBytes {
			return errTooManyBytes
		}
		// Zero-length buffers are valid and name no memory; they add no
		// slice.
		var ok bool
		if flags&descFWrite != 0 {
			c.Writable, ok = q.mem.appendBuffer(c.Writable, addr, length)
		} else {
			c.Readable, ok = q.mem.appendBuffer(c.Readable, addr, length)
		}
		if !ok {
			return errBuffer
		}
		if flags&descFNext == 0 {
			return nil
		}
		idx = uint32(next)
	}
}

// Push returns the chain at head to the driver, with written bytes written
// into its device-writable buffers. The used element is written before the
// atomic store of used->idx that publishes it.
func (q *Queue) Push(head uint16, written uint32) error {
	if q.err != nil {
		return q.err
	}
	if head >= q.size {
		return fmt.Errorf("virtio: push of head %d, queue size %d", head, q.size)
	}
	if q.usedIdx == q.lastAvail {
		return fmt.Errorf("virtio: push of head %d with no chain in flight", head)
	}
	e := q.usedRing[usedElemSize*uint32(q.usedIdx&q.mask):][:usedElemSize]
	binary.LittleEndian.PutUint32(e[0:], uint32(head))
	binary.LittleEndian.PutUint32(e[4:], written)
	q.usedIdx++
	q.storeUsedHdr()
	if q.pushed < 1<<16 {
		q.pushed++
	}
	return nil
}

// Used is one used ring element: a chain's head and the bytes written
// into its device-writable buffers.
type Used struct {
	Head    uint16
	Written uint32
}

// PushAll returns several chains to the driver at once: their used
// elements are written first and one atomic store of used->idx publishes
// them all. A network device with VIRTIO_NET_F_MRG_RXBUF spreads one
// frame over several chains, and the driver must find all of them when it
// reads the first (its num_buffers).
func (q *Queue) PushAll(used []Used) error {
	if q.err != nil {
		return q.err
	}
	if int(q.lastAvail-q.usedIdx) < len(used) {
		return fmt.Errorf("virtio: push of %d chains, %d in flight", len(used), q.lastAvail-q.usedIdx)
	}
	idx := q.usedIdx
	for _, u := range used {
		if u.Head >= q.size {
			return fmt.Errorf("virtio: push of head %d, queue size %d", u.Head, q.size)
		}
		e := q.usedRing[usedElemSize*uint32(idx&q.mask):][:usedElemSize]
		binary.LittleEndian.PutUint32(e[0:], uint32(u.Head))
		binary.LittleEndian.PutUint32(e[4:], u.Written)
		idx++
	}
	q.usedIdx = idx
	q.storeUsedHdr()
	q.pushed = min(q.pushed+uint32(len(used)), 1<<16)
	return nil
}

// storeUsedHdr publishes used->flags and used->idx in one atomic store;
// the device is the only writer of both.
func (q *Queue) storeUsedHdr() {
	q.usedHdr.store(uint32(q.usedFlags) | uint32(q.usedIdx)<<16)
}

// NeedNotify reports whether the driver wants a used buffer notification
// for what was pushed since the last call. With EVENT_IDX it is the spec's
// vring_need_event(used_event, new, old); without, it honours
// VIRTQ_AVAIL_F_NO_INTERRUPT. The atomic store in Push orders the used
// index before the loads here, as section 2.7.10 requires.
func (q *Queue) NeedNotify() bool {
	old, pushed := q.signalled, q.pushed
	q.signalled, q.pushed = q.usedIdx, 0
	switch {
	case pushed == 0:
		return false
	case pushed >= 1<<16:
		// The 16-bit window of vring_need_event cannot tell.
		return true
	case q.eventIdx:
		return needEvent(q.usedEvent.load(), q.usedIdx, old)
	default:
		return q.availFlags.load()&availFNoInterrupt == 0
	}
}

// needEvent is vring_need_event from section 2.7.10: whether moving an
// index from old to new passes event.
func needEvent(event, new, old uint16) bool {
	return new-event-1 < new-old
}

// EnableNotifications asks the driver to kick when it makes buffers
// available: with EVENT_IDX by setting avail_event to the next entry to
// consume, otherwise by clearing VIRTQ_USED_F_NO_NOTIFY. Buffers made
// available before this call may not be kicked, so the caller must Pop
// again before it waits; the store here is a full barrier before that Pop.
func (q *Queue) EnableNotifications() {
	q.notify = true
	if q.eventIdx {
		q.setAvailEvent(q.lastAvail)
		return
	}
	if q.usedFlags&usedFNoNotify != 0 {
		q.usedFlags &^= usedFNoNotify
		q.storeUsedHdr()
	}
}

// DisableNotifications tells the driver that kicks are not needed while
// the device is polling. With EVENT_IDX this only stops Pop from moving
// avail_event forward, so the driver kicks at most once more.
func (q *Queue) DisableNotifications() {
	q.notify = false
	if !q.eventIdx && q.usedFlags&usedFNoNotify == 0 {
		q.usedFlags |= usedFNoNotify
		q.storeUsedHdr()
	}
}

func (q *Queue) setAvailEvent(v uint16) {
	if q.availEventSet && q.availEventLast == v {
		return
	}
	q.availEvent.store(v)
	q.availEventSet, q.availEventLast = true, v
}
