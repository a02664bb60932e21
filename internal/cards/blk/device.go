package blk

import (
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/azote/azote/internal/virtio"
	"github.com/azote/azote/internal/xts"
)

// virtio-blk request types, status values and feature bits (virtio 1.2
// section 5.2).
const (
	typeIn          = 0
	typeOut         = 1
	typeFlush       = 4
	typeGetID       = 8
	typeDiscard     = 11
	typeWriteZeroes = 13

	statusOK     = 0
	statusIOErr  = 1
	statusUnsupp = 2

	fSegMax      = 2
	fRO          = 5
	fBlkSize     = 6
	fFlush       = 9
	fMQ          = 12
	fDiscard     = 13
	fWriteZeroes = 14

	SectorSize = 512
	idLen      = 20
	// MaxSegments is seg_max: data buffers per request.
	MaxSegments = 126
	// maxDiscardSectors bounds one discard or write-zeroes segment.
	maxDiscardSectors = 1 << 22
	maxDiscardSegs    = 1
	configSize        = 60
)

// Config describes one volume.
type Config struct {
	File     *os.File
	ReadOnly bool
	Queues   int
	// Cipher encrypts sectors; nil serves the file as plaintext.
	Cipher *xts.Cipher
	// ID is returned for GET_ID (the volume id), at most 20 bytes.
	ID string
	// Limiter, when set, throttles every request (QoS).
	Limiter Limiter
}

// Limiter delays a request until the volume's budget allows it, or until
// cancel is closed, and returns how long it waited.
type Limiter interface {
	Wait(ops int, bytes int64, cancel <-chan struct{}) time.Duration
}

// Device is a virtio-blk device over a file.
type Device struct {
	cfg     Config
	sectors uint64
	// direct is set when the backing file was opened with O_DIRECT:
	// every transfer must then use sector-aligned memory, so guest
	// segments that are not aligned go through the bounce buffer.
	direct bool
	// mapped is the whole backing file mapped shared, on the page cache
	// (not O_DIRECT): transfers move between it and guest memory without a
	// system call, an encrypted one (whole-sector segments) in a single
	// pass of the cipher; writes only to pages in the page cache (see
	// resident). Nil when the file could not be mapped.
	mapped []byte
	// slots is the number of requests in flight per queue; queues holds
	// Queues×slots states, queue q's slot i at q*slots+i.
	slots    int
	queues   []queueState
	gates    []*gate // per queue: closed while the queue stops
	Metrics  *Metrics
	features uint64

	closeOnce sync.Once
}

// queueState is owned by the one goroutine that serves a queue's slot:
// a queue has one slot, or directSlots on O_DIRECT files.
type queueState struct {
	// bounce grows on demand up to bounceSize, so slots that only ever
	// see small requests keep small buffers.
	bounce []byte
	iov    [][]byte
	// vec receives mincore's answer for a transfer on the mapped file;
	// mappedOps counts the transfers that went through the mapping.
	vec       []byte
	mappedOps atomic.Uint64
	// gate is the queue's; for the request being served, charged tells
	// whether it has been charged to the QoS budget and waited how long
	// it waited (kept out of its latency).
	gate    *gate
	charged bool
	waited  time.Duration
}

const bounceSize = 1 << 20

// directSlots is how many requests of one queue are in flight at once on
// an O_DIRECT file, where each waits for the disk.
const directSlots = 32

// buffer returns the slot's bounce buffer, at least n bytes long unless n
// is over bounceSize (larger transfers are bounced in pieces).
func (qs *queueState) buffer(n uint64) []byte {
	want := int(min(n, bounceSize))
	if len(qs.bounce) < want {
		size := max(want, 2*len(qs.bounce), 64<<10)
		qs.bounce = alignedBuffer(min(size, bounceSize))
	}
	return qs.bounce
}

// ErrConfig is returned for an unusable configuration.
var ErrConfig = errors.New("blk: bad configuration")

// New prepares a device; the file's size sets the capacity.
func New(cfg Config) (*Device, error) {
	if cfg.File == nil || cfg.Queues < 1 || cfg.Queues > 64 || len(cfg.ID) > idLen {
		return nil, ErrConfig
	}
	st, err := cfg.File.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size()%SectorSize != 0 || st.Size() == 0 {
		return nil, errors.New("blk: backing file size must be a non-zero multiple of 512")
	}
	d := &Device{cfg: cfg, sectors: uint64(st.Size()) / SectorSize, Metrics: newMetrics(), direct: isDirect(cfg.File)}
	d.features = 1<<fSegMax | 1<<fBlkSize | 1<<fFlush | 1<<fDiscard | 1<<fWriteZeroes
	if cfg.Queues > 1 {
		d.features |= 1 << fMQ
	}
	if cfg.ReadOnly {
		d.features |= 1 << fRO
	}
	d.slots = 1
	if d.direct {
		d.slots = directSlots
	} else {
		d.mapped = mapFile(cfg.File, st.Size(), !cfg.ReadOnly)
	}
	d.queues = make([]queueState, cfg.Queues*d.slots)
	d.gates = make([]*gate, cfg.Queues)
	for q := range d.gates {
		d.gates[q] = newGate()
	}
	for i := range d.queues {
		qs := &d.queues[i]
		qs.iov = make([][]byte, 0, MaxSegments+2)
		qs.gate = d.gates[i/d.slots]
		if i%d.slots == 0 && d.mapped == nil && !d.direct {
			// The page cache without the mapping: slot 0 is every
			// request's, so its full bounce buffer now, and nothing is
			// allocated per request.
			qs.buffer(bounceSize)
		}
	}
	return d, nil
}

