package virtio

import (
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzQueue lets the fuzzer write the descriptor table, the avail ring
// (flags, idx, entries, used_event), the indirect tables and the starting
// indices of a small guest memory, then drives the queue like a card does:
// Pop, write into the writable buffers, Push, notify, toggle notifications,
// and move avail idx as ops says. It checks that nothing panics, that every
// slice Pop returns lies inside one region, that a broken queue stays
// broken, and (by being a bounded loop) that it terminates.
//
// Guest memory is two regions adjacent in guest physical space but apart
// in the host, so a buffer may span both, plus a third beyond a hole.
func FuzzQueue(f *testing.F) {
	le := binary.LittleEndian
	desc := func(ds ...[4]uint64) []byte {
		b := make([]byte, 16*len(ds))
		for i, d := range ds {
			le.PutUint64(b[16*i:], d[0])
			le.PutUint32(b[16*i+8:], uint32(d[1]))
			le.PutUint16(b[16*i+12:], uint16(d[2]))
			le.PutUint16(b[16*i+14:], uint16(d[3]))
		}
		return b
	}
	avail := func(idx uint16, heads ...uint16) []byte {
		b := make([]byte, 4+2*len(heads))
		le.PutUint16(b[2:], idx)
		for i, h := range heads {
			le.PutUint16(b[4+2*i:], h)
		}
		return b
	}
	// cfg: bits 0-2 log2(size), 3 EVENT_IDX, 4 INDIRECT, 5 avail ring
	// 2 mod 4; byte 1 MaxChainLen; bytes 2-3 last_avail; byte 4 how far
	// used idx lags behind.
	cfg := func(logSize int, eventIdx, indirect bool, maxChain int) uint64 {
		v := uint64(logSize)
		if eventIdx {
			v |= 1 << 3
		}
		if indirect {
			v |= 1 << 4
		}
		return v | uint64(maxChain)<<8
	}
	// A direct chain R -> R -> W, offered once.
	f.Add(cfg(3, false, false, 0),
		desc([4]uint64{fzBuf, 16, descFNext, 1}, [4]uint64{fzBuf + 0x100, 0x200, descFNext, 2}, [4]uint64{fzBuf + 0x400, 1, descFWrite, 0}),
		avail(1, 0), []byte(nil), []byte{0, 1, 2})
	// An indirect chain, with event idx, and a buffer across the regions.
	f.Add(cfg(2, true, true, 8),
		desc([4]uint64{fzTables, 48, descFIndirect, 0}),
		avail(2, 0, 0),
		desc([4]uint64{fzBuf, 16, descFNext, 1}, [4]uint64{fzMid - 8, 16, descFNext, 2}, [4]uint64{fzFar, 1, descFWrite, 0}),
		[]byte{3, 0x81, 5})
	// A loop, and a head beyond the table.
	f.Add(cfg(1, false, true, 0),
		desc([4]uint64{fzBuf, 16, descFNext, 1}, [4]uint64{fzBuf, 16, descFNext, 0}),
		avail(2, 0, 7), []byte(nil), []byte{0xff})

	f.Fuzz(func(t *testing.T, cfgBits uint64, descs, availRing, tables, ops []byte) {
		size := uint16(1) << (cfgBits & 7) // 1..128
		mem0 := make([]byte, fzMid-fzBase)
		mem1 := make([]byte, 0x2000)
		mem2 := make([]byte, 0x1000)
		gm, err := NewGuestMemory([]Region{
			{GuestAddr: fzBase, Size: uint64(len(mem0)), UserAddr: 0x1000000, Data: mem0},
			{GuestAddr: fzMid, Size: uint64(len(mem1)), UserAddr: 0x2000000, Data: mem1},
			{GuestAddr: fzFar, Size: uint64(len(mem2)), UserAddr: 0x3000000, Data: mem2},
		})
		if err != nil {
			t.Fatal(err)
		}
		availGPA := uint64(fzAvail)
		if cfgBits&(1<<5) != 0 {
			availGPA += 2
		}
		at := func(gpa uint64) []byte { return mem0[gpa-fzBase:] }
		copy(at(fzDesc)[:16*int(size)], descs)
		copy(at(availGPA)[:6+2*int(size)], availRing)
		copy(at(fzTables)[:0x1000], tables)
		lastAvail := uint16(cfgBits >> 16)
		lag := uint16(cfgBits>>32) % (size + 2) // sometimes more than size: broken from the start
		store16(mem0, fzUsed-fzBase+2, lastAvail-lag)
		q, err := NewQueue(gm, QueueConfig{
			Size: size, DescTable: fzDesc, AvailRing: availGPA, UsedRing: fzUsed,
			EventIdx: cfgBits&(1<<3) != 0, Indirect: cfgBits&(1<<4) != 0,
			MaxChainLen: int(cfgBits>>8) & 0xff,
		}, lastAvail)
		if err != nil {
			t.Fatal(err)
		}

		inside := func(b []byte) bool { return within(mem0, b) || within(mem1, b) || within(mem2, b) }
		var c Chain
		broken := false
		for i := range 4 * 128 {
			var op byte
			if i < len(ops) {
				op = ops[i]
			} else if i > len(ops)+int(size) {
				break
			}
			ok, err := q.Pop(&c)
			if broken && !errors.Is(err, ErrBroken) {
				t.Fatalf("a broken queue returned %v, %v", ok, err)
			}
			if errors.Is(err, ErrBroken) {
				if ok {
					t.Fatal("ok with ErrBroken")
				}
				broken = true
			}
			if err != nil && !broken && !ok {
				t.Fatalf("error %v without a consumed chain", err)
			}
			var written uint32
			for _, b := range c.Readable {
				if !inside(b) {
					t.Fatalf("readable slice of %d bytes outside guest memory", len(b))
				}
			}
			for _, b := range c.Writable {
				if !inside(b) {
					t.Fatalf("writable slice of %d bytes outside guest memory", len(b))
				}
				if ok && op&0x40 != 0 {
					// Devices write into guest buffers, which may be
					// the rings themselves.
					for j := range b {
						b[j] = op
					}
					written += uint32(len(b))
				}
			}
			if ok {
				if err := q.Push(c.Head, written); err != nil {
					t.Fatalf("Push of a popped head: %v", err)
				}
			}
			if op&1 != 0 {
				q.NeedNotify()
			}
			switch op >> 1 & 3 {
			case 1:
				q.EnableNotifications()
			case 2:
				q.DisableNotifications()
			}
			if !ok && err == nil {
				if i >= len(ops) {
					break
				}
				// Nothing available: the driver moves avail idx.
				idx := load16(mem0, availGPA-fzBase+2)
				store16(mem0, availGPA-fzBase+2, idx+uint16(op>>3&0x7)-1)
			}
		}
	})
}

// FuzzQueue's guest physical layout.
const (
	fzBase   = 0x10000
	fzDesc   = fzBase          // up to 128 descriptors
	fzAvail  = fzBase + 0x800  // avail ring, 4- or 2-aligned
	fzUsed   = fzBase + 0xa00  // used ring
	fzTables = fzBase + 0x1000 // indirect tables
	fzBuf    = fzBase + 0x2000 // buffers
	fzMid    = fzBase + 0x3000 // start of the second region
	fzFar    = 0x40000         // third region, after a hole
)
