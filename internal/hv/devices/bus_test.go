package devices

import (
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

// ports is a test's view of a port bus, as a guest's inb/outb see it.
type ports struct {
	t   testing.TB
	bus *Bus
}

func (p ports) in(port uint64) byte {
	var b [1]byte
	p.bus.Read(port, b[:])
	return b[0]
}

func (p ports) out(port uint64, v byte) { p.bus.Write(port, []byte{v}) }

// recorder is a device that remembers its last access.
type recorder struct {
	mu     sync.Mutex
	id     byte
	calls  int
	off    uint64
	n      int
	write  bool
	stored []byte
}

func (r *recorder) Read(off uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.off, r.n, r.write = off, len(data), false
	for i := range data {
		data[i] = r.id
	}
}

func (r *recorder) Write(off uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.off, r.n, r.write = off, len(data), true
	r.stored = append(r.stored[:0], data...)
}

type fault struct {
	f     Fault
	addr  uint64
	data  []byte
	write bool
}

func faultBus() (*Bus, *[]fault) {
	var got []fault
	b := NewBus(func(f Fault, addr uint64, data []byte, write bool) {
		got = append(got, fault{f, addr, append([]byte(nil), data...), write})
	})
	return b, &got
}

func TestBusRegisterRefusesOverlap(t *testing.T) {
	// One device at [0x100, 0x110), then each candidate alone.
	cases := []struct {
		name       string
		base, size uint64
		err        error
	}{
		{"same", 0x100, 0x10, ErrOverlap},
		{"inside", 0x104, 2, ErrOverlap},
		{"around", 0xf0, 0x40, ErrOverlap},
		{"over start", 0xf8, 0x9, ErrOverlap},
		{"over end", 0x10f, 0x4, ErrOverlap},
		{"last byte", 0x10f, 1, ErrOverlap},
		{"adjacent below", 0xf0, 0x10, nil},
		{"adjacent above", 0x110, 0x10, nil},
		{"far", 0x1000, 1, nil},
		{"empty", 0x200, 0, ErrEmptyRange},
		{"wraps", math.MaxUint64 - 3, 8, ErrEmptyRange},
		{"ends at top", math.MaxUint64 - 3, 4, ErrEmptyRange},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := NewBus(nil)
			if err := b.Register(0x100, 0x10, &recorder{}); err != nil {
				t.Fatal(err)
			}
			err := b.Register(c.base, c.size, &recorder{})
			if !errors.Is(err, c.err) {
				t.Fatalf("Register(%#x, %#x) = %v, want %v", c.base, c.size, err, c.err)
			}
		})
	}
	if err := NewBus(nil).Register(0, 1, nil); !errors.Is(err, ErrNilDevice) {
		t.Errorf("nil device: %v", err)
	}
}

// TestBusDispatch checks the binary search against a linear scan over
// many windows registered in random order, at random addresses.
func TestBusDispatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	b, faults := faultBus()
	type win struct {
		base, end uint64
		dev       *recorder
	}
	var wins []win
	for i := 0; len(wins) < 200; i++ {
		base := rng.Uint64N(1 << 20)
		size := 1 + rng.Uint64N(64)
		d := &recorder{id: byte(len(wins))}
		if err := b.Register(base, size, d); err == nil {
			wins = append(wins, win{base, base + size, d})
		}
	}
	for range 20000 {
		addr := rng.Uint64N(1<<20 + 128)
		n := []int{1, 2, 4, 8}[rng.IntN(4)]
		var want *win
		for i := range wins {
			if addr >= wins[i].base && addr < wins[i].end {
				want = &wins[i]
			}
		}
		*faults = (*faults)[:0]
		buf := make([]byte, n)
		b.Read(addr, buf)
		switch {
		case want != nil && addr+uint64(n) <= want.end:
			if len(*faults) != 0 || want.dev.off != addr-want.base || want.dev.n != n || buf[0] != want.dev.id {
				t.Fatalf("read %#x/%d: device %d saw off %#x n %d, faults %v", addr, n, want.dev.id, want.dev.off, want.dev.n, *faults)
			}
		case want != nil:
			if len(*faults) != 1 || (*faults)[0].f != FaultStraddle {
				t.Fatalf("read %#x/%d past the end of [%#x, %#x): faults %v", addr, n, want.base, want.end, *faults)
			}
		default:
			if len(*faults) != 1 {
				t.Fatalf("read %#x/%d in a hole: faults %v", addr, n, *faults)
			}
		}
	}
}

