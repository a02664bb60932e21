package net

import (
	"encoding/binary"
	"errors"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cards/net/packet"
	"github.com/azote/azote/internal/vhostuser"
	"github.com/azote/azote/internal/virtio"
)

// rxQueue is one receive ring and the loop that fills it: frames from the
// underlay (every receive loop reads the one socket; the kernel hands each
// datagram to one of them) and the answers the switch made for the guest.
type rxQueue struct {
	d      *Device
	pair   int
	ring   *vhostuser.Ring
	stopfd int
	done   chan struct{}

	buf    []byte // one datagram from the underlay
	chains []virtio.Chain
	used   []virtio.Used
	p      packet.Packet
	local  [][]byte
}

// rxBatch is how many datagrams a loop takes before it signals the guest.
const rxBatch = 32

func newRxQueue(d *Device, pair int, r *vhostuser.Ring) (*rxQueue, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	return &rxQueue{d: d, pair: pair, ring: r, stopfd: efd, done: make(chan struct{}),
		buf: make([]byte, 65536), chains: make([]virtio.Chain, 64), used: make([]virtio.Used, 0, 64)}, nil
}

func (r *rxQueue) stop() {
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	unix.Write(r.stopfd, one[:])
	<-r.done
	unix.Close(r.stopfd)
}

// errNoBuffers: the guest has posted too few buffers for the frame.
var errNoBuffers = errors.New("net: no receive buffer")

func (r *rxQueue) run() {
	defer close(r.done)
	d, sw := r.d, r.d.sw
	var scratch [8]byte
	// fds: stop, local frames, underlay, kick (polled only while the
	// guest has no buffers, when the underlay is left to wait).
	fds := []unix.PollFd{
		{Fd: int32(r.stopfd), Events: unix.POLLIN},
		{Fd: int32(d.lfd), Events: unix.POLLIN},
		{Fd: int32(d.underlay), Events: unix.POLLIN},
		{Fd: int32(r.ring.KickFD()), Events: unix.POLLIN},
	}
	starved := false
	for {
		if err := r.ring.Broken(); err != nil {
			r.ring.Fail()
			d.sw.log.Warn("receive ring broken by the driver; stopped until reset", "pair", r.pair, "err", err)
			unix.Poll(fds[:1], -1)
			return
		}
		starved = false
		r.local = sw.takeLocal(r.local[:0])
		for i, f := range r.local {
			if err := r.deliver(f); err != nil {
				sw.m.drop(dropNoBuffer)
				starved = errors.Is(err, errNoBuffers)
			}
			r.local[i] = nil
		}
		got := 0
		for !starved && got < rxBatch {
			n, _, err := unix.Recvfrom(d.underlay, r.buf, unix.MSG_DONTWAIT)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				break
			}
			got++
			frame := sw.fromUnderlay(r.pair, &r.p, r.buf[:n])
			if frame == nil {
				continue
			}
			if err := r.deliver(frame); err != nil {
				sw.m.drop(dropNoBuffer)
				starved = errors.Is(err, errNoBuffers)
			}
		}
		r.ring.Notify()
		if got == rxBatch && !starved {
			continue
		}
		poll := fds[:3]
		if starved {
			// Wait for buffers, not for datagrams: the socket keeps
			// them meanwhile (up to its buffer; the kernel drops the
			// rest, as a full NIC ring would).
			r.ring.EnableNotifications()
			var c virtio.Chain
			if ok, _ := r.ring.Pop(&c); ok {
				r.ring.Unpop(1)
				continue
			}
			poll = []unix.PollFd{fds[0], fds[1], fds[3]}
		}
		for i := range poll {
			poll[i].Revents = 0
		}
		if _, err := unix.Poll(poll, -1); err != nil && err != unix.EINTR {
			sw.log.Error("poll", "err", err)
		}
		if poll[0].Revents != 0 {
			return
		}
		unix.Read(d.lfd, scratch[:])
		if starved {
			unix.Read(r.ring.KickFD(), scratch[:])
			r.ring.DisableNotifications()
		}
	}
}

// deliver writes frame behind a virtio-net header into the guest's
// buffers: as many chains as it takes with MRG_RXBUF, one without, all
// published at once. Without enough buffers it takes none.
func (r *rxQueue) deliver(frame []byte) error {
	mrg := r.d.has(FMrgRxbuf)
	need := packet.VnetHdrLen + len(frame)
	r.used = r.used[:0]
	var hdrAt []byte // where num_buffers goes
	done := 0
	for done < need {
		if len(r.used) == len(r.chains) || (!mrg && len(r.used) == 1) {
			r.ring.Unpop(len(r.used))
			return errNoBuffers
		}
		c := &r.chains[len(r.used)]
		ok, err := r.ring.Pop(c)
		if !ok {
			r.ring.Unpop(len(r.used))
			if err != nil {
				return err // broken
			}
			return errNoBuffers
		}
		if err != nil {
			// A malformed chain is given back empty; the frame goes on
			// in the next.
			r.d.sw.m.drop(dropMalformedChain)
			r.used = append(r.used, virtio.Used{Head: c.Head})
			continue
		}
		n := 0
		for _, w := range c.Writable {
			for len(w) > 0 && done < need {
				var k int
				if done < packet.VnetHdrLen {
					if hdrAt == nil && len(w) >= packet.VnetHdrLen && done == 0 {
						hdrAt = w[:packet.VnetHdrLen]
					}
					k = copy(w, vnetZero[done:])
				} else {
					k = copy(w, frame[done-packet.VnetHdrLen:])
				}
				w = w[k:]
				done += k
				n += k
			}
		}
		r.used = append(r.used, virtio.Used{Head: c.Head, Written: uint32(n)})
	}
	if hdrAt == nil {
		// A header split over buffers: this driver is too odd to serve.
		r.ring.PushAll(r.used)
		return errNoBuffers
	}
	binary.LittleEndian.PutUint16(hdrAt[10:], uint16(len(r.used)))
	if err := r.ring.PushAll(r.used); err != nil {
		return err
	}
	r.d.sw.m.rxFrames.Add(1)
	r.d.sw.m.rxBytes.Add(uint64(len(frame)))
	return nil
}

// vnetZero is the virtio-net header of a received frame: no flags, no
// GSO; num_buffers is filled in.
var vnetZero [packet.VnetHdrLen]byte
