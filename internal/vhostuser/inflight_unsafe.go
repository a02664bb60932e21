package vhostuser

import (
	"sync/atomic"
	"unsafe"
)

// Why unsafe: an inflight region is shared memory that must stay
// consistent at every instant, because the backend may be killed between
// any two stores. Each field is therefore written with one atomic store
// of the aligned 32- or 64-bit word that holds it (Go has no 8- or 16-bit
// atomics), which also keeps the compiler and the CPU from reordering the
// stores. The region slice is checked for length and 8-byte host
// alignment once, in newInflightRegion; every pointer below is inside it.

// inflightRegion is one queue's region of an inflight area.
type inflightRegion struct {
	b        []byte
	capacity uint16 // entries in desc[]
}

func newInflightRegion(b []byte, capacity uint16) inflightRegion {
	_ = b[inflightHeader+inflightDesc*int(capacity)-1]
	if uintptr(unsafe.Pointer(&b[0]))%8 != 0 {
		panic("vhostuser: inflight region not 8-byte aligned")
	}
	return inflightRegion{b: b, capacity: capacity}
}

func (r *inflightRegion) word32(off int) *uint32 { return (*uint32)(unsafe.Pointer(&r.b[off])) }
func (r *inflightRegion) word64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&r.b[off])) }

// Header words: features at 0; version and desc_num at 8;
// last_batch_head and used_idx at 12.
func (r *inflightRegion) version() uint16 { return uint16(atomic.LoadUint32(r.word32(8))) }
func (r *inflightRegion) descNum() uint16 { return uint16(atomic.LoadUint32(r.word32(8)) >> 16) }

func (r *inflightRegion) batch() (lastBatchHead, usedIdx uint16) {
	w := atomic.LoadUint32(r.word32(12))
	return uint16(w), uint16(w >> 16)
}

func (r *inflightRegion) setBatch(lastBatchHead, usedIdx uint16) {
	atomic.StoreUint32(r.word32(12), uint32(lastBatchHead)|uint32(usedIdx)<<16)
}

// init makes a new region: every entry idle, used_idx at usedIdx. The
// version is written last, so a region is never valid half-made.
func (r *inflightRegion) init(usedIdx uint16) {
	atomic.StoreUint32(r.word32(8), 0)
	for h := range r.capacity {
		e := inflightHeader + inflightDesc*int(h)
		atomic.StoreUint64(r.word64(e), 0)
		atomic.StoreUint64(r.word64(e+8), 0)
	}
	atomic.StoreUint64(r.word64(0), 0)
	r.setBatch(0, usedIdx)
	atomic.StoreUint32(r.word32(8), inflightV1|uint32(r.capacity)<<16)
}

// Entry word 0 holds inflight (byte 0) and next (bytes 6-7); word 1 is
// the counter.
func (r *inflightRegion) entry(h uint16) int { return inflightHeader + inflightDesc*int(h) }

func (r *inflightRegion) inflight(h uint16) bool {
	return atomic.LoadUint64(r.word64(r.entry(h)))&0xff != 0
}

func (r *inflightRegion) next(h uint16) uint16 {
	return uint16(atomic.LoadUint64(r.word64(r.entry(h))) >> 48)
}

func (r *inflightRegion) counter(h uint16) uint64 { return atomic.LoadUint64(r.word64(r.entry(h) + 8)) }

// take marks h in flight, its counter written first.
func (r *inflightRegion) take(h uint16, counter uint64) {
	e := r.entry(h)
	atomic.StoreUint64(r.word64(e+8), counter)
	atomic.StoreUint64(r.word64(e), 1)
}

// link sets h's next, h still in flight.
func (r *inflightRegion) link(h, next uint16) {
	atomic.StoreUint64(r.word64(r.entry(h)), 1|uint64(next)<<48)
}

// retire marks h no longer in flight, keeping its next.
func (r *inflightRegion) retire(h, next uint16) {
	atomic.StoreUint64(r.word64(r.entry(h)), uint64(next)<<48)
}
