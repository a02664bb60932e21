package vhostuser

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/virtio"
)

// worker serves one ring: it waits for kicks, pops chains, hands them to
// the device, pushes them to the used ring, and signals the call eventfd
// when the driver wants it.
//
// Without inflight tracking a ring completes in ring order, which is what
// lets a restarted backend resume from the used index without losing or
// repeating a request. With it (t set), a ConcurrentDevice's requests
// complete as they finish, and the region records what is in flight.
type worker struct {
	stopfd int
	done   chan struct{}
	last   uint16
	q      *virtio.Queue
	t      *tracker
	// pipe serves several chains at once for a ConcurrentDevice.
	pipe *pipeline
	// waiter, when the device can hold requests waiting, is told when
	// the ring idx stops.
	waiter QueueWaiter
	idx    int
	// driven is set when the device drives the ring itself (Ring).
	driven DrivenDevice
}

func startWorker(b *Backend, idx int, r *vring, q *virtio.Queue, t *tracker) (*worker, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	w := &worker{stopfd: efd, done: make(chan struct{}), q: q, t: t, idx: idx}
	if dd, ok := b.dev.(DrivenDevice); ok && dd.Driven(idx) {
		// The device drives this ring; the worker only hands it over
		// and takes it back.
		w.driven = dd
		close(w.done)
		signal(r, &r.call) // as run does: a completion may be unsignalled
		dd.Attach(idx, &Ring{q: q, r: r})
		return w, nil
	}
	if qw, ok := b.dev.(QueueWaiter); ok {
		w.waiter = qw
		qw.StartQueue(idx)
	}
	if cd, ok := b.dev.(ConcurrentDevice); ok && cd.Slots() > 1 {
		if w.pipe, err = newPipeline(w, cd, idx); err != nil {
			unix.Close(efd)
			return nil, err
		}
	}
	go w.run(b, idx, r)
	return w, nil
}

func (w *worker) stop() uint16 {
	if w.driven != nil {
		w.driven.Detach(w.idx)
		unix.Close(w.stopfd)
		return w.q.LastAvail()
	}
	if w.waiter != nil {
		// Requests waiting in the device go on now: the stop waits for
		// every request the ring took.
		w.waiter.StopQueue(w.idx)
	}
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	unix.Write(w.stopfd, one[:])
	<-w.done
	unix.Close(w.stopfd)
	return w.last
}

// pop takes the next chain: first those a previous backend left in
// flight, then the available ring's. Its results are Queue.Pop's.
func (w *worker) pop(c *virtio.Chain) (ok bool, err error) {
	if w.t != nil && len(w.t.resubmit) > 0 {
		h := w.t.resubmit[0]
		w.t.resubmit = w.t.resubmit[1:]
		err := w.q.Resume(c, h)
		return !errors.Is(err, virtio.ErrBroken), err
	}
	ok, err = w.q.Pop(c)
	if ok && w.t != nil {
		w.t.took(c.Head)
	}
	return ok, err
}

// push returns a chain to the driver, retiring it in the inflight region
// around the used ring update.
func (w *worker) push(head uint16, n uint32) error {
	if w.t == nil {
		return w.q.Push(head, n)
	}
	used := w.q.UsedIdx()
	w.t.returning(head, used)
	if err := w.q.Push(head, n); err != nil {
		return err
	}
	w.t.returned(head, used+1)
	return nil
}

func (w *worker) run(b *Backend, idx int, r *vring) {
	defer close(w.done)
	if w.pipe != nil {
		defer w.pipe.close()
	}
	var chain virtio.Chain
	var buf [8]byte
	fds := []unix.PollFd{{Fd: int32(r.kick), Events: unix.POLLIN}, {Fd: int32(w.stopfd), Events: unix.POLLIN}, {Fd: -1}}
	if w.pipe != nil {
		// A slot finishing wakes the worker too.
		fds[2] = unix.PollFd{Fd: int32(w.pipe.efd), Events: unix.POLLIN}
	}
	// A ring that starts over an existing used ring (this backend
	// restarted, or the frontend reconnected) may hold completions the
	// previous backend published but died before signalling: with
	// EVENT_IDX the driver then waits for an interrupt for an entry that
	// is already there, and no later completion crosses its used_event.
	// The queue's notification state starts as "signalled at the used
	// index", so make that true: one call, spurious at worst.
	signal(r, &r.call)
	broken := false
	for {
		var ok bool
		if !broken {
			if w.pipe != nil {
				ok = w.pipe.drain(r)
			} else {
				ok = w.drain(b, idx, r, &chain)
			}
		}
		if !broken && !ok {
			broken = true
			b.log.Warn("virtqueue broken by the driver; stopped until reset", "queue", idx, "err", w.q.Broken())
			signal(r, &r.err)
		}
		fds[0].Revents, fds[1].Revents, fds[2].Revents = 0, 0, 0
		if broken {
			fds[0].Events = 0
		}
		timeout := -1
		if w.pipe != nil && !w.pipe.sleep() {
			// A slot has finished: look at stop and kick without waiting,
			// then serve it.
			timeout = 0
		}
		if _, err := unix.Poll(fds, timeout); err != nil && err != unix.EINTR {
			b.log.Error("poll on kick", "queue", idx, "err", err)
		}
		if w.pipe != nil {
			w.pipe.sleeping.Store(false)
		}
		if fds[1].Revents != 0 {
			if w.pipe != nil {
				w.pipe.finishAll(r)
			}
			w.last = w.q.LastAvail()
			return
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			unix.Read(r.kick, buf[:])
		}
		if fds[2].Revents&unix.POLLIN != 0 {
			unix.Read(int(fds[2].Fd), buf[:])
		}
	}
}

