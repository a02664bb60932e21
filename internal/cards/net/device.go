package net

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cards/net/packet"
	"github.com/azote/azote/internal/vhostuser"
	"github.com/azote/azote/internal/virtio"
)

// Feature bits of a virtio-net device (virtio 1.2 §5.1.3).
const (
	FCsum      = 0  // the device completes checksums the driver left partial
	FGuestCsum = 1  // the driver takes frames with partial checksums
	FMTU       = 3  // the configuration space holds the MTU
	FMAC       = 5  // the configuration space holds the MAC
	FGuestTSO4 = 7  // the driver takes TCPv4 GSO frames
	FHostTSO4  = 11 // the device takes TCPv4 GSO frames
	FMrgRxbuf  = 15 // a received frame may span several buffers
	FStatus    = 16 // the configuration space holds the link status
	FCtrlVQ    = 17 // a control queue follows the data queues
	FMQ        = 22 // several queue pairs
)

// Offered features. The card completes checksums and segments TCP for
// the guest (FCsum, FHostTSO4): a guest then hands it 64 KiB frames, one
// kick for what would be forty. It hands the guest only whole frames
// with their checksums (no FGuestCsum or FGuestTSO4): what arrives over
// the underlay was completed by the sending card.
const offered = 1<<FCsum | 1<<FHostTSO4 | 1<<FMTU | 1<<FMAC | 1<<FMrgRxbuf | 1<<FStatus | 1<<FCtrlVQ | 1<<FMQ

// statusLinkUp is VIRTIO_NET_S_LINK_UP.
const statusLinkUp = 1

// maxFrame bounds a frame with its virtio-net header, as a guest with
// TSO sends it: 64 KiB of IP datagram behind an Ethernet header.
const maxFrame = packet.VnetHdrLen + packet.EthernetHeaderLen + 65535

// MaxPairs bounds the queue pairs of one interface.
const MaxPairs = 16

// Config is what the card is told about its interface at start.
type Config struct {
	MAC   packet.MAC
	Pairs int    // queue pairs, one per vCPU
	MTU   uint16 // the guest's MTU: the underlay's less the encapsulation
}

// Device is one virtio-net interface. The receive queues (even indices
// below 2×Pairs) are driven by the device (vhostuser.DrivenDevice); the
// transmit queues (odd) and the control queue (last) are served by the
// backend's workers through Handle.
type Device struct {
	cfg   Config
	acked atomic.Uint64
	sw    *Switch

	// tx holds each transmit queue's buffers, used by its worker only.
	tx []txQueue

	mu       sync.Mutex
	rx       []*rxQueue // by pair; nil while its ring is stopped
	wg       sync.WaitGroup
	lfd      int // eventfd: a frame waits in sw's local queue
	underlay int // the bound UDP socket datagrams arrive on
}

type txQueue struct {
	buf []byte // the gathered chain
	seg []byte // one segment of a GSO frame
	out []byte // the encapsulated frame
	p   packet.Packet
}

// New makes the device: sw decides where frames go, datagrams arrive on
// the UDP socket underlay (which the caller keeps open).
func New(cfg Config, sw *Switch, underlay int) (*Device, error) {
	if cfg.Pairs < 1 || cfg.Pairs > MaxPairs {
		return nil, fmt.Errorf("net: %d queue pairs (1 to %d)", cfg.Pairs, MaxPairs)
	}
	if cfg.MAC.IsMulticast() || cfg.MAC == (packet.MAC{}) {
		return nil, fmt.Errorf("net: MAC %v is not a unicast address", cfg.MAC)
	}
	if cfg.MTU < 576 || int(cfg.MTU) > 65535-packet.EthernetHeaderLen {
		return nil, fmt.Errorf("net: MTU %d", cfg.MTU)
	}
	lfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	d := &Device{cfg: cfg, sw: sw, tx: make([]txQueue, cfg.Pairs), rx: make([]*rxQueue, cfg.Pairs), lfd: lfd, underlay: underlay}
	for i := range d.tx {
		d.tx[i] = txQueue{buf: make([]byte, maxFrame), seg: make([]byte, maxFrame), out: make([]byte, 0, maxFrame+256)}
	}
	sw.wake = d.wakeLocal
	return d, nil
}

// Close releases the device once the backend has stopped every ring.
func (d *Device) Close() { unix.Close(d.lfd) }

// Features implements vhostuser.Device.
func (d *Device) Features() uint64 { return offered }

// AckFeatures implements vhostuser.FeatureAcker.
func (d *Device) AckFeatures(v uint64) { d.acked.Store(v) }

func (d *Device) has(f uint) bool { return d.acked.Load()&(1<<f) != 0 }

// NumQueues implements vhostuser.Device: the pairs and the control queue.
func (d *Device) NumQueues() int { return 2*d.cfg.Pairs + 1 }

// QueueNum implements vhostuser.QueueNumDevice: queue pairs.
func (d *Device) QueueNum() int { return d.cfg.Pairs }

