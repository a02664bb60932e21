package virtio

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

func TestNewQueueRejects(t *testing.T) {
	mem := make([]byte, gMem)
	gm, err := NewGuestMemory([]Region{{GuestAddr: gBase, Size: gMem, UserAddr: 0x1000, Data: mem}})
	if err != nil {
		t.Fatal(err)
	}
	ok := QueueConfig{Size: 8, DescTable: gBase, AvailRing: gBase + 0x1000, UsedRing: gBase + 0x2000}
	tests := []struct {
		name string
		mod  func(*QueueConfig)
		want error
	}{
		{"size 0", func(c *QueueConfig) { c.Size = 0 }, ErrInvalidConfig},
		{"size not a power of 2", func(c *QueueConfig) { c.Size = 6 }, ErrInvalidConfig},
		{"size above 32768", func(c *QueueConfig) { c.Size = 65535 }, ErrInvalidConfig},
		{"desc misaligned", func(c *QueueConfig) { c.DescTable += 8 }, ErrInvalidConfig},
		{"avail misaligned", func(c *QueueConfig) { c.AvailRing++ }, ErrInvalidConfig},
		{"used misaligned", func(c *QueueConfig) { c.UsedRing += 2 }, ErrInvalidConfig},
		{"negative MaxChainLen", func(c *QueueConfig) { c.MaxChainLen = -1 }, ErrInvalidConfig},
		{"huge MaxChainLen", func(c *QueueConfig) { c.MaxChainLen = 1<<16 + 1 }, ErrInvalidConfig},
		{"desc outside memory", func(c *QueueConfig) { c.DescTable = 0 }, ErrOutOfBounds},
		{"desc past the end", func(c *QueueConfig) { c.DescTable = gBase + gMem - 0x70 }, ErrOutOfBounds},
		{"avail past the end", func(c *QueueConfig) { c.AvailRing = gBase + gMem - 20 }, ErrOutOfBounds},
		{"used past the end", func(c *QueueConfig) { c.UsedRing = gBase + gMem - 68 }, ErrOutOfBounds},
		{"used wraps", func(c *QueueConfig) { c.UsedRing = math.MaxUint64 - 3 }, ErrOutOfBounds},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			if _, err := NewQueue(gm, cfg, 0); !errors.Is(err, tt.want) {
				t.Fatalf("NewQueue = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := NewQueue(gm, ok, 0); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if _, err := NewQueue(nil, ok, 0); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("nil memory: %v", err)
	}
	// The largest queue, with its rings exactly filling the memory.
	big := make([]byte, 16*32768+(6+2*32768)+2+(6+8*32768))
	gm2, err := NewGuestMemory([]Region{{GuestAddr: 0, Size: uint64(len(big)), Data: big}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := QueueConfig{Size: 32768, DescTable: 0, AvailRing: 16 * 32768, UsedRing: 16*32768 + 6 + 2*32768 + 2}
	if _, err := NewQueue(gm2, cfg, 0); err != nil {
		t.Fatalf("size 32768: %v", err)
	}
}

func TestPopSimpleChain(t *testing.T) {
	for _, availOff := range []uint64{0, 2} { // avail ring 4- and 2-aligned
		g := newGuest(t, 8, 0, func(c *QueueConfig) { c.AvailRing += availOff })
		copy(g.mem[g.off(buf(0)):], "header..")
		copy(g.mem[g.off(buf(1)):], "payload")
		g.desc(3, buf(0), 8, descFNext, 5)
		g.desc(5, buf(1), 7, descFNext, 1)
		g.desc(1, buf(2), 0x100, descFWrite|descFNext, 0)
		g.desc(0, buf(3), 1, descFWrite, 0)
		g.offer(3)

		var c Chain
		ok, err := g.q.Pop(&c)
		if !ok || err != nil {
			t.Fatalf("Pop = %v, %v", ok, err)
		}
		if c.Head != 3 || len(c.Readable) != 2 || len(c.Writable) != 2 {
			t.Fatalf("chain head %d, %d readable, %d writable", c.Head, len(c.Readable), len(c.Writable))
		}
		if string(c.Readable[0]) != "header.." || string(c.Readable[1]) != "payload" {
			t.Fatalf("readable = %q", c.Readable)
		}
		if g.hostOff(c.Writable[0]) != g.off(buf(2)) || len(c.Writable[0]) != 0x100 || g.hostOff(c.Writable[1]) != g.off(buf(3)) {
			t.Fatal("writable buffers point to the wrong guest memory")
		}
		if cap(c.Readable[1]) != 7 {
			t.Fatalf("a buffer's capacity runs past it: %d", cap(c.Readable[1]))
		}
		c.Writable[1][0] = 0x42
		if g.mem[g.off(buf(3))] != 0x42 {
			t.Fatal("writes through Writable do not reach guest memory")
		}
		if ok, err := g.q.Pop(&c); ok || err != nil {
			t.Fatalf("second Pop = %v, %v; want nothing available", ok, err)
		}
		if err := g.q.Push(3, 0x101); err != nil {
			t.Fatal(err)
		}
		if id, n := g.used(0); g.usedIdx() != 1 || id != 3 || n != 0x101 {
			t.Fatalf("used idx %d, elem (%d, %d)", g.usedIdx(), id, n)
		}
		if g.q.LastAvail() != 1 || g.q.UsedIdx() != 1 {
			t.Fatalf("LastAvail %d UsedIdx %d", g.q.LastAvail(), g.q.UsedIdx())
		}
	}
}

func TestPopIndirect(t *testing.T) {
	g := newGuest(t, 4, 0, func(c *QueueConfig) { c.Indirect = true })
	copy(g.mem[g.off(buf(0)):], "direct")
	copy(g.mem[g.off(buf(1)):], "in-table")
	// A direct readable descriptor, then an indirect one whose WRITE flag
	// the device must ignore, pointing at a table of three.
	g.desc(2, buf(0), 6, descFNext, 0)
	g.desc(0, table(0), 3*16, descFIndirect|descFWrite, 0)
	g.descIn(table(0), 0, buf(1), 8, descFNext, 2)
	g.descIn(table(0), 2, buf(2), 16, descFWrite|descFNext, 1)
	g.descIn(table(0), 1, buf(3), 1, descFWrite, 7) // no NEXT: next is ignored
	g.offer(2)

	var c Chain
	if ok, err := g.q.Pop(&c); !ok || err != nil {
		t.Fatalf("Pop = %v, %v", ok, err)
	}
	if len(c.Readable) != 2 || string(c.Readable[0]) != "direct" || string(c.Readable[1]) != "in-table" {
		t.Fatalf("readable = %q", c.Readable)
	}
	if len(c.Writable) != 2 || g.hostOff(c.Writable[0]) != g.off(buf(2)) || len(c.Writable[1]) != 1 {
		t.Fatalf("writable = %d buffers", len(c.Writable))
	}
	if err := g.q.Push(c.Head, 17); err != nil {
		t.Fatal(err)
	}

	// A chain of exactly MaxChainLen table entries is fine: the
	// descriptor pointing at the table is not counted.
	g2 := newGuest(t, 4, 0, func(c *QueueConfig) { c.Indirect = true; c.MaxChainLen = 4 })
	g2.desc(0, table(0), 4*16, descFIndirect, 0)
	for i := range 4 {
		g2.descIn(table(0), i, buf(i), 8, descFNext, uint16(i+1))
	}
	g2.descIn(table(0), 3, buf(3), 8, 0, 0)
	g2.offer(0)
	if ok, err := g2.q.Pop(&c); !ok || err != nil || len(c.Readable) != 4 {
		t.Fatalf("Pop of a full indirect table = %v, %v, %d buffers", ok, err, len(c.Readable))
	}
}

func TestPopMalformed(t *testing.T) {
	const size = 8
	tests := []struct {
		name     string
		indirect bool
		maxChain int
		setup    func(g *guest) uint16 // returns the head to offer
		want     error                 // the exact error
		sentinel error
		readable int // buffers validated before the fault
		writable int
	}{
		{name: "next beyond the table", setup: func(g *guest) uint16 {
			g.desc(0, buf(0), 8, descFNext, size)
			return 0
		}, want: errNextRange, sentinel: ErrBadDescriptor, readable: 1},
		{name: "self loop", setup: func(g *guest) uint16 {
			g.desc(4, buf(0), 8, descFNext, 4)
			return 4
		}, want: ErrChainLoop, sentinel: ErrChainLoop, readable: size},
		{name: "loop through three", setup: func(g *guest) uint16 {
			g.desc(0, buf(0), 8, descFNext, 1)
			g.desc(1, buf(1), 8, descFNext, 2)
			g.desc(2, buf(2), 8, descFNext|descFWrite, 1)
			return 0
		}, want: errWrongDirection, sentinel: ErrBadDescriptor, readable: 2, writable: 1},
		{name: "writable loop", setup: func(g *guest) uint16 {
			g.desc(0, buf(0), 8, descFNext|descFWrite, 1)
			g.desc(1, buf(1), 8, descFNext|descFWrite, 0)
			return 0
		}, want: ErrChainLoop, sentinel: ErrChainLoop, writable: size},
		{name: "longer than MaxChainLen", maxChain: 3, setup: func(g *guest) uint16 {
			for i := range 4 {
				g.desc(i, buf(i), 8, descFNext, uint16(i+1))
			}
			g.desc(4, buf(4), 8, 0, 0)
			return 0
		}, want: errTooMany, sentinel: ErrChainTooLong, readable: 3},
		{name: "loop longer than MaxChainLen", maxChain: 3, setup: func(g *guest) uint16 {
			g.desc(0, buf(0), 8, descFNext, 0)
			return 0
		}, want: errTooMany, sentinel: ErrChainTooLong, readable: 3},
		{name: "readable after writable", setup: func(g *guest) uint16 {
			g.desc(0, buf(0), 8, descFNext, 1)
			g.desc(1, buf(1), 8, descFNext|descFWrite, 2)
			g.desc(2, buf(2), 8, 0, 0)
			return 0
		}, want: errWrongDirection, sentinel: ErrBadDescriptor, readable: 1, writable: 1},
		{name: "zero-length readable after writable", setup: func(g *guest) uint16 {
			g.desc(0, buf(0), 8, descFNext|descFWrite, 1)
			g.desc(1, 0, 0, 0, 0)
			return 0
		}, want: errWrongDirection, sentinel: ErrBadDescriptor, writable: 1},
		{name: "indirect not negotiated", setup: func(g *guest) uint16 {
			g.desc(0, table(0), 16, descFIndirect, 0)
			g.descIn(table(0), 0, buf(0), 8, 0, 0)
			return 0
		}, want: errIndirectNotAllowed, sentinel: ErrBadDescriptor},
		{name: "indirect with NEXT", indirect: true, setup: func(g *guest) uint16 {
			g.desc(0, table(0), 16, descFIndirect|descFNext, 1)
			g.desc(1, buf(1), 8, 0, 0)
			g.descIn(table(0), 0, buf(0), 8, 0, 0)
			return 0
		}, want: errIndirectNext, sentinel: ErrBadDescriptor},
		{name: "nested indirect", indirect: true, setup: func(g *guest) uint16 {
			g.desc(0, table(0), 32, descFIndirect, 0)
			g.descIn(table(0), 0, buf(0), 8, descFNext, 1)
			g.descIn(table(0), 1, table(1), 16, descFIndirect, 0)
			g.descIn(table(1), 0, buf(1), 8, 0, 0)
			return 0
		}, want: errNestedIndirect, sentinel: ErrBadDescriptor, readable: 1},
		{name: "indirect length zero", indirect: true, setup: func(g *guest) uint16 {
			g.desc(0, table(0), 0, descFIndirect, 0)
			return 0
		}, want: errIndirectLen, sentinel: ErrBadDescriptor},
		{name: "indirect length not a multiple of 16", indirect: true, setup: func(g *guest) uint16 {
			g.desc(0, table(0), 24, descFIndirect, 0)
			return 0
		}, want: errIndirectLen, sentinel: ErrBadDescriptor},
		{name: "indirect table outside memory", indirect: true, setup: func(g *guest) uint16 {
			g.desc(0, 0x1000, 16, descFIndirect, 0)
			return 0
		}, want: errIndirectTable, sentinel: ErrOutOfBounds},
		{name: "indirect table runs off memory", indirect: true, setup: func(g *guest) uint16 {
			g.desc(0, gBase+gMem-32, 48, descFIndirect, 0)
			return 0
		}, want: errIndirectTable, sentinel: ErrOutOfBounds},
		{name: "indirect table wraps", indirect: true, setup: func(g *guest) uint16 {
			g.desc(0, math.MaxUint64-15, 32, descFIndirect, 0)
			return 0
		}, want: errIndirectTable, sentinel: ErrOutOfBounds},
		{name: "indirect next beyond the table", indirect: true, setup: func(g *guest) uint16 {
			g.desc(0, table(0), 32, descFIndirect, 0)
			g.descIn(table(0), 0, buf(0), 8, descFNext, 2)
			g.descIn(table(0), 2, buf(1), 8, 0, 0) // in memory, not in the table
			return 0
		}, want: errNextRange, sentinel: ErrBadDescriptor, readable: 1},
		{name: "indirect loop", indirect: true, setup: func(g *guest) uint16 {
			g.desc(0, table(0), 32, descFIndirect, 0)
			g.descIn(table(0), 0, buf(0), 8, descFNext, 1)
			g.descIn(table(0), 1, buf(1), 8, descFNext, 0)
			return 0
		}, want: ErrChainLoop, sentinel: ErrChainLoop, readable: 2},
		{name: "indirect longer than MaxChainLen", indirect: true, maxChain: 5, setup: func(g *guest) uint16 {
			g.desc(0, buf(0), 8, descFNext, 1)
			g.desc(1, table(0), 8*16, descFIndirect, 0)
			for i := range 8 {
				g.descIn(table(0), i, buf(i), 8, descFNext, uint16(i+1))
			}
			return 0
		}, want: errTooMany, sentinel: ErrChainTooLong, readable: 5},
		{name: "buffer outside memory", setup: func(g *guest) uint16 {
			g.desc(0, buf(0), 8, descFNext, 1)
			g.desc(1, 0x2000, 8, 0, 0)
			return 0
		}, want: errBuffer, sentinel: ErrOutOfBounds, readable: 1},
		{name: "buffer runs off memory", setup: func(g *guest) uint16 {
			g.desc(0, gBase+gMem-4, 8, descFWrite, 0)
			return 0
		}, want: errBuffer, sentinel: ErrOutOfBounds},
		{name: "address plus length wraps", setup: func(g *guest) uint16 {
			g.desc(0, math.MaxUint64-3, 8, 0, 0)
			return 0
		}, want: errBuffer, sentinel: ErrOutOfBounds},
		{name: "address plus length wraps to guest memory", setup: func(g *guest) uint16 {
			g.desc(0, math.MaxUint64-0xff, 0x100+gBase+0x10, descFWrite, 0)
			return 0
		}, want: errBuffer, sentinel: ErrOutOfBounds},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGuest(t, size, 0, func(c *QueueConfig) {
				c.Indirect = tt.indirect
				c.MaxChainLen = tt.maxChain
			})
			head := tt.setup(g)
			g.offer(head)
			var c Chain
			ok, err := g.q.Pop(&c)
			if !ok || err != tt.want || !errors.Is(err, tt.sentinel) {
				t.Fatalf("Pop = %v, %v; want true, %v", ok, err, tt.want)
			}
			if c.Head != head || g.q.LastAvail() != 1 {
				t.Fatalf("head %d, LastAvail %d: the malformed chain must be consumed", c.Head, g.q.LastAvail())
			}
			if len(c.Readable) != tt.readable || len(c.Writable) != tt.writable {
				t.Fatalf("%d readable, %d writable before the fault; want %d, %d", len(c.Readable), len(c.Writable), tt.readable, tt.writable)
			}
			for _, b := range append(c.Readable, c.Writable...) {
				g.hostOff(b)
			}
			// The device answers it and the queue carries on.
			if err := g.q.Push(c.Head, 0); err != nil {
				t.Fatalf("Push after a malformed chain: %v", err)
			}
			g.desc(7, buf(7), 8, descFWrite, 0)
			g.offer(7)
			if ok, err := g.q.Pop(&c); !ok || err != nil || c.Head != 7 || len(c.Writable) != 1 {
				t.Fatalf("next chain: Pop = %v, %v, head %d", ok, err, c.Head)
			}
		})
	}
}

func TestPopZeroLengthBuffers(t *testing.T) {
	g := newGuest(t, 4, 0, nil)
	g.desc(0, 0xdeadbeef00000000, 0, descFNext, 1) // address never touched
	g.desc(1, buf(0), 8, descFNext, 2)
	g.desc(2, math.MaxUint64, 0, descFWrite, 0)
	g.offer(0)
	var c Chain
	if ok, err := g.q.Pop(&c); !ok || err != nil || len(c.Readable) != 1 || len(c.Writable) != 0 {
		t.Fatalf("Pop = %v, %v, %d readable, %d writable", ok, err, len(c.Readable), len(c.Writable))
	}
}

func TestPopHeadBeyondTableBreaksQueue(t *testing.T) {
	g := newGuest(t, 8, 0, nil)
	g.offer(8)
	var c Chain
	ok, err := g.q.Pop(&c)
	if ok || !errors.Is(err, ErrBroken) {
		t.Fatalf("Pop = %v, %v; want ErrBroken", ok, err)
	}
	g.desc(0, buf(0), 8, 0, 0)
	g.offer(0)
	if ok, err := g.q.Pop(&c); ok || !errors.Is(err, ErrBroken) {
		t.Fatalf("Pop after breaking = %v, %v; want ErrBroken", ok, err)
	}
	if err := g.q.Push(0, 0); !errors.Is(err, ErrBroken) {
		t.Fatalf("Push on a broken queue = %v", err)
	}
}

func TestPopIdxJumpBreaksQueue(t *testing.T) {
	for _, tt := range []struct {
		name  string
		start uint16
		idx   uint16
	}{
		{"size+1 ahead", 0, 9},
		{"backwards", 100, 99},
		{"far ahead across the wrap", 65530, 3}, // 65530+9 mod 2^16
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := newGuest(t, 8, tt.start, nil)
			g.setAvailIdx(tt.idx)
			var c Chain
			for range 3 {
				if ok, err := g.q.Pop(&c); ok || !errors.Is(err, ErrBroken) {
					t.Fatalf("Pop = %v, %v; want ErrBroken, every time", ok, err)
				}
			}
			if g.q.Broken() == nil {
				t.Fatal("Broken() = nil")
			}
		})
	}
	// Exactly Size ahead is a full ring, not an error.
	g := newGuest(t, 8, 65534, nil)
	for i := range 8 {
		g.desc(i, buf(i), 8, 0, 0)
		g.offer(uint16(i))
	}
	var c Chain
	for i := range 8 {
		if ok, err := g.q.Pop(&c); !ok || err != nil || c.Head != uint16(i) {
			t.Fatalf("Pop %d of a full ring = %v, %v, head %d", i, ok, err, c.Head)
		}
	}
}