// drain signals once per batch, which saves a system call and a driver
// wake-up per chain on short requests. But a driver with a few long
// requests in flight (1 MiB writes at queue depth 4) would then hear of
// the first only when the last is done, and refill its queue while this
// worker has nothing left to serve: bench/blk measured the card idle a
// third of the time on 1 MiB page-cache writes. So a chain that took
// longSignal or more to serve is signalled at once (the system call is
// small beside it), and no chain waits more than batchSignal for its
// interrupt. Signalling every 40 µs of short chains instead cost 4 KiB
// random I/O on two queues a fifth of its rate.
const (
	longSignal  = 40 * time.Microsecond
	batchSignal = 500 * time.Microsecond
)

// drain serves every available chain, one at a time. It returns false
// when the queue is broken (the driver corrupted its indices).
func (w *worker) drain(b *Backend, idx int, r *vring, c *virtio.Chain) bool {
	q := w.q
	for {
		q.DisableNotifications()
		// One clock read per chain: the end of one chain is the start of
		// the next (a pop in between is a few loads).
		last := time.Now()
		var first time.Time // when serving the oldest unsignalled chain began
		for {
			ok, err := w.pop(c)
			if errors.Is(err, virtio.ErrBroken) {
				return false
			}
			if !ok && err == nil {
				break
			}
			if first.IsZero() {
				first = last
			}
			n := b.dev.Handle(idx, c, err)
			if perr := w.push(c.Head, n); perr != nil {
				return false
			}
			now := time.Now()
			if now.Sub(last) >= longSignal || now.Sub(first) >= batchSignal {
				if q.NeedNotify() {
					signal(r, &r.call)
				}
				first = time.Time{}
			}
			last = now
		}
		if !first.IsZero() && q.NeedNotify() {
			signal(r, &r.call)
		}
		q.EnableNotifications()
		// A request made available between the last Pop and enabling
		// notifications would otherwise wait for the next kick.
		ok, err := w.pop(c)
		if errors.Is(err, virtio.ErrBroken) {
			return false
		}
		if !ok && err == nil {
			return true
		}
		n := b.dev.Handle(idx, c, err)
		if perr := w.push(c.Head, n); perr != nil {
			return false
		}
		if q.NeedNotify() {
			signal(r, &r.call)
		}
	}
}

// pipeline serves up to len(slots) chains of one queue concurrently, each
// in its own goroutine:
//
//	worker: pop → idle slot ──► slot goroutine: HandleSlot
//	worker: push, signal     ◄── done (whichever slot finishes first), efd
//
// The worker never blocks on a slot: it sleeps in poll on the kick, stop
// and efd descriptors, so a request the driver adds while every busy slot
// waits on a slow one (a flush) starts at once on an idle slot.
// Only the worker touches the queue. A chain's buffers belong to its slot
// until the worker has seen it done. With inflight tracking a finished
// chain is pushed at once; without, it waits in ready until every chain
// taken before it is pushed, so the used ring stays in ring order, but its
// slot is free for the next chain meanwhile.
type pipeline struct {
	w     *worker
	slots []*slot
	idle  []*slot
	done  chan *slot
	// efd wakes the worker from poll when a slot finishes while it
	// sleeps (sleeping set); a busy worker finds finished slots on done
	// without that system call. finished counts slots sent or about to be
	// sent on done and not yet received.
	efd      int
	sleeping atomic.Bool
	finished atomic.Int32
	busy     int
	wg       sync.WaitGroup // the slot goroutines

	ordered       bool
	ready         []readyChain // by taken sequence, modulo the ring size
	taken, pushed uint64
}

type readyChain struct {
	head uint16
	n    uint32
	ok   bool
}

type slot struct {
	chain virtio.Chain
	err   error
	n     uint32
	seq   uint64
	work  chan struct{}
}

