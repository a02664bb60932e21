package virtio

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"
)

// popPushCycle is one request through a queue the way a card serves it:
// the driver offers a three-buffer chain, the device pops it, pushes it,
// decides whether to notify, and toggles notifications.
func popPushCycle(g *guest, c *Chain) error {
	g.offer(0)
	g.q.DisableNotifications()
	ok, err := g.q.Pop(c)
	if !ok || err != nil {
		return errors.New("no chain")
	}
	if err := g.q.Push(c.Head, 1); err != nil {
		return err
	}
	g.q.NeedNotify()
	g.q.EnableNotifications()
	if ok, _ := g.q.Pop(c); ok {
		return errors.New("unexpected chain")
	}
	return nil
}

func setupCycle(t testing.TB, indirect, eventIdx bool) *guest {
	g := newGuest(t, 256, 0, func(c *QueueConfig) { c.Indirect = true; c.EventIdx = eventIdx })
	if indirect {
		g.desc(0, table(0), 3*16, descFIndirect, 0)
		g.descIn(table(0), 0, buf(0), 16, descFNext, 1)
		g.descIn(table(0), 1, buf(1), 4096, descFNext, 2)
		g.descIn(table(0), 2, buf(2), 1, descFWrite, 0)
	} else {
		g.desc(0, buf(0), 16, descFNext, 1)
		g.desc(1, buf(1), 4096, descFNext, 2)
		g.desc(2, buf(2), 1, descFWrite, 0)
	}
	return g
}

func TestPopPushAllocs(t *testing.T) {
	for _, indirect := range []bool{false, true} {
		for _, eventIdx := range []bool{false, true} {
			g := setupCycle(t, indirect, eventIdx)
			var c Chain
			var err error
			allocs := testing.AllocsPerRun(1000, func() {
				if e := popPushCycle(g, &c); e != nil {
					err = e
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if allocs != 0 {
				t.Errorf("indirect=%v eventIdx=%v: %v allocations per Pop+Push, want 0", indirect, eventIdx, allocs)
			}
		}
	}
}

func BenchmarkPopPush(b *testing.B) {
	for _, bc := range []struct {
		name               string
		indirect, eventIdx bool
	}{{"direct", false, false}, {"direct-eventidx", false, true}, {"indirect-eventidx", true, true}} {
		b.Run(bc.name, func(b *testing.B) {
			g := setupCycle(b, bc.indirect, bc.eventIdx)
			var c Chain
			b.ReportAllocs()
			for b.Loop() {
				if err := popPushCycle(g, &c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestConcurrentDriver runs a driver and a device on separate goroutines
// over one ring, with kicks and interrupts as one-slot channels (eventfd
// semantics). Each side suppresses notifications while it is busy and
// re-checks after enabling them, as Linux and the vhostuser worker do; a
// lost wakeup shows up as a timeout, a data race under -race, a wrong or
// repeated completion as an error.
func TestConcurrentDriver(t *testing.T) {
	for _, eventIdx := range []bool{false, true} {
		t.Run(map[bool]string{false: "flags", true: "eventidx"}[eventIdx], func(t *testing.T) {
			const size, total = 16, 20000
			g := newGuest(t, size, 65000, func(c *QueueConfig) { c.EventIdx = eventIdx })
			kick := make(chan struct{}, 1)
			call := make(chan struct{}, 1)
			stop := make(chan struct{})
			signal := func(ch chan struct{}) {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // the device
				defer wg.Done()
				var c Chain
				serve := func() bool {
					ok, err := g.q.Pop(&c)
					if err != nil {
						t.Errorf("device: %v", err)
						return false
					}
					if !ok {
						return false
					}
					// Echo the request's 8-byte sequence number.
					copy(c.Writable[0], c.Readable[0])
					if err := g.q.Push(c.Head, 8); err != nil {
						t.Errorf("device: %v", err)
					}
					return true
				}
				for {
					for {
						g.q.DisableNotifications()
						served := false
						for serve() {
							served = true
						}
						if served && g.q.NeedNotify() {
							signal(call)
						}
						g.q.EnableNotifications()
						if !serve() {
							break
						}
						if g.q.NeedNotify() {
							signal(call)
						}
					}
					select {
					case <-kick:
					case <-stop:
						return
					}
				}
			}()
			defer func() { close(stop); wg.Wait() }()

			// The driver: chains of two descriptors (2i, 2i+1).
			a, u := g.off(g.cfg.AvailRing), g.off(g.cfg.UsedRing)
			free := make([]uint16, 0, size/2)
			for i := range size / 2 {
				free = append(free, uint16(2*i))
			}
			seqOf := make(map[uint16]uint64)
			var sent, done uint64
			lastUsed := g.usedIdx()
			for done < total {
				old := g.next
				for len(free) > 0 && sent < total {
					d := free[len(free)-1]
					free = free[:len(free)-1]
					binary.LittleEndian.PutUint64(g.mem[g.off(buf(int(d))):], sent)
					g.desc(int(d), buf(int(d)), 8, descFNext, d+1)
					g.desc(int(d)+1, buf(int(d)+1), 8, descFWrite, 0)
					seqOf[d] = sent
					g.offer(d) // CAS on the idx word: a full barrier before the checks below
					sent++
				}
				if g.next != old {
					if eventIdx {
						if vringNeedEvent(load16(g.mem, u+4+8*size), g.next, old) {
							signal(kick)
						}
					} else if load16(g.mem, u)&usedFNoNotify == 0 {
						signal(kick)
					}
				}
				reaped := false
				for idx := load16(g.mem, u+2); lastUsed != idx; lastUsed++ {
					id, n := g.used(lastUsed)
					d := uint16(id)
					got := binary.LittleEndian.Uint64(g.mem[g.off(buf(int(d)+1)):])
					if seq, ok := seqOf[d]; !ok || n != 8 || got != seq {
						t.Fatalf("completion %d: id %d len %d seq %d, want seq %d (in flight %v)", done, id, n, got, seq, ok)
					}
					delete(seqOf, d)
					free = append(free, d)
					done++
					reaped = true
				}
				if reaped || (len(free) > 0 && sent < total) {
					continue
				}
				// Nothing to do: enable interrupts, re-check, wait.
				if eventIdx {
					store16(g.mem, a+4+2*size, lastUsed)
				} else {
					store16(g.mem, a, 0)
				}
				if load16(g.mem, u+2) == lastUsed {
					select {
					case <-call:
					case <-time.After(10 * time.Second):
						t.Fatalf("lost wakeup: %d of %d done, used idx %d, avail idx %d", done, total, load16(g.mem, u+2), g.next)
					}
				}
				if !eventIdx {
					store16(g.mem, a, availFNoInterrupt)
				}
			}
		})
	}
}
