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
	// pipe serves several chains at once for a ConcurrentDevice.
	pipe *pipeline
}

func startWorker(b *Backend, idx int, r *vring, q *virtio.Queue) (*worker, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	w := &worker{stopfd: efd, done: make(chan struct{})}
	if cd, ok := b.dev.(ConcurrentDevice); ok && cd.Slots() > 1 {
		w.pipe = newPipeline(cd, idx)
	}
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
	if w.pipe != nil {
		defer w.pipe.close()
	}
	var chain virtio.Chain
	var buf [8]byte
	fds := []unix.PollFd{{Fd: int32(r.kick), Events: unix.POLLIN}, {Fd: int32(w.stopfd), Events: unix.POLLIN}}
	broken := false
	for {
		drain := w.drain
		if w.pipe != nil {
			drain = w.pipe.drain
		}
		if !broken && !drain(b, idx, r, q, &chain) {
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

// pipeline serves up to len(slots) chains of one queue concurrently, each
// in its own goroutine, and completes them in ring order:
//
//	worker: Pop → slot (round robin) ──► slot goroutine: HandleSlot
//	worker: wait for the oldest slot ◄── done
//	worker: Push (ring order), signal
//
// Only the worker touches the queue. A chain's buffers belong to its slot
// until the worker has seen it done.
type pipeline struct {
	slots []*slot
	head  int // oldest chain in flight
	count int // chains in flight
}

type slot struct {
	chain virtio.Chain
	err   error
	n     uint32
	work  chan struct{}
	done  chan struct{}
}

func newPipeline(cd ConcurrentDevice, idx int) *pipeline {
	p := &pipeline{}
	for i := 0; i < cd.Slots(); i++ {
		s := &slot{work: make(chan struct{}), done: make(chan struct{})}
		p.slots = append(p.slots, s)
		go func(i int) {
			for range s.work {
				s.n = cd.HandleSlot(idx, i, &s.chain, s.err)
				s.done <- struct{}{}
			}
		}(i)
	}
	return p
}

// close stops the slot goroutines; no chain is in flight by then.
func (p *pipeline) close() {
	for _, s := range p.slots {
		close(s.work)
	}
}

// dispatch pops the next chain into a free slot and starts it. It reports
// whether there was one, and false with broken set when the driver
// corrupted the ring.
func (p *pipeline) dispatch(q *virtio.Queue) (started, broken bool) {
	s := p.slots[(p.head+p.count)%len(p.slots)]
	ok, err := q.Pop(&s.chain)
	if errors.Is(err, virtio.ErrBroken) {
		return false, true
	}
	if !ok && err == nil {
		return false, false
	}
	s.err = err
	s.work <- struct{}{}
	p.count++
	return true, false
}

// complete waits for the oldest chain and pushes it.
func (p *pipeline) complete(q *virtio.Queue) error {
	s := p.slots[p.head]
	<-s.done
	p.head = (p.head + 1) % len(p.slots)
	p.count--
	return q.Push(s.chain.Head, s.n)
}

// quiesce waits for every chain in flight (their buffers are guest
// memory the device is still using) without pushing them.
func (p *pipeline) quiesce() {
	for p.count > 0 {
		<-p.slots[p.head].done
		p.head = (p.head + 1) % len(p.slots)
		p.count--
	}
}

// drain is worker.drain for a ConcurrentDevice.
func (p *pipeline) drain(b *Backend, idx int, r *vring, q *virtio.Queue, _ *virtio.Chain) bool {
	for {
		q.DisableNotifications()
		for {
			for p.count < len(p.slots) {
				started, broken := p.dispatch(q)
				if broken {
					p.quiesce()
					return false
				}
				if !started {
					break
				}
			}
			if p.count == 0 {
				break
			}
			if err := p.complete(q); err != nil {
				p.quiesce()
				return false
			}
			if q.NeedNotify() {
				signal(r, &r.call)
			}
		}
		q.EnableNotifications()
		// A request made available between the last Pop and enabling
		// notifications would otherwise wait for the next kick.
		started, broken := p.dispatch(q)
		if broken {
			p.quiesce()
			return false
		}
		if !started {
			return true
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