func TestBusRefusesStraddlingAccesses(t *testing.T) {
	b, faults := faultBus()
	d := &recorder{id: 7}
	if err := b.Register(0x3f8, 8, d); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		addr uint64
		n    int
		want Fault
	}{
		{0x3fe, 4, FaultStraddle}, // from inside past the end
		{0x3ff, 2, FaultStraddle},
		{0x3f6, 4, FaultStraddle}, // from a hole into the window
		{0x3f7, 2, FaultStraddle},
		{0x3f0, 8, FaultUnmapped}, // ends exactly at the window
		{0x400, 1, FaultUnmapped},
		{math.MaxUint64, 2, FaultUnmapped}, // addr+n wraps: no overflow, just refused
	}
	for _, c := range cases {
		for _, write := range []bool{false, true} {
			*faults = (*faults)[:0]
			buf := make([]byte, c.n)
			if write {
				b.Write(c.addr, buf)
			} else {
				b.Read(c.addr, buf)
			}
			if d.calls != 0 {
				t.Fatalf("%#x/%d write=%v reached the device", c.addr, c.n, write)
			}
			if len(*faults) != 1 || (*faults)[0].f != c.want || (*faults)[0].addr != c.addr || (*faults)[0].write != write {
				t.Fatalf("%#x/%d write=%v: faults %+v, want one %v", c.addr, c.n, write, *faults, c.want)
			}
		}
	}
	// The window's last byte and the whole window are fine.
	b.Write(0x3ff, []byte{1})
	b.Read(0x3f8, make([]byte, 8))
	if d.calls != 2 {
		t.Errorf("in-window accesses: %d device calls, want 2", d.calls)
	}
}

func TestBusUnmappedReadsAllOnes(t *testing.T) {
	b, faults := faultBus()
	buf := []byte{1, 2, 3, 4}
	b.Read(0x80, buf)
	for _, v := range buf {
		if v != 0xff {
			t.Fatalf("unmapped read = % x, want ff ff ff ff", buf)
		}
	}
	if len(*faults) != 1 || (*faults)[0].f != FaultUnmapped || (*faults)[0].write ||
		string((*faults)[0].data) != "\xff\xff\xff\xff" {
		t.Fatalf("fault handler saw %+v", *faults)
	}
	b.Write(0x80, []byte{0x42})
	if len(*faults) != 2 || !(*faults)[1].write || (*faults)[1].data[0] != 0x42 {
		t.Fatalf("unmapped write: %+v", *faults)
	}

	// A nil handler and an empty bus are fine; a zero-length access does nothing.
	var zero Bus
	zero.Read(0, buf)
	zero.Write(0, buf)
	b.Read(0x80, nil)
	if len(*faults) != 2 {
		t.Errorf("zero-length access reported: %+v", *faults)
	}
}

// TestBusConcurrentLookups runs lookups on many goroutines while windows
// are being added; under -race this proves lookups need no lock.
func TestBusConcurrentLookups(t *testing.T) {
	b := NewBus(nil)
	if err := b.Register(0, 8, &recorder{id: 1}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf [1]byte
			for {
				select {
				case <-stop:
					return
				default:
				}
				b.Read(3, buf[:])
				if buf[0] != 1 {
					t.Errorf("read %d, want 1", buf[0])
					return
				}
			}
		}()
	}
	for i := range uint64(500) {
		if err := b.Register(0x100+i*8, 8, &recorder{}); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestFaultString(t *testing.T) {
	for f, want := range map[Fault]string{FaultUnmapped: "unmapped", FaultStraddle: "straddle", 9: "Fault(9)"} {
		if f.String() != want {
			t.Errorf("%d: %q, want %q", f, f.String(), want)
		}
	}
}
