package vhostuser

import (
	"encoding/binary"
	"errors"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/virtio"
)

// worker serves one ring: it waits for kicks, pops chains, hands them to
// the device in order, pushes them to the used ring in the same order, and
// signals the call eventfd when the driver wants it. Completing in order is
// what lets a restarted card resume from the used index without losing or
// repeating a request.
type worker struct {
	stopfd int
	done   chan struct{}
	last   uint16
}

func startWorker(b *Backend, idx int, r *vring, q *virtio.Queue) (*worker, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	w := &worker{stopfd: efd, done: make(chan struct{})}
	go w.run(b, idx, r, q)
	return w, nil
}

func (w *worker) stop() uint16 {
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	unix.Write(w.stopfd, one[:])
	<-w.done
	unix.Close(w.stopfd)
	return w.last
}

func (w *worker) run(b *Backend, idx int, r *vring, q *virtio.Queue) {
	defer close(w.done)
	var chain virtio.Chain
	var buf [8]byte
	fds := []unix.PollFd{{Fd: int32(r.kick), Events: unix.POLLIN}, {Fd: int32(w.stopfd), Events: unix.POLLIN}}
	broken := false
	for {
		if !broken && !w.drain(b, idx, r, q, &chain) {
			broken = true
			b.log.Warn("virtqueue broken by the driver; stopped until reset", "queue", idx)
			signal(r, &r.err)
		}
		fds[0].Revents, fds[1].Revents = 0, 0
		if broken {
			fds[0].Events = 0
		}
		if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
			b.log.Error("poll on kick", "queue", idx, "err", err)
		}
		if fds[1].Revents != 0 {
			w.last = q.LastAvail()
			return
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			unix.Read(r.kick, buf[:])
		}
	}
}

// drain serves every available chain. It returns false when the queue is
// broken (the driver corrupted its indices).
func (w *worker) drain(b *Backend, idx int, r *vring, q *virtio.Queue, c *virtio.Chain) bool {
	for {
		q.DisableNotifications()
		served := false
		for {
			ok, err := q.Pop(c)
			if errors.Is(err, virtio.ErrBroken) {
				return false
			}
			if !ok && err == nil {
				break
			}
			n := b.dev.Handle(idx, c, err)
			if perr := q.Push(c.Head, n); perr != nil {
				return false
			}
			served = true
		}
		if served && q.NeedNotify() {
			signal(r, &r.call)
		}
		q.EnableNotifications()
		// A request made available between the last Pop and enabling
		// notifications would otherwise wait for the next kick.
		ok, err := q.Pop(c)
		if errors.Is(err, virtio.ErrBroken) {
			return false
		}
		if !ok && err == nil {
			return true
		}
		n := b.dev.Handle(idx, c, err)
		if perr := q.Push(c.Head, n); perr != nil {
			return false
		}
		if q.NeedNotify() {
			signal(r, &r.call)
		}
	}
}

func signal(r *vring, fd *int) {
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	r.mu.Lock()
	if *fd >= 0 {
		unix.Write(*fd, one[:])
	}
	r.mu.Unlock()
}
