package net

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cards/net/packet"
)

// Tap serves the switch on a tap device in place of a guest: the host
// gateway's interface, which gives the host an address in a VPC. azoted
// makes the device (IFF_TAP|IFF_NO_PI, no virtio-net header) and hands
// the card its descriptor; the card never opens it. The host's kernel
// writes whole frames with their checksums done, so each frame read goes
// to the switch as it is, exactly as a guest's would (the same source
// check, security groups and encapsulation), and what the switch
// delivers is written as it is.
type Tap struct {
	fd       int // the tap device, non-blocking
	underlay int // the bound UDP socket datagrams arrive on
	lfd      int // eventfd: a frame waits in sw's local queue
	stopfd   int // eventfd: Stop was called
	sw       *Switch
	done     chan struct{}

	in, out []byte // a frame read from the tap; a sealed datagram
	local   [][]byte
	p       packet.Packet
}

// tapBatch bounds the frames taken from one side before the other is
// looked at, so neither direction starves the other.
const tapBatch = 64

// NewTap makes the tap port: sw decides where frames go, datagrams
// arrive on underlay. The caller keeps both descriptors open and made
// fd non-blocking.
func NewTap(fd int, sw *Switch, underlay int) (*Tap, error) {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return nil, fmt.Errorf("net: tap: %w", err)
	}
	if fl&unix.O_NONBLOCK == 0 {
		return nil, errors.New("net: tap: the descriptor is blocking")
	}
	lfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	stopfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(lfd)
		return nil, err
	}
	t := &Tap{fd: fd, underlay: underlay, lfd: lfd, stopfd: stopfd, sw: sw, done: make(chan struct{}),
		in: make([]byte, 65536), out: make([]byte, 0, 65536+256)}
	sw.wake = func() {
		var one [8]byte
		binary.LittleEndian.PutUint64(one[:], 1)
		unix.Write(lfd, one[:])
	}
	return t, nil
}

// Run moves frames both ways until Stop.
func (t *Tap) Run() {
	defer close(t.done)
	sw := t.sw
	var scratch [8]byte
	fds := []unix.PollFd{
		{Fd: int32(t.stopfd), Events: unix.POLLIN},
		{Fd: int32(t.lfd), Events: unix.POLLIN},
		{Fd: int32(t.underlay), Events: unix.POLLIN},
		{Fd: int32(t.fd), Events: unix.POLLIN},
	}
	for {
		busy := false
		// Answers made here (ARP) for the host.
		unix.Read(t.lfd, scratch[:])
		t.local = sw.takeLocal(t.local[:0])
		for i, f := range t.local {
			t.deliver(f)
			t.local[i] = nil
		}
		// What the host sends.
		for range tapBatch {
			n, err := unix.Read(t.fd, t.in)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 {
				break
			}
			busy = true
			sw.fromGuest(0, &t.p, t.in[:n], &t.out)
		}
		// What the VPC sends the host.
		for range tapBatch {
			n, _, err := unix.Recvfrom(t.underlay, t.in, unix.MSG_DONTWAIT)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				break
			}
			busy = true
			if frame := sw.fromUnderlay(0, &t.p, t.in[:n]); frame != nil {
				t.deliver(frame)
			}
		}
		if busy {
			continue
		}
		for i := range fds {
			fds[i].Revents = 0
		}
		if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
			sw.log.Error("poll", "err", err)
		}
		if fds[0].Revents != 0 {
			return
		}
		if fds[3].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
			sw.log.Error("the tap device is gone")
			return
		}
	}
}

// deliver writes one frame to the host; a full device queue drops it.
func (t *Tap) deliver(frame []byte) {
	for {
		_, err := unix.Write(t.fd, frame)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.sw.m.drop(dropNoBuffer)
			return
		}
		t.sw.m.rxFrames.Add(1)
		t.sw.m.rxBytes.Add(uint64(len(frame)))
		return
	}
}

// Stop ends Run and releases the port (not the descriptors it was given).
func (t *Tap) Stop() {
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	unix.Write(t.stopfd, one[:])
	<-t.done
	unix.Close(t.stopfd)
	unix.Close(t.lfd)
}

// Done is closed when Run has returned.
func (t *Tap) Done() <-chan struct{} { return t.done }
