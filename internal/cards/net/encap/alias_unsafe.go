package encap

import "unsafe"

// Why unsafe: AES-GCM may seal or open in place only when its input and
// output start at the same address, and not at all when they overlap
// otherwise; whether two slices share memory can only be told from their
// addresses. Nothing here dereferences a pointer.

// anyOverlap reports whether x and y share memory.
func anyOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 {
		return false
	}
	px := uintptr(unsafe.Pointer(unsafe.SliceData(x)))
	py := uintptr(unsafe.Pointer(unsafe.SliceData(y)))
	return px < py+uintptr(len(y)) && py < px+uintptr(len(x))
}

// inexactOverlap reports whether x and y share memory without starting
// at the same address (as crypto/internal/alias.InexactOverlap).
func inexactOverlap(x, y []byte) bool {
	return anyOverlap(x, y) && unsafe.SliceData(x) != unsafe.SliceData(y)
}
