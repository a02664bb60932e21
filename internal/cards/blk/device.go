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
	// (not O_DIRECT): transfers can move between it and guest memory
	// without a system call, an encrypted one (whole-sector segments) in a
	// single pass of the cipher, when each queue measures that cheaper
	// than pread/pwrite (choose.go); writes only to pages in the page
	// cache (see resident). Nil when the file could not be mapped.
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
	// vec receives mincore's answer for a write on the mapped file.
	vec []byte
	// choice picks, per direction (0 read, 1 write) and size class, the
	// page-cache path measured cheaper (see choose.go).
	choice [2][sizeClasses]chooser
	// mappedOps counts the transfers that went through the mapping.
	mappedOps atomic.Uint64
	gate      *gate // the queue's
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
	d.Metrics.ioPath = d.IOPath()
	d.queues = make([]queueState, cfg.Queues*d.slots)
	d.gates = make([]*gate, cfg.Queues)
	for q := range d.gates {
		d.gates[q] = newGate()
	}
	for i := range d.queues {
		qs := &d.queues[i]
		qs.iov = make([][]byte, 0, MaxSegments+2)
		qs.choice = newChoosers()
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
// "mapped" (the page cache, through the mapped file or pread/pwrite,
// whichever each queue measures cheaper for a transfer's direction and
// size; see choose.go) or "pread" (the page cache, with system calls:
// the file could not be mapped).
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
// with the state of slot of queue q. A request is parsed once, charged to
// the QoS budget once (here, and nowhere else), processed, answered.
func (d *Device) HandleSlot(q, slot int, c *virtio.Chain, chainErr error) uint32 {
	start := time.Now()
	qs := &d.queues[q*d.slots+slot]
	r := d.parse(c, chainErr, qs.iov)
	waited := d.charge(qs, r.cost)
	written := uint32(0)
	if r.status == statusOK {
		written = d.process(qs, &r)
	}
	if !setStatus(c, r.status) {
		written = 0
	} else {
		written++
	}
	moved := r.n
	if r.status != statusOK {
		moved = 0
	}
	d.Metrics.record(r.op, moved, r.status, time.Since(start)-waited)
	return written
}

// process does a request parse found valid, setting r.status to what
// happened, and returns the bytes it wrote to the guest's buffers.
func (d *Device) process(qs *queueState, r *request) (written uint32) {
	var err error
	switch r.op {
	case opRead:
		err = d.read(qs, r.data, r.sector, r.n)
		written = uint32(r.n)
	case opWrite:
		err = d.write(qs, r.data, r.sector, r.n)
	case opFlush:
		if !d.cfg.ReadOnly {
			err = fdatasync(d.cfg.File)
		}
	case opGetID:
		var id [idLen]byte
		copy(id[:], d.cfg.ID)
		written = uint32(scatter(r.data, id[:]))
	case opDiscard, opWriteZeroes:
		err = d.discard(qs, r.seg, r.op == opWriteZeroes)
	}
	if err != nil {
		r.status = statusIOErr
		return 0
	}
	return written
}

// StopQueue implements vhostuser.QueueWaiter: requests of queue q waiting
// for the QoS budget go on at once, until StartQueue.
func (d *Device) StopQueue(q int) { d.gates[q].stop() }

// StartQueue implements vhostuser.QueueWaiter.
func (d *Device) StartQueue(q int) { d.gates[q].start() }

// charge takes a request from the QoS budget, waiting if it is spent, and
// returns how long it waited (kept out of the request's latency). Every
// request is charged once, one operation, before it is processed; bytes
// are what parse found it will move on the device, none for a request the
// device refuses (a guest cannot run up hours of debt with huge requests
// that do nothing).
func (d *Device) charge(qs *queueState, bytes uint64) time.Duration {
	if d.cfg.Limiter == nil {
		return 0
	}
	waited := d.cfg.Limiter.Wait(1, int64(bytes), qs.gate.wait())
	d.Metrics.addThrottled(waited)
	return waited
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

// Close unmaps the file. The device must not serve requests afterwards.
func (d *Device) Close() {
	d.closeOnce.Do(func() {
		unmapFile(d.mapped)
		d.mapped = nil
	})
}