func TestResumeWithUsedIdxFarBehindIsBroken(t *testing.T) {
	g := newGuest(t, 8, 0, nil)
	q, err := NewQueue(g.gm, g.cfg, 9) // used idx in memory is 0
	if err != nil {
		t.Fatal(err)
	}
	var c Chain
	if ok, err := q.Pop(&c); ok || !errors.Is(err, ErrBroken) {
		t.Fatalf("Pop = %v, %v; want ErrBroken", ok, err)
	}
	q, err = NewQueue(g.gm, g.cfg, 8) // 8 in flight: fine
	if err != nil || q.Broken() != nil {
		t.Fatalf("resume with a full ring in flight: %v, %v", err, q.Broken())
	}
}

func TestWrapAround(t *testing.T) {
	g := newGuest(t, 4, 65533, nil)
	var c Chain
	for i := range 20 {
		d := i % 4
		copy(g.mem[g.off(buf(d)):], []byte{byte(i)})
		g.desc(d, buf(d), 1, 0, 0)
		g.offer(uint16(d))
		ok, err := g.q.Pop(&c)
		if !ok || err != nil || c.Head != uint16(d) || c.Readable[0][0] != byte(i) {
			t.Fatalf("Pop %d = %v, %v, head %d", i, ok, err, c.Head)
		}
		if err := g.q.Push(c.Head, uint32(i)); err != nil {
			t.Fatal(err)
		}
		idx := uint16(65533 + i + 1)
		if g.usedIdx() != idx || g.q.LastAvail() != idx {
			t.Fatalf("after %d: used idx %d, last avail %d, want %d", i, g.usedIdx(), g.q.LastAvail(), idx)
		}
		if id, n := g.used(idx - 1); id != uint32(d) || n != uint32(i) {
			t.Fatalf("used elem %d = (%d, %d)", idx-1, id, n)
		}
	}
	// Several at once across the wrap.
	g = newGuest(t, 8, 65531, nil)
	for i := range 8 {
		g.desc(i, buf(i), 1, descFWrite, 0)
		g.offer(uint16(i))
	}
	for i := range 8 {
		if ok, err := g.q.Pop(&c); !ok || err != nil || c.Head != uint16(i) {
			t.Fatalf("batch Pop %d = %v, %v", i, ok, err)
		}
	}
	if ok, err := g.q.Pop(&c); ok || err != nil {
		t.Fatalf("Pop of an empty ring = %v, %v", ok, err)
	}
	for i := range 8 {
		if err := g.q.Push(uint16(7-i), 1); err != nil {
			t.Fatal(err)
		}
	}
	if g.usedIdx() != 65531+8-65536 {
		t.Fatalf("used idx %d", g.usedIdx())
	}
}

