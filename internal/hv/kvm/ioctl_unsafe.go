//go:build linux && amd64

package kvm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Why unsafe: KVM's ioctls take the address of a kernel-layout struct in
// this process (kvm_regs, kvm_sregs, kvm_userspace_memory_region, ...),
// and KVM_SET_USER_MEMORY_REGION takes the address of the memory that
// backs guest RAM. Go gives the address of a value only as an
// unsafe.Pointer. Nothing else in the package needs unsafe: kvm_run is
// shared memory read and written through a []byte with encoding/binary.
//
// ioctlPtr converts the pointer to a uintptr in the argument list of
// unix.Syscall itself, the one form in which the compiler keeps the value
// alive and in place for the duration of the call (unsafe.Pointer rule
// 4). Every T passed is one of the mirrored structs of abi_amd64.go, whose
// size the request number encodes and abi_unsafe_test.go checks, so the
// kernel reads and writes only within the value. hostAddr takes the
// address of a mapping the caller keeps for the life of the VM (see
// VM.SetUserMemoryRegion); the address outlives no Go value the garbage
// collector could free, because the memory is not from the Go heap.

// ioctlPtr issues an ioctl whose argument is a pointer to *arg and
// returns the ioctl's non-negative result.
func ioctlPtr[T any](fd int, req uintptr, arg *T) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(arg)))
	if errno != 0 {
		return int(r), errno
	}
	return int(r), nil
}

// hostAddr is the address of b's first byte in this process.
func hostAddr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }
