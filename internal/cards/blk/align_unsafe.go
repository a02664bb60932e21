package blk

import "unsafe"

// bufferAlign is the alignment of bounce buffers: a page, which satisfies
// O_DIRECT on every block device.
const bufferAlign = 4096

// alignedBuffer returns n bytes starting at a bufferAlign boundary (Go
// never moves heap memory, so the alignment holds for its lifetime).
func alignedBuffer(n int) []byte {
	b := make([]byte, n+bufferAlign)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (bufferAlign - 1))
	if off != 0 {
		off = bufferAlign - off
	}
	return b[off : off+n : off+n]
}

// memAligned tells whether every segment starts and ends on a sector
// boundary in memory, as O_DIRECT requires.
func memAligned(iov [][]byte) bool {
	for _, seg := range iov {
		if len(seg)%SectorSize != 0 || (len(seg) > 0 && uintptr(unsafe.Pointer(&seg[0]))%SectorSize != 0) {
			return false
		}
	}
	return true
}