func TestPushErrors(t *testing.T) {
	g := newGuest(t, 8, 0, nil)
	if err := g.q.Push(0, 0); err == nil {
		t.Fatal("Push with nothing in flight succeeded")
	}
	g.desc(0, buf(0), 8, 0, 0)
	g.offer(0)
	var c Chain
	g.q.Pop(&c)
	if err := g.q.Push(8, 0); err == nil {
		t.Fatal("Push of a head beyond the queue size succeeded")
	}
	if err := g.q.Push(0, 0); err != nil {
		t.Fatal(err)
	}
	if g.q.Broken() != nil {
		t.Fatal("a device's bad Push broke the queue")
	}
}

// TestNeedNotifyEventIdx compares NeedNotify with the spec's formula over
// used_event values around and across the 16-bit wrap.
func TestNeedNotifyEventIdx(t *testing.T) {
	var c Chain
	for _, start := range []uint16{0, 65530} {
		for batch := 1; batch <= 4; batch++ {
			for ev := -2; ev <= 6; ev++ {
				g := newGuest(t, 8, start, func(c *QueueConfig) { c.EventIdx = true })
				event := start + uint16(ev)
				g.setUsedEvent(event)
				for i := range batch {
					g.desc(i, buf(i), 8, 0, 0)
					g.offer(uint16(i))
					g.q.Pop(&c)
					g.q.Push(c.Head, 0)
				}
				want := vringNeedEvent(event, start+uint16(batch), start)
				if got := g.q.NeedNotify(); got != want {
					t.Errorf("start %d, %d pushed, used_event %d: NeedNotify = %v, want %v", start, batch, event, got, want)
				}
				if g.q.NeedNotify() {
					t.Errorf("NeedNotify with nothing pushed since the last call")
				}
				if g.usedFlags() != 0 {
					t.Errorf("used flags %#x with EVENT_IDX", g.usedFlags())
				}
			}
		}
	}
}

