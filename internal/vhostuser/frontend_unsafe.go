package vhostuser

import (
	"sync/atomic"
	"unsafe"
)

// The driver side shares ring memory with another process, so the ring
// indices are read and written atomically. Go has no 16-bit atomics: the
// idx field (bytes 2-3 of a ring header whose start is 4-byte aligned) is
// accessed through the aligned 32-bit word that holds it.

// addrOf is the frontend virtual address of a mapping, which is what
// vhost-user ring addresses are expressed in.
func addrOf(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }

// loadIdx reads the idx field of the ring header at hdr.
func loadIdx(hdr []byte) uint16 {
	_ = hdr[3]
	return uint16(atomic.LoadUint32((*uint32)(unsafe.Pointer(&hdr[0]))) >> 16)
}

// storeIdx publishes a new idx, after every ring entry written before it.
func storeIdx(hdr []byte, idx uint16) {
	_ = hdr[3]
	p := (*uint32)(unsafe.Pointer(&hdr[0]))
	for {
		old := atomic.LoadUint32(p)
		if atomic.CompareAndSwapUint32(p, old, old&0xffff|uint32(idx)<<16) {
			return
		}
	}
}

// storeEvent writes used_event, the low half of a 4-byte-aligned word
// whose other half is padding this frontend owns. The compare-and-swap is
// also the full barrier that must separate this store from the next load
// of used->idx, or a completion that lands in between would never be
// signalled.
func storeEvent(b []byte, v uint16) {
	_ = b[3]
	p := (*uint32)(unsafe.Pointer(&b[0]))
	for {
		old := atomic.LoadUint32(p)
		if atomic.CompareAndSwapUint32(p, old, old&^0xffff|uint32(v)) {
			return
		}
	}
}
