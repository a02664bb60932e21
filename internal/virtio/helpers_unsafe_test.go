package virtio

import (
	"sync/atomic"
	"unsafe"
)

// The test driver shares ring memory with the device under the race
// detector, so it accesses the 16-bit ring fields the way the device does:
// atomically, through the aligned 32-bit word that holds them.

func wordAt(b []byte, off uint64) (*uint32, uint32) {
	p := uintptr(unsafe.Pointer(&b[off]))
	mis := uint64(p & 3)
	return (*uint32)(unsafe.Pointer(&b[off-mis : off-mis+4][0])), uint32(mis) * 8
}

func load16(b []byte, off uint64) uint16 {
	w, shift := wordAt(b, off)
	return uint16(atomic.LoadUint32(w) >> shift)
}

func store16(b []byte, off uint64, v uint16) {
	w, shift := wordAt(b, off)
	for {
		old := atomic.LoadUint32(w)
		if atomic.CompareAndSwapUint32(w, old, old&^(0xffff<<shift)|uint32(v)<<shift) {
			return
		}
	}
}

// within reports whether s lies entirely inside mem.
func within(mem, s []byte) bool {
	if len(s) == 0 {
		return true
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	return p >= lo && p-lo <= uintptr(len(mem)) && uintptr(len(s)) <= uintptr(len(mem))-(p-lo)
}

// offsetIn is s's offset in mem; s must be within mem.
func offsetIn(mem, s []byte) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(s))) - uintptr(unsafe.Pointer(unsafe.SliceData(mem))))
}
