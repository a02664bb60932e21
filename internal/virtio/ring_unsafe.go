//go:build 386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm

// The build constraint lists the little-endian ports: ring fields are
// little-endian and this file reads them in native order.

package virtio

import (
	"sync/atomic"
	"unsafe"
)

// Why unsafe: the driver reads and writes the ring indices from another
// CPU while the device does, so they need atomic access with the Go memory
// model's ordering (the avail idx load must happen before the ring entries
// and descriptors it publishes are read; the used elements must be written
// before the used idx store publishes them; the notification fields need a
// full barrier between the device's store and its next load). sync/atomic
// only works on typed pointers, and has no 16-bit operations, so each
// 16-bit field is accessed through the naturally aligned 32-bit word that
// holds it, made from the address of the guest memory slice.
//
// Every pointer made here points into a slice that NewQueue obtained from
// GuestMemory and checked for length and host alignment, so no access here
// can fall outside guest memory.

// hostAddr is the host virtual address of b's first byte; NewQueue uses it
// to check host alignment, which the atomics below depend on.
func hostAddr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// word32 is a 4-byte-aligned 32-bit word in guest memory.
type word32 struct{ p *uint32 }

// newWord32 makes a word32 of b[0:4]; b's host address must be 4-aligned.
func newWord32(b []byte) word32 {
	_ = b[3]
	return word32{(*uint32)(unsafe.Pointer(&b[0]))}
}

func (w word32) load() uint32   { return atomic.LoadUint32(w.p) }
func (w word32) store(v uint32) { atomic.StoreUint32(w.p, v) }

// field16 is a 2-aligned 16-bit ring field in guest memory that the driver
// may access concurrently.
type field16 struct {
	// word is the aligned 32-bit word holding the field, when that whole
	// word lies in the same guest memory region; shift is the field's bit
	// position in it (little-endian: the low address is the low half).
	word  *uint32
	shift uint32
	// half is the field itself. It is used only when the containing word
	// would reach past the end (or start) of the region, which happens
	// only for a ring that ends exactly at a region boundary.
	half *uint16
	// fence is a private word for a full barrier after a plain store.
	fence uint32
}

// casTries bounds the compare-and-swap loop in store: a driver that keeps
// rewriting the other half of the word cannot keep the device spinning.
const casTries = 64

// newField16 makes the field at b[off:off+2], where b is a whole region's
// Data and its host address plus off is 2-aligned.
func newField16(region []byte, off uint64) field16 {
	f := field16{half: (*uint16)(unsafe.Pointer(&region[off : off+2][0]))}
	mis := uint64(uintptr(unsafe.Pointer(f.half)) & 3) // 0 or 2
	if off >= mis && off-mis+4 <= uint64(len(region)) {
		f.word = (*uint32)(unsafe.Pointer(&region[off-mis]))
		f.shift = uint32(mis) * 8
	}
	return f
}

// load reads the field. Through the word it is a sequentially consistent
// atomic load. The fallback is a plain aligned 16-bit load, which is
// single-copy atomic on every supported CPU; it is only used for fields
// whose ordering comes from the atomics around them (flags and event
// indices, never avail idx, whose word always lies inside the ring).
func (f *field16) load() uint16 {
	if f.word != nil {
		return uint16(atomic.LoadUint32(f.word) >> f.shift)
	}
	return *(*uint16)(unsafe.Pointer(f.half))
}

// store writes the field without disturbing the other half of the word,
// which may belong to the driver, and is a full barrier: a later load (the
// avail idx re-check after enabling notifications) cannot pass it.
func (f *field16) store(v uint16) {
	if f.word != nil {
		mask := uint32(0xffff) << f.shift
		for range casTries {
			old := atomic.LoadUint32(f.word)
			nw := old&^mask | uint32(v)<<f.shift
			// A successful CAS is itself a full barrier; when the field
			// already holds v there is no store to order.
			if old == nw || atomic.CompareAndSwapUint32(f.word, old, nw) {
				return
			}
		}
	}
	*f.half = v
	atomic.AddUint32(&f.fence, 0)
}
