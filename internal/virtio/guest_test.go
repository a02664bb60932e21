package virtio

import (
	"encoding/binary"
	"testing"
)

// guest is a test guest: one region of guest memory holding a split ring
// and buffers, and the driver half of the protocol, written from the spec
// rather than from the device code.
type guest struct {
	t    testing.TB
	mem  []byte
	gm   *GuestMemory
	cfg  QueueConfig
	q    *Queue
	next uint16 // driver's avail idx
}

// Offsets in the test memory, which starts at guest physical gBase.
const (
	gBase   = 0x100000
	gDesc   = 0x0000 // up to 256 descriptors
	gAvail  = 0x1000
	gUsed   = 0x2000
	gTables = 0x4000 // indirect tables
	gBufs   = 0x8000 // buffers, 0x100 bytes each
	gMem    = 0x10000
)

// newGuest builds a guest with a ring of size entries. mod adjusts the
// queue configuration; start is the avail and used index the driver
// resumes at.
func newGuest(t testing.TB, size uint16, start uint16, mod func(*QueueConfig)) *guest {
	t.Helper()
	g := &guest{t: t, mem: make([]byte, gMem), next: start}
	var err error
	g.gm, err = NewGuestMemory([]Region{{GuestAddr: gBase, Size: gMem, UserAddr: 0x7f0000000000, Data: g.mem}})
	if err != nil {
		t.Fatal(err)
	}
	g.cfg = QueueConfig{Size: size, DescTable: gBase + gDesc, AvailRing: gBase + gAvail, UsedRing: gBase + gUsed, MaxChainLen: 64}
	if mod != nil {
		mod(&g.cfg)
	}
	store16(g.mem, g.cfg.AvailRing-gBase+2, start)
	store16(g.mem, g.cfg.UsedRing-gBase+2, start)
	g.q, err = NewQueue(g.gm, g.cfg, start)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *guest) off(gpa uint64) uint64 { return gpa - gBase }

// buf is the guest physical address of test buffer i.
func buf(i int) uint64 { return gBase + gBufs + 0x100*uint64(i) }

// table is the guest physical address of indirect table i.
func table(i int) uint64 { return gBase + gTables + 0x400*uint64(i) }

// descIn writes descriptor i of the table at gpa.
func (g *guest) descIn(tbl uint64, i int, addr uint64, length uint32, flags, next uint16) {
	d := g.mem[g.off(tbl)+16*uint64(i):]
	binary.LittleEndian.PutUint64(d[0:], addr)
	binary.LittleEndian.PutUint32(d[8:], length)
	binary.LittleEndian.PutUint16(d[12:], flags)
	binary.LittleEndian.PutUint16(d[14:], next)
}

func (g *guest) desc(i int, addr uint64, length uint32, flags, next uint16) {
	g.descIn(g.cfg.DescTable, i, addr, length, flags, next)
}

// offer makes the chain at head available and publishes the new avail idx.
func (g *guest) offer(head uint16) {
	a := g.off(g.cfg.AvailRing)
	binary.LittleEndian.PutUint16(g.mem[a+4+2*uint64(g.next%g.cfg.Size):], head)
	g.next++
	store16(g.mem, a+2, g.next)
}

func (g *guest) setAvailIdx(v uint16) { store16(g.mem, g.off(g.cfg.AvailRing)+2, v) }

func (g *guest) setAvailFlags(v uint16) { store16(g.mem, g.off(g.cfg.AvailRing), v) }

func (g *guest) setUsedEvent(v uint16) {
	store16(g.mem, g.off(g.cfg.AvailRing)+4+2*uint64(g.cfg.Size), v)
}

func (g *guest) usedFlags() uint16 { return load16(g.mem, g.off(g.cfg.UsedRing)) }
func (g *guest) usedIdx() uint16   { return load16(g.mem, g.off(g.cfg.UsedRing)+2) }
func (g *guest) availEvent() uint16 {
	return load16(g.mem, g.off(g.cfg.UsedRing)+4+8*uint64(g.cfg.Size))
}

// used returns the used element at ring position i (mod size).
func (g *guest) used(i uint16) (id, length uint32) {
	e := g.mem[g.off(g.cfg.UsedRing)+4+8*uint64(i%g.cfg.Size):]
	return binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[4:])
}

// hostOff is the offset in guest memory of a slice Pop returned.
func (g *guest) hostOff(b []byte) uint64 {
	g.t.Helper()
	if !within(g.mem, b) {
		g.t.Fatalf("slice of %d bytes outside guest memory", len(b))
	}
	return offsetIn(g.mem, b)
}

// vringNeedEvent is the spec's formula (section 2.7.10), kept apart from
// the device's copy on purpose:
//
//	(u16)(new_idx - event_idx - 1) < (u16)(new_idx - old_idx)
func vringNeedEvent(eventIdx, newIdx, oldIdx uint16) bool {
	return uint16(newIdx-eventIdx-1) < uint16(newIdx-oldIdx)
}