// Config implements vhostuser.Device: mac, status, max_virtqueue_pairs,
// mtu (virtio 1.2 §5.1.4). The link is always up: a restarting card
// comes back behind the same socket.
func (d *Device) Config() []byte {
	b := make([]byte, 12)
	copy(b, d.cfg.MAC[:])
	binary.LittleEndian.PutUint16(b[6:], statusLinkUp)
	binary.LittleEndian.PutUint16(b[8:], uint16(d.cfg.Pairs))
	binary.LittleEndian.PutUint16(b[10:], d.cfg.MTU)
	return b
}

// Driven implements vhostuser.DrivenDevice: the receive queues.
func (d *Device) Driven(q int) bool { return q < 2*d.cfg.Pairs && q%2 == 0 }

// Attach implements vhostuser.DrivenDevice: a receive ring started.
func (d *Device) Attach(q int, r *vhostuser.Ring) {
	rq, err := newRxQueue(d, q/2, r)
	if err != nil {
		d.sw.log.Error("receive queue not started", "queue", q, "err", err)
		return
	}
	d.mu.Lock()
	d.rx[q/2] = rq
	d.mu.Unlock()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		rq.run()
	}()
}

// Detach implements vhostuser.DrivenDevice: it stops the receive loop and
// waits for it.
func (d *Device) Detach(q int) {
	d.mu.Lock()
	rq := d.rx[q/2]
	d.rx[q/2] = nil
	d.mu.Unlock()
	if rq != nil {
		rq.stop()
	}
}

// wakeLocal tells the receive loops a frame for the guest waits in the
// switch's local queue.
func (d *Device) wakeLocal() {
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	unix.Write(d.lfd, one[:])
}

// Handle implements vhostuser.Device for the transmit queues and the
// control queue. A transmit chain is one frame behind its virtio-net
// header; nothing is written back.
func (d *Device) Handle(q int, c *virtio.Chain, chainErr error) uint32 {
	if q == 2*d.cfg.Pairs {
		return d.control(c, chainErr)
	}
	if q%2 == 0 {
		return 0 // a receive queue is never handed to a worker
	}
	t := &d.tx[q/2]
	m := &d.sw.m
	if chainErr != nil {
		m.drop(dropMalformedChain)
		return 0
	}
	n := 0
	for _, b := range c.Readable {
		if n+len(b) > len(t.buf) {
			m.drop(dropOversize)
			return 0
		}
		n += copy(t.buf[n:], b)
	}
	var h packet.VnetHdr
	if err := h.Decode(t.buf[:n]); err != nil {
		m.drop(dropMalformedFrame)
		return 0
	}
	frame := t.buf[packet.VnetHdrLen:n]
	switch {
	case h.GSOType != packet.GSONone:
		if !d.has(FHostTSO4) {
			m.drop(dropMalformedFrame)
			return 0
		}
		err := packet.Segment(frame, &h, t.seg, func(seg []byte) error {
			d.sw.fromGuest(q/2, &t.p, seg, &t.out)
			return nil
		})
		if err != nil {
			m.drop(dropMalformedFrame)
		}
	default:
		if h.Flags&packet.VnetFlagNeedsCsum != 0 && (!d.has(FCsum) || packet.Finish(frame, &h) != nil) {
			m.drop(dropMalformedFrame)
			return 0
		}
		d.sw.fromGuest(q/2, &t.p, frame, &t.out)
	}
	return 0
}

// Control queue commands (virtio 1.2 §5.1.6.5).
const (
	ctrlClassMQ      = 4
	ctrlMQPairsSet   = 0
	ctrlOK, ctrlFail = 0, 1
)

var errCtrl = errors.New("net: malformed control command")

// control answers one control-queue command: the number of queue pairs
// in use (every pair is served whatever the answer, so the command only
// needs checking); anything else is refused.
func (d *Device) control(c *virtio.Chain, chainErr error) uint32 {
	if chainErr != nil || len(c.Writable) == 0 || len(c.Writable[0]) == 0 {
		d.sw.m.drop(dropMalformedChain)
		return 0
	}
	ack := c.Writable[0]
	ack[0] = ctrlFail
	var cmd [4]byte
	n := 0
	for _, b := range c.Readable {
		n += copy(cmd[min(n, len(cmd)):], b)
	}
	if err := d.checkControl(cmd[:min(n, len(cmd))]); err == nil {
		ack[0] = ctrlOK
	}
	return 1 // the ack, the first writable byte
}

func (d *Device) checkControl(cmd []byte) error {
	if len(cmd) < 4 || cmd[0] != ctrlClassMQ || cmd[1] != ctrlMQPairsSet {
		return errCtrl
	}
	if n := binary.LittleEndian.Uint16(cmd[2:]); n < 1 || int(n) > d.cfg.Pairs {
		return fmt.Errorf("%w: %d queue pairs of %d", errCtrl, n, d.cfg.Pairs)
	}
	return nil
}