func TestNeedNotifyNoInterrupt(t *testing.T) {
	g := newGuest(t, 8, 0, nil)
	var c Chain
	push := func() {
		g.desc(0, buf(0), 8, 0, 0)
		g.offer(0)
		g.q.Pop(&c)
		g.q.Push(c.Head, 0)
	}
	if g.q.NeedNotify() {
		t.Fatal("NeedNotify with nothing pushed")
	}
	push()
	if !g.q.NeedNotify() {
		t.Fatal("no notification with interrupts enabled")
	}
	g.setAvailFlags(availFNoInterrupt)
	push()
	if g.q.NeedNotify() {
		t.Fatal("notification despite VIRTQ_AVAIL_F_NO_INTERRUPT")
	}
	g.setAvailFlags(0)
	push()
	if !g.q.NeedNotify() {
		t.Fatal("no notification after interrupts were enabled again")
	}
}

func TestNotificationSuppression(t *testing.T) {
	g := newGuest(t, 8, 0, nil)
	g.q.DisableNotifications()
	if g.usedFlags() != usedFNoNotify {
		t.Fatalf("used flags %#x after DisableNotifications", g.usedFlags())
	}
	g.desc(0, buf(0), 8, 0, 0)
	g.offer(0)
	var c Chain
	g.q.Pop(&c)
	g.q.Push(0, 0)
	if g.usedFlags() != usedFNoNotify || g.usedIdx() != 1 {
		t.Fatalf("Push lost the flags: flags %#x idx %d", g.usedFlags(), g.usedIdx())
	}
	g.q.EnableNotifications()
	if g.usedFlags() != 0 || g.usedIdx() != 1 {
		t.Fatalf("used flags %#x idx %d after EnableNotifications", g.usedFlags(), g.usedIdx())
	}

	e := newGuest(t, 8, 65535, func(c *QueueConfig) { c.EventIdx = true })
	e.q.DisableNotifications()
	e.q.EnableNotifications()
	if e.availEvent() != 65535 || e.usedFlags() != 0 {
		t.Fatalf("avail_event %d flags %#x, want 65535, 0", e.availEvent(), e.usedFlags())
	}
	// With notifications on, Pop keeps asking for the next entry.
	for i := range 3 {
		e.desc(i, buf(i), 8, 0, 0)
		e.offer(uint16(i))
	}
	e.q.Pop(&c)
	if e.availEvent() != 0 {
		t.Fatalf("avail_event %d after a Pop, want 0", e.availEvent())
	}
	// With notifications off, it stays.
	e.q.DisableNotifications()
	e.q.Pop(&c)
	if e.availEvent() != 0 {
		t.Fatalf("avail_event %d moved while notifications were off", e.availEvent())
	}
	e.q.EnableNotifications()
	if e.availEvent() != 1 {
		t.Fatalf("avail_event %d, want 1", e.availEvent())
	}
}

