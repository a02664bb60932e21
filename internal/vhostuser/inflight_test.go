package vhostuser

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/virtio"
)

// newTestTracker returns a tracker over a fresh region of capacity entries.
func newTestTracker(t *testing.T, capacity uint16) *tracker {
	t.Helper()
	b, err := unix.Mmap(-1, 0, int(inflightQueueBytes(capacity)), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return &tracker{r: newInflightRegion(b, capacity)}
}

// TestInflightRecover takes heads, returns some, "dies" at each point of
// the completion protocol, and checks what a new backend would do from
// the region alone and the used index in guest memory.
func TestInflightRecover(t *testing.T) {
	const size = 8
	// Run a fresh backend life: heads 5, 3, 7 taken in that order, then
	// head 3 completes; stop says where in that completion the backend
	// dies. It returns the region and the used index the driver sees.
	type stop int
	const (
		beforeReturn stop = iota // 3 not yet returned
		afterLink                // linked as the last batch, used ring not yet updated
		afterPublish             // used ring updated, region not yet retired
		afterRetire              // fully returned
	)
	life := func(s stop) (*tracker, uint16) {
		tr := newTestTracker(t, size)
		if base, err := tr.recover(0, 0, size); err != nil || base != 0 || len(tr.resubmit) != 0 {
			t.Fatalf("new region: base %d resubmit %v err %v", base, tr.resubmit, err)
		}
		for _, h := range []uint16{5, 3, 7} {
			tr.took(h)
		}
		used := uint16(0)
		if s >= afterLink {
			tr.returning(3, used)
		}
		if s >= afterPublish {
			used++ // the driver sees used->idx 1
		}
		if s >= afterRetire {
			tr.returned(3, used)
		}
		// The next life starts from the shared memory alone.
		return &tracker{r: tr.r}, used
	}
	for _, c := range []struct {
		name     string
		at       stop
		resubmit []uint16
		base     uint16
	}{
		{"killed before returning", beforeReturn, []uint16{5, 3, 7}, 3},
		{"killed after linking", afterLink, []uint16{5, 3, 7}, 3},
		{"killed after publishing", afterPublish, []uint16{5, 7}, 3},
		{"killed after retiring", afterRetire, []uint16{5, 7}, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			next, used := life(c.at)
			// The frontend sends the used index as the base, as QEMU does.
			base, err := next.recover(used, used, size)
			if err != nil {
				t.Fatal(err)
			}
			if base != c.base || !slices.Equal(next.resubmit, c.resubmit) {
				t.Fatalf("base %d resubmit %v, want %d %v", base, next.resubmit, c.base, c.resubmit)
			}
			// Requests taken from now on count after the resubmitted ones.
			next.took(1)
			if next.r.counter(1) <= next.r.counter(7) {
				t.Fatalf("counter went back: %d after %d", next.r.counter(1), next.r.counter(7))
			}
		})
	}

	t.Run("inconsistent regions", func(t *testing.T) {
		tr := newTestTracker(t, size)
		tr.recover(0, 0, size)
		tr.took(2)
		setVersionWord := func(v uint32) { binary.LittleEndian.PutUint32(tr.r.b[8:], v) }
		setVersionWord(2 | size<<16)
		if _, err := tr.recover(0, 0, size); !errors.Is(err, errInflightRegion) {
			t.Fatalf("version 2: %v", err)
		}
		setVersionWord(1 | 4<<16)
		if _, err := tr.recover(0, 0, size); !errors.Is(err, errInflightRegion) {
			t.Fatalf("desc_num 4 for 8 entries: %v", err)
		}
		setVersionWord(1 | size<<16)
		if _, err := tr.recover(0, 0, 2); !errors.Is(err, errInflightRegion) {
			t.Fatalf("head 2 in flight on a ring of 2: %v", err)
		}
		if _, err := tr.recover(100, 100, size); !errors.Is(err, errInflightRegion) {
			t.Fatalf("used idx 100 past the region's 0: %v", err)
		}
	})
}

// gateDevice is a ConcurrentDevice whose requests finish only when the
// test releases them: a request's first readable byte names its gate.
type gateDevice struct {
	mu    sync.Mutex
	gates map[byte]chan struct{}
}