// Slots implements vhostuser.ConcurrentDevice: on an O_DIRECT file each
// queue keeps several requests in flight so the disk stays busy; on the
// page cache one at a time is fastest.
func (d *Device) Slots() int { return d.slots }

// Features implements vhostuser.Device.
func (d *Device) Features() uint64 { return d.features }

// NumQueues implements vhostuser.Device.
func (d *Device) NumQueues() int { return d.cfg.Queues }

// Config implements vhostuser.Device: struct virtio_blk_config.
func (d *Device) Config() []byte {
	b := make([]byte, configSize)
	binary.LittleEndian.PutUint64(b[0:], d.sectors)             // capacity
	binary.LittleEndian.PutUint32(b[12:], MaxSegments)          // seg_max
	binary.LittleEndian.PutUint32(b[20:], SectorSize)           // blk_size
	binary.LittleEndian.PutUint16(b[34:], uint16(d.cfg.Queues)) // num_queues
	binary.LittleEndian.PutUint32(b[36:], maxDiscardSectors)    // max_discard_sectors
	binary.LittleEndian.PutUint32(b[40:], maxDiscardSegs)       // max_discard_seg
	binary.LittleEndian.PutUint32(b[44:], 1)                    // discard_sector_alignment
	binary.LittleEndian.PutUint32(b[48:], maxDiscardSectors)    // max_write_zeroes_sectors
	binary.LittleEndian.PutUint32(b[52:], maxDiscardSegs)       // max_write_zeroes_seg
	return b
}

// IOPath names how the device reaches its file: "direct" (O_DIRECT),
// "mapped" (the page cache, through the mapped file) or "pread" (the page
// cache, with system calls: the file could not be mapped).
func (d *Device) IOPath() string {
	switch {
	case d.direct:
		return "direct"
	case d.mapped != nil:
		return "mapped"
	}
	return "pread"
}

// Capacity returns the size in 512-byte sectors.
func (d *Device) Capacity() uint64 { return d.sectors }

// Handle implements vhostuser.Device: one request.
func (d *Device) Handle(q int, c *virtio.Chain, chainErr error) uint32 {
	return d.HandleSlot(q, 0, c, chainErr)
}

// HandleSlot implements vhostuser.ConcurrentDevice: one request, served
// with the state of slot of queue q.
func (d *Device) HandleSlot(q, slot int, c *virtio.Chain, chainErr error) uint32 {
	start := time.Now()
	qs := &d.queues[q*d.slots+slot]
	qs.charged, qs.waited = false, 0
	status, written, op, nbytes := d.serve(qs, c, chainErr)
	if !qs.charged {
		d.charge(qs, 0) // refused, or no I/O: one operation
	}
	if !setStatus(c, status) {
		written = 0
	} else {
		written++
	}
	d.Metrics.record(op, nbytes, status, time.Since(start)-qs.waited)
	return written
}

// StopQueue implements vhostuser.QueueWaiter: requests of queue q waiting
// for the QoS budget go on at once, until StartQueue.
func (d *Device) StopQueue(q int) { d.gates[q].stop() }

// StartQueue implements vhostuser.QueueWaiter.
func (d *Device) StartQueue(q int) { d.gates[q].start() }

// charge takes a request from the QoS budget, waiting if it is spent. Every
// request is charged once, one operation; bytes are what it moves on the
// device. serve charges a request that does I/O once it is known to be
// valid, before the I/O; HandleSlot charges any other (refused, or without
// I/O) after it, so that a request the device refuses costs no bytes (a
// guest cannot run up hours of debt with huge requests that do nothing).
func (d *Device) charge(qs *queueState, bytes uint64) {
	qs.charged = true
	if d.cfg.Limiter == nil {
		return
	}
	qs.waited = d.cfg.Limiter.Wait(1, int64(bytes), qs.gate.wait())
	d.Metrics.addThrottled(qs.waited)
}

// setStatus writes the status byte: the last byte of the last writable
// buffer. It reports false when the chain has nowhere to put it.
func setStatus(c *virtio.Chain, status byte) bool {
	for i := len(c.Writable) - 1; i >= 0; i-- {
		if b := c.Writable[i]; len(b) > 0 {
			b[len(b)-1] = status
			return true
		}
	}
	return false
}

// header reads the 16-byte request header from the front of the readable
// buffers and returns the rest of them in iov.
func header(c *virtio.Chain, iov [][]byte) (typ uint32, sector uint64, rest [][]byte, ok bool) {
	var h [16]byte
	n := 0
	rest = iov[:0]
	for _, b := range c.Readable {
		if n < 16 {
			k := copy(h[n:], b)
			n += k
			b = b[k:]
		}
		if len(b) > 0 {
			rest = append(rest, b)
		}
	}
	if n < 16 {
		return 0, 0, rest, false
	}
	return binary.LittleEndian.Uint32(h[0:]), binary.LittleEndian.Uint64(h[8:]), rest, true
}