// TestFieldsAtRegionEnd lays the rings out so that the 32-bit words around
// used_event and avail_event would run past the end of their regions: the
// fields are then accessed on their own.
func TestFieldsAtRegionEnd(t *testing.T) {
	const size = 8
	a := make([]byte, 0x1000+6+2*size) // descriptors, avail ring at the very end
	u := make([]byte, 0x100+6+8*size)  // used ring at the very end
	bufs := make([]byte, 0x1000)
	gm, err := NewGuestMemory([]Region{
		{GuestAddr: 0x10000, Size: uint64(len(a)), UserAddr: 0x10000, Data: a},
		{GuestAddr: 0x20000, Size: uint64(len(u)), UserAddr: 0x20000, Data: u},
		{GuestAddr: 0x30000, Size: uint64(len(bufs)), UserAddr: 0x30000, Data: bufs},
	})
	if err != nil {
		t.Fatal(err)
	}
	q, err := NewQueue(gm, QueueConfig{Size: size, DescTable: 0x10000, AvailRing: 0x11000, UsedRing: 0x20100, EventIdx: true}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if q.usedEvent.word != nil || q.availEvent.word != nil || q.availIdx.word == nil {
		t.Fatal("test layout does not exercise the fallback")
	}
	a[0x1000+4+2*size] = 0 // used_event 0: notify on the first completion
	a[0x1000+4] = 0        // head 0
	a[0x1000+2] = 1        // avail idx 1
	var c Chain
	if ok, err := q.Pop(&c); !ok || err != nil {
		t.Fatalf("Pop = %v, %v", ok, err) // descriptor 0 is all zeros: an empty buffer
	}
	q.Push(0, 0)
	if !q.NeedNotify() {
		t.Fatal("used_event 0 read wrong")
	}
	q.EnableNotifications()
	if got := uint16(u[0x100+4+8*size]) | uint16(u[0x100+5+8*size])<<8; got != 1 {
		t.Fatalf("avail_event = %d, want 1", got)
	}
}

func TestPopAcrossRegions(t *testing.T) {
	g := newGuest(t, 4, 0, nil)
	// Add a region right after the test memory in guest physical space,
	// mapped elsewhere in the host.
	extra := make([]byte, 0x1000)
	copy(extra, "tail")
	gm, err := NewGuestMemory([]Region{
		{GuestAddr: gBase, Size: gMem, UserAddr: 0x7f0000000000, Data: g.mem},
		{GuestAddr: gBase + gMem, Size: 0x1000, UserAddr: 0x7f0000100000, Data: extra},
	})
	if err != nil {
		t.Fatal(err)
	}
	q, err := NewQueue(gm, g.cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	copy(g.mem[gMem-4:], "head")
	g.desc(0, gBase+gMem-4, 8, 0, 0)
	g.offer(0)
	var c Chain
	if ok, err := q.Pop(&c); !ok || err != nil || len(c.Readable) != 2 {
		t.Fatalf("Pop = %v, %v, %d slices", ok, err, len(c.Readable))
	}
	if got := bytes.Join(c.Readable, nil); string(got) != "headtail" {
		t.Fatalf("buffer across regions reads %q", got)
	}
}

func TestNewQueueHostMisaligned(t *testing.T) {
	raw := make([]byte, 0x4001)
	gm, err := NewGuestMemory([]Region{{GuestAddr: 0, Size: 0x4000, Data: raw[1:]}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewQueue(gm, QueueConfig{Size: 8, DescTable: 0, AvailRing: 0x1000, UsedRing: 0x2000}, 0)
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("NewQueue over a mapping at an odd host address = %v, want ErrInvalidConfig", err)
	}
}

// TestNeedNotifyAfterManyPushes: once 2^16 or more buffers were used since
// the last check, vring_need_event's 16-bit window cannot answer, so the
// device notifies.
func TestNeedNotifyAfterManyPushes(t *testing.T) {
	g := newGuest(t, 1, 0, func(c *QueueConfig) { c.EventIdx = true })
	g.desc(0, buf(0), 8, 0, 0)
	var c Chain
	for range 1 << 16 {
		g.offer(0)
		if ok, err := g.q.Pop(&c); !ok || err != nil {
			t.Fatal(ok, err)
		}
		g.q.Push(0, 0)
	}
	g.setUsedEvent(g.q.UsedIdx() + 100) // formula alone says no
	if !g.q.NeedNotify() {
		t.Fatal("no notification after 65536 completions")
	}
	if g.q.Size() != 1 {
		t.Fatal("Size")
	}
}

// TestPushAll: several chains are published by one store of used->idx,
// in the order given; a batch larger than what is in flight, or with a
// head beyond the queue, is refused without writing anything.
func TestPushAll(t *testing.T) {
	g := newGuest(t, 8, 0, nil)
	for i := uint16(0); i < 3; i++ {
		g.desc(int(i), buf(int(i)), 64, descFWrite, 0)
		g.offer(i)
	}
	var c Chain
	for i := 0; i < 3; i++ {
		if ok, err := g.q.Pop(&c); !ok || err != nil {
			t.Fatalf("Pop %d = %v, %v", i, ok, err)
		}
	}
	if err := g.q.PushAll([]Used{{0, 1}, {1, 2}, {2, 3}, {0, 4}}); err == nil {
		t.Fatal("PushAll of four chains with three in flight succeeded")
	}
	if err := g.q.PushAll([]Used{{1, 1}, {9, 2}}); err == nil {
		t.Fatal("PushAll with a head beyond the queue succeeded")
	}
	if g.usedIdx() != 0 {
		t.Fatalf("refused batches moved used->idx to %d", g.usedIdx())
	}
	if err := g.q.PushAll([]Used{{2, 10}, {0, 20}}); err != nil {
		t.Fatal(err)
	}
	if g.usedIdx() != 2 {
		t.Fatalf("used idx %d, want 2", g.usedIdx())
	}
	for i, want := range []struct{ id, n uint32 }{{2, 10}, {0, 20}} {
		if id, n := g.used(uint16(i)); id != want.id || n != want.n {
			t.Fatalf("used[%d] = (%d, %d), want (%d, %d)", i, id, n, want.id, want.n)
		}
	}
	if !g.q.NeedNotify() {
		t.Fatal("NeedNotify after PushAll = false")
	}
	if err := g.q.Push(1, 5); err != nil || g.usedIdx() != 3 {
		t.Fatalf("Push after PushAll: %v, used idx %d", err, g.usedIdx())
	}
}

// TestUnpop: chains given back are popped again, in the same order; more
// than what is in flight is refused.
func TestUnpop(t *testing.T) {
	g := newGuest(t, 8, 0, nil)
	for i := 0; i < 3; i++ {
		g.desc(i, buf(i), 64, descFWrite, 0)
		g.offer(uint16(i))
	}
	var c Chain
	for i := 0; i < 3; i++ {
		g.q.Pop(&c)
	}
	g.q.Push(0, 0)
	if err := g.q.Unpop(3); err == nil {
		t.Fatal("Unpop of 3 with 2 in flight succeeded")
	}
	if err := g.q.Unpop(2); err != nil {
		t.Fatal(err)
	}
	for _, want := range []uint16{1, 2} {
		if ok, err := g.q.Pop(&c); !ok || err != nil || c.Head != want {
			t.Fatalf("Pop after Unpop = %v, %v, head %d; want head %d", ok, err, c.Head, want)
		}
	}
	if ok, _ := g.q.Pop(&c); ok {
		t.Fatal("Pop found a fourth chain")
	}
}
