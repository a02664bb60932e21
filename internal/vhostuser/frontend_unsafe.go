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

// storeU16 writes an event index field (used_event, avail_event); a
// 2-aligned 16-bit store is single-copy atomic on the platforms Go's
// amd64 and arm64 ports run on.
func storeU16(b []byte, v uint16) {
	_ = b[1]
	*(*uint16)(unsafe.Pointer(&b[0])) = v
}
