package seccomp

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// install passes the filter to seccomp(2) with TSYNC, so the Go runtime's
// threads that already exist are confined too.
func install(p []unix.SockFilter) error {
	prog := unix.SockFprog{Len: uint16(len(p)), Filter: &p[0]}
	const seccompSetModeFilter, filterFlagTSYNC = 1, 1
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, seccompSetModeFilter, filterFlagTSYNC, uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return fmt.Errorf("seccomp: install: %w", errno)
	}
	return nil
}