func newPipeline(w *worker, cd ConcurrentDevice, idx int) (*pipeline, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	n := cd.Slots()
	p := &pipeline{w: w, done: make(chan *slot, n), efd: efd, ordered: w.t == nil}
	if p.ordered {
		p.ready = make([]readyChain, w.q.Size())
	}
	for i := 0; i < n; i++ {
		s := &slot{work: make(chan struct{})}
		p.slots = append(p.slots, s)
		p.idle = append(p.idle, s)
		p.wg.Add(1)
		go func(i int) {
			defer p.wg.Done()
			var one [8]byte
			binary.LittleEndian.PutUint64(one[:], 1)
			for range s.work {
				s.n = cd.HandleSlot(idx, i, &s.chain, s.err)
				p.finished.Add(1)
				p.done <- s
				if p.sleeping.CompareAndSwap(true, false) {
					unix.Write(efd, one[:])
				}
			}
		}(i)
	}
	return p, nil
}

// close stops the slot goroutines; no chain is in flight by then. The
// eventfd is closed only after every goroutine has made its last write.
func (p *pipeline) close() {
	for _, s := range p.slots {
		close(s.work)
	}
	p.wg.Wait()
	unix.Close(p.efd)
}

// dispatch pops the next chain into an idle slot and starts it. It
// reports whether there was one, and false with broken set when the
// driver corrupted the ring.
func (p *pipeline) dispatch() (started, broken bool) {
	if len(p.idle) == 0 || p.ordered && p.taken-p.pushed >= uint64(len(p.ready)) {
		// In order, a driver cannot have more chains out than the ring
		// holds; one that reuses heads in flight waits here.
		return false, false
	}
	s := p.idle[len(p.idle)-1]
	ok, err := p.w.pop(&s.chain)
	if errors.Is(err, virtio.ErrBroken) {
		return false, true
	}
	if !ok && err == nil {
		return false, false
	}
	p.idle = p.idle[:len(p.idle)-1]
	s.err, s.seq = err, p.taken
	p.taken++
	p.busy++
	s.work <- struct{}{}
	return true, false
}

// finish takes back a slot whose chain is done and pushes what can be
// pushed.
func (p *pipeline) finish(s *slot) error {
	p.busy--
	p.idle = append(p.idle, s)
	if !p.ordered {
		p.pushed++
		return p.w.push(s.chain.Head, s.n)
	}
	p.ready[s.seq%uint64(len(p.ready))] = readyChain{head: s.chain.Head, n: s.n, ok: true}
	for {
		e := &p.ready[p.pushed%uint64(len(p.ready))]
		if !e.ok {
			return nil
		}
		e.ok = false
		p.pushed++
		if err := p.w.push(e.head, e.n); err != nil {
			return err
		}
	}
}

// sleep announces that the worker is about to sleep in poll, so that the
// next slot to finish writes the eventfd. It returns false, and the
// worker must not sleep, when a slot finished before the announcement:
// either the worker sees the slot's count here, or the slot sees the
// announcement (each side stores one atomic, then loads the other's).
func (p *pipeline) sleep() bool {
	p.sleeping.Store(true)
	if p.finished.Load() > 0 {
		p.sleeping.Store(false)
		return false
	}
	return true
}

// receive takes the next finished slot, waiting for one.
func (p *pipeline) receive() *slot {
	s := <-p.done
	p.finished.Add(-1)
	return s
}

// quiesce waits for every chain in flight (their buffers are guest
// memory the device is still using) without pushing them.
func (p *pipeline) quiesce() {
	for p.busy > 0 {
		p.idle = append(p.idle, p.receive())
		p.busy--
	}
}

// finishAll waits for every chain in flight and pushes it, for a ring
// being stopped: GET_VRING_BASE then reports a ring with nothing taken
// and not returned.
func (p *pipeline) finishAll(r *vring) {
	for p.busy > 0 {
		if err := p.finish(p.receive()); err != nil {
			p.quiesce()
			return
		}
	}
	if p.w.q.NeedNotify() {
		signal(r, &r.call)
	}
}

// collect pushes every chain that has finished, without waiting. It
// reports whether there was any.
func (p *pipeline) collect() (bool, error) {
	got := false
	for {
		select {
		case s := <-p.done:
			p.finished.Add(-1)
			got = true
			if err := p.finish(s); err != nil {
				return got, err
			}
		default:
			return got, nil
		}
	}
}

// drain is worker.drain for a ConcurrentDevice: it starts every chain it
// can, pushes every one that finished, and returns when neither is
// possible without waiting. It returns false when the queue is broken.
func (p *pipeline) drain(r *vring) bool {
	q := p.w.q
	for {
		q.DisableNotifications()
		for progress := true; progress; {
			progress = false
			for {
				started, broken := p.dispatch()
				if broken {
					p.quiesce()
					return false
				}
				if !started {
					break
				}
				progress = true
			}
			finished, err := p.collect()
			if err != nil {
				p.quiesce()
				return false
			}
			progress = progress || finished
		}
		if q.NeedNotify() {
			signal(r, &r.call)
		}
		if len(p.idle) == 0 {
			// Every slot is busy; the next to finish wakes the worker,
			// which looks at the ring then. No kick is needed meanwhile.
			return true
		}
		q.EnableNotifications()
		// A request made available between the last Pop and enabling
		// notifications would otherwise wait for the next kick.
		started, broken := p.dispatch()
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