// dataIn returns the writable buffers without the trailing status byte.
func dataIn(c *virtio.Chain, iov [][]byte) [][]byte {
	iov = append(iov[:0], c.Writable...)
	for i := len(iov) - 1; i >= 0; i-- {
		if len(iov[i]) > 0 {
			iov[i] = iov[i][:len(iov[i])-1]
			break
		}
	}
	return iov
}

func totalLen(iov [][]byte) uint64 {
	var n uint64
	for _, b := range iov {
		n += uint64(len(b))
	}
	return n
}

// inRange checks that n bytes starting at sector lie on the device.
func (d *Device) inRange(sector, n uint64) bool {
	if n%SectorSize != 0 {
		return false
	}
	count := n / SectorSize
	return sector <= d.sectors && count <= d.sectors-sector
}

func (d *Device) serve(qs *queueState, c *virtio.Chain, chainErr error) (status byte, written uint32, o op, nbytes uint64) {
	if chainErr != nil {
		return statusIOErr, 0, opInvalid, 0
	}
	typ, sector, rest, ok := header(c, qs.iov)
	if !ok {
		return statusIOErr, 0, opInvalid, 0
	}
	switch typ {
	case typeIn:
		iov := dataIn(c, qs.iov)
		n := totalLen(iov)
		// Transfers are whole sectors (virtio 1.2 §5.2.6.1), which also
		// keeps O_DIRECT and the per-sector cipher aligned.
		if n%SectorSize != 0 || !d.inRange(sector, n) {
			return statusIOErr, 0, opRead, 0
		}
		d.charge(qs, n)
		if err := d.read(qs, iov, sector, n); err != nil {
			return statusIOErr, 0, opRead, 0
		}
		return statusOK, uint32(n), opRead, n
	case typeOut:
		n := totalLen(rest)
		if n%SectorSize != 0 || d.cfg.ReadOnly || !d.inRange(sector, n) {
			return statusIOErr, 0, opWrite, 0
		}
		d.charge(qs, n)
		if err := d.write(qs, rest, sector, n); err != nil {
			return statusIOErr, 0, opWrite, 0
		}
		return statusOK, 0, opWrite, n
	case typeFlush:
		d.charge(qs, 0)
		if d.cfg.ReadOnly {
			return statusOK, 0, opFlush, 0
		}
		if err := fdatasync(d.cfg.File); err != nil {
			return statusIOErr, 0, opFlush, 0
		}
		return statusOK, 0, opFlush, 0
	case typeGetID:
		iov := dataIn(c, qs.iov)
		id := make([]byte, idLen)
		copy(id, d.cfg.ID)
		w := scatter(iov, id)
		return statusOK, uint32(w), opGetID, 0
	case typeDiscard, typeWriteZeroes:
		name := opDiscard
		if typ == typeWriteZeroes {
			name = opWriteZeroes
		}
		seg, err := d.discardSegment(rest)
		if err != nil || d.cfg.ReadOnly {
			return statusIOErr, 0, name, 0
		}
		// Write-zeroes is charged the bytes it covers (on an encrypted
		// volume it writes them all); a discard one sector, as Linux's
		// block throttling charges it.
		cost := uint64(SectorSize)
		if typ == typeWriteZeroes {
			cost = seg.count * SectorSize
		}
		d.charge(qs, cost)
		if err := d.discard(qs, seg, typ == typeWriteZeroes); err != nil {
			return statusIOErr, 0, name, 0
		}
		return statusOK, 0, name, seg.count * SectorSize
	}
	return statusUnsupp, 0, opUnsupported, 0
}

// scatter copies src into the buffers of iov and returns the bytes copied.
func scatter(iov [][]byte, src []byte) int {
	n := 0
	for _, b := range iov {
		if n == len(src) {
			break
		}
		n += copy(b, src[n:])
	}
	return n
}

// gather copies from the buffers of iov, starting skip bytes in, into dst.
func gather(dst []byte, iov [][]byte, skip uint64) {
	n := 0
	for _, b := range iov {
		if skip >= uint64(len(b)) {
			skip -= uint64(len(b))
			continue
		}
		n += copy(dst[n:], b[skip:])
		skip = 0
		if n == len(dst) {
			return
		}
	}
}

// scatterAt copies src into iov starting skip bytes in.
func scatterAt(iov [][]byte, skip uint64, src []byte) {
	n := 0
	for _, b := range iov {
		if skip >= uint64(len(b)) {
			skip -= uint64(len(b))
			continue
		}
		n += copy(b[skip:], src[n:])
		skip = 0
		if n == len(src) {
			return
		}
	}
}

// Close unmaps the file. The device must not serve requests afterwards.
func (d *Device) Close() {
	d.closeOnce.Do(func() {
		unmapFile(d.mapped)
		d.mapped = nil
	})
}