func (d *gateDevice) gate(id byte) chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gates[id] == nil {
		d.gates[id] = make(chan struct{})
	}
	return d.gates[id]
}

func (d *gateDevice) Features() uint64 { return 0 }
func (d *gateDevice) NumQueues() int   { return 1 }
func (d *gateDevice) Config() []byte   { return nil }
func (d *gateDevice) Slots() int       { return 4 }
func (d *gateDevice) Handle(q int, c *virtio.Chain, err error) uint32 {
	return d.HandleSlot(q, 0, c, err)
}

func (d *gateDevice) HandleSlot(q, slot int, c *virtio.Chain, err error) uint32 {
	if err != nil || len(c.Readable) == 0 || len(c.Readable[0]) == 0 {
		return 0
	}
	<-d.gate(c.Readable[0][0])
	return 0
}

// serveOnce runs a backend for dev on a fresh socket and returns its path.
func serveOnce(t *testing.T, dev Device) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vhost.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	b := NewBackend(dev, slog.New(slog.NewTextHandler(io.Discard, nil)))
	go func() {
		defer l.Close()
		defer b.Close()
		c, err := l.AcceptUnix()
		if err != nil {
			return
		}
		b.Serve(c)
	}()
	return path
}

// TestLateRequestNotBlocked: a request the driver adds while another is
// stuck in the device (a slow flush) starts and completes at once on an
// idle slot; the worker must not be waiting on the stuck one.
func TestLateRequestNotBlocked(t *testing.T) {
	dev := &gateDevice{gates: map[byte]chan struct{}{}}
	fe, err := Dial(serveOnce(t, dev), FrontendConfig{MemSize: 1 << 20, NumQueues: 1, QueueSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer fe.Close()
	defer close(dev.gate(1))
	q := fe.Queues[0]
	add := func(id byte) uint16 {
		gpa, b, _ := fe.Alloc(1)
		b[0] = id
		h, err := q.Add([]Buf{{Addr: gpa, Len: 1}})
		if err != nil {
			t.Fatal(err)
		}
		q.Kick()
		return h
	}
	add(1)
	time.Sleep(50 * time.Millisecond) // the worker is asleep with request 1 in a slot
	close(dev.gate(2))
	late := add(2)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		q.Wait(10 * time.Millisecond)
		for _, c := range q.Reap(nil) {
			if c.Head != late {
				t.Fatalf("head %d completed; request 1 is still held", c.Head)
			}
			return
		}
	}
	t.Fatal("the late request did not complete while an earlier one was held")
}

// TestResetDeviceClearsInflight: after RESET_DEVICE the driver starts
// over, so nothing the area said was in flight may be resubmitted.
func TestResetDeviceClearsInflight(t *testing.T) {
	b := NewBackend(&gateDevice{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer b.Close()
	reply, err := b.handle(&Message{Request: GetInflightFD, Payload: Inflight{NumQueues: 1, QueueSize: 16}.bytes()})
	if err != nil || reply == nil || len(reply.fds) != 1 {
		t.Fatalf("GET_INFLIGHT_FD: %v", err)
	}
	tr, err := b.tracker(0, 16)
	if err != nil || tr == nil {
		t.Fatalf("tracker: %v", err)
	}
	tr.recover(0, 0, 16)
	tr.took(4)
	if _, err := b.handle(&Message{Request: ResetDevice}); err != nil {
		t.Fatal(err)
	}
	tr, _ = b.tracker(0, 16)
	if base, err := tr.recover(0, 0, 16); err != nil || base != 0 || len(tr.resubmit) != 0 {
		t.Fatalf("after reset: base %d, resubmit %v, err %v", base, tr.resubmit, err)
	}
}

// TestCompletionOrder holds three requests in the device and lets the
// last one finish first. With inflight tracking it comes back at once;
// without, the used ring stays in ring order and it waits for the first.
func TestCompletionOrder(t *testing.T) {
	for _, tracking := range []bool{true, false} {
		name := map[bool]string{true: "inflight tracking", false: "ring order"}[tracking]
		t.Run(name, func(t *testing.T) {
			dev := &gateDevice{gates: map[byte]chan struct{}{}}
			fe, err := Dial(serveOnce(t, dev), FrontendConfig{MemSize: 1 << 20, NumQueues: 1, QueueSize: 16, NoInflight: !tracking})
			if err != nil {
				t.Fatal(err)
			}
			defer fe.Close()
			if got := fe.Protocol&(1<<PFInflightShmfd) != 0; got != tracking {
				t.Fatalf("inflight negotiated: %v", got)
			}
			q := fe.Queues[0]
			heads := map[uint16]byte{}
			for id := byte(1); id <= 3; id++ {
				gpa, b, _ := fe.Alloc(1)
				b[0] = id
				h, err := q.Add([]Buf{{Addr: gpa, Len: 1}})
				if err != nil {
					t.Fatal(err)
				}
				heads[h] = id
			}
			q.Kick()
			close(dev.gate(3))
			var got []byte
			reap := func(want int, wait time.Duration) {
				deadline := time.Now().Add(wait)
				for len(got) < want && time.Now().Before(deadline) {
					q.Wait(10 * time.Millisecond)
					for _, c := range q.Reap(nil) {
						got = append(got, heads[c.Head])
					}
				}
			}
			if tracking {
				reap(1, 5*time.Second)
				if !slices.Equal(got, []byte{3}) {
					t.Fatalf("with request 3 alone finished, completions %v", got)
				}
			} else {
				reap(1, 300*time.Millisecond)
				if len(got) != 0 {
					t.Fatalf("ring order broken: %v completed before request 1", got)
				}
			}
			close(dev.gate(1))
			close(dev.gate(2))
			reap(3, 5*time.Second)
			want := []byte{3, 1, 2}
			if !tracking {
				want = []byte{1, 2, 3}
			}
			// Requests 1 and 2 may finish in either order once released.
			if len(got) != 3 || got[0] != want[0] || !tracking && !slices.Equal(got, want) {
				t.Fatalf("completions %v, want %v", got, want)
			}
		})
	}
}

// TestSetInflightFDChecks refuses areas a backend could fault on.
func TestSetInflightFDChecks(t *testing.T) {
	b := NewBackend(&gateDevice{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer b.Close()
	memfd := func(size int, seal bool) int {
		fd, err := unix.MemfdCreate("t", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			t.Fatal(err)
		}
		unix.Ftruncate(fd, int64(size))
		if seal {
			unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK)
		}
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	need := inflightQueueBytes(16)
	for name, c := range map[string]struct {
		in Inflight
		fd int
	}{
		"no queues":      {Inflight{MmapSize: need, NumQueues: 0, QueueSize: 16}, memfd(4096, true)},
		"over 64 MiB":    {Inflight{MmapSize: 65 << 20, NumQueues: 1, QueueSize: 16}, memfd(4096, true)},
		"offset too far": {Inflight{MmapSize: need, MmapOffset: 65 << 20, NumQueues: 1, QueueSize: 16}, memfd(4096, true)},
		"too small":      {Inflight{MmapSize: need - 1, NumQueues: 1, QueueSize: 16}, memfd(4096, true)},
		"file too short": {Inflight{MmapSize: need, NumQueues: 1, QueueSize: 16}, memfd(int(need)-1, true)},
		"not sealed":     {Inflight{MmapSize: need, NumQueues: 1, QueueSize: 16}, memfd(4096, false)},
		"two queues":     {Inflight{MmapSize: 2 * need, NumQueues: 2, QueueSize: 16}, memfd(4096, true)},
		"queue size 3":   {Inflight{MmapSize: need, NumQueues: 1, QueueSize: 3}, memfd(4096, true)},
		"odd offset":     {Inflight{MmapSize: need, MmapOffset: 8, NumQueues: 1, QueueSize: 16}, memfd(4096, true)},
	} {
		err := b.setInflightFD(&Message{Request: SetInflightFD, Payload: c.in.bytes(), FDs: []int{c.fd}})
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	one := Inflight{MmapSize: need, NumQueues: 1, QueueSize: 16}
	for _, fds := range [][]int{nil, {memfd(4096, true), memfd(4096, true)}} {
		if err := b.setInflightFD(&Message{Request: SetInflightFD, Payload: one.bytes(), FDs: fds}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%d fds: %v", len(fds), err)
		}
	}
	ok := Inflight{MmapSize: need, MmapOffset: 4096, NumQueues: 1, QueueSize: 16}
	if err := b.setInflightFD(&Message{Request: SetInflightFD, Payload: ok.bytes(), FDs: []int{memfd(8192, true)}}); err != nil {
		t.Fatalf("valid area: %v", err)
	}
	b.dropInflight()
}

// FuzzInflightRecover gives recover an arbitrary region (it comes from
// the frontend) and used index: it must not panic, and whatever it
// accepts must resume within one ring of the used index with distinct
// heads inside the ring.
func FuzzInflightRecover(f *testing.F) {
	const capacity = 8
	seed := make([]byte, inflightQueueBytes(capacity))
	binary.LittleEndian.PutUint32(seed[8:], 1|capacity<<16)
	seed[inflightHeader+3*inflightDesc] = 1
	f.Add(seed, uint16(0), uint8(3))
	f.Add(seed, uint16(1), uint8(3))
	f.Fuzz(func(t *testing.T, region []byte, usedIdx uint16, ringShift uint8) {
		ringSize := uint16(1) << (ringShift % 4) // 1..8
		tr := newTestTracker(t, capacity)
		copy(tr.r.b, region)
		fresh := tr.r.version() == 0
		base, err := tr.recover(usedIdx, usedIdx, ringSize)
		if err != nil {
			return
		}
		n := base - usedIdx
		if fresh && (n != 0 || len(tr.resubmit) != 0) || int(n) != len(tr.resubmit) || n > ringSize {
			t.Fatalf("base %d for used %d with %d resubmitted, ring %d, new region %v", base, usedIdx, len(tr.resubmit), ringSize, fresh)
		}
		seen := map[uint16]bool{}
		for _, h := range tr.resubmit {
			if h >= ringSize || seen[h] {
				t.Fatalf("resubmit %v on a ring of %d", tr.resubmit, ringSize)
			}
			seen[h] = true
		}
	})
}

// TestPipelineBrokenRing: a driver that moves avail idx more than a ring
// ahead breaks the queue while a request is held in the device. The
// worker waits for the held request (its buffers are still in use), then
// serves nothing more, and the connection closes without hanging.
func TestPipelineBrokenRing(t *testing.T) {
	for _, tracking := range []bool{true, false} {
		dev := &gateDevice{gates: map[byte]chan struct{}{}}
		fe, err := Dial(serveOnce(t, dev), FrontendConfig{MemSize: 1 << 20, NumQueues: 1, QueueSize: 16, NoInflight: !tracking})
		if err != nil {
			t.Fatal(err)
		}
		q := fe.Queues[0]
		add := func(id byte) {
			gpa, b, _ := fe.Alloc(1)
			b[0] = id
			if _, err := q.Add([]Buf{{Addr: gpa, Len: 1}}); err != nil {
				t.Fatal(err)
			}
		}
		add(1) // held
		q.Kick()
		time.Sleep(50 * time.Millisecond)
		// Corrupt avail idx: 17 entries ahead of a 16-entry ring.
		storeIdx(fe.Mem[q.avail:], q.nextAvail+17)
		q.Kick()
		time.Sleep(50 * time.Millisecond)
		close(dev.gate(1))
		close(dev.gate(2))
		storeIdx(fe.Mem[q.avail:], q.nextAvail)
		add(2) // would complete at once on a working queue
		q.Kick()
		time.Sleep(200 * time.Millisecond)
		for _, c := range q.Reap(nil) {
			// The held request may or may not be returned; request 2 must not.
			if fe.Mem[binary.LittleEndian.Uint64(fe.Mem[q.desc+16*uint64(c.Head):])] == 2 {
				t.Fatalf("tracking=%v: a request was served after the ring broke", tracking)
			}
		}
		done := make(chan struct{})
		go func() { fe.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("tracking=%v: closing a broken queue hung", tracking)
		}
	}
}
