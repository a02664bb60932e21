package keymem

import (
	"fmt"
	"unsafe"
)

// Place returns a *T that lives in b, for a key schedule kept in a struct
// (xts.Cipher).
//
// Why unsafe: the Go heap cannot be locked or left out of dumps, so the
// struct is put in b's pages. T must hold no Go pointers (the garbage
// collector does not scan b) and b must outlive every use of the *T; the
// pages are page-aligned, which satisfies any alignment T needs.
func Place[T any](b *Buf) (*T, error) {
	var zero T
	mem := b.Bytes()
	if uintptr(len(mem)) < unsafe.Sizeof(zero) {
		return nil, fmt.Errorf("keymem: %d bytes hold no %T (%d bytes)", len(mem), zero, unsafe.Sizeof(zero))
	}
	return (*T)(unsafe.Pointer(&mem[0])), nil
}

// SizeOf is the size of a T, for New before Place.
func SizeOf[T any]() int {
	var zero T
	return int(unsafe.Sizeof(zero))
}
