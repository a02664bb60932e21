package blk

import (
	"errors"
	"os"
	"runtime/debug"
	"unsafe"

	"golang.org/x/sys/unix"
)

// errFault is a transfer that touched a page of the mapped file the kernel
// could not provide: the file was shrunk under the card, a block could not
// be allocated for a write (disk full), or the disk failed to read it in.
// pread and pwrite return an error there; on the mapping the access raises
// SIGBUS, which the transfer turns into this error.
var errFault = errors.New("blk: fault on the mapped backing file")

// mapFile maps size bytes of f shared, writable unless the volume is
// read-only. It returns nil when the file cannot be mapped, and the
// device then reads and writes it with system calls.
func mapFile(f *os.File, size int64, writable bool) []byte {
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	if size <= 0 || int64(int(size)) != size {
		return nil
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), prot, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	return b
}

func unmapFile(b []byte) {
	if b != nil {
		unix.Munmap(b)
	}
}

// catchFault ends a stretch of work on the mapping, deferred with the
// goroutine's previous debug.SetPanicOnFault setting: it restores that
// setting and turns a fault at an address inside the mapping into errFault.
// Any other panic goes on.
func (d *Device) catchFault(err *error, old bool) {
	debug.SetPanicOnFault(old)
	r := recover()
	if r == nil {
		return
	}
	if f, ok := r.(interface{ Addr() uintptr }); ok && len(d.mapped) > 0 {
		start := uintptr(unsafe.Pointer(&d.mapped[0]))
		if a := f.Addr(); a >= start && a-start < uintptr(len(d.mapped)) {
			*err = errFault
			return
		}
	}
	panic(r)
}

// resident reports whether every page under the n bytes at off in the
// mapped file is in the page cache (mincore). Writes go through the mapping
// only then: a write fault on a page that is not in memory reads it from
// the disk first (the kernel cannot know the whole page will be
// overwritten), where a pwrite of whole pages does not; and the write
// would wait for that read inside a page fault, where Go cannot stop the
// goroutine (a garbage collection would wait for it, holding up every
// queue). Other writes go through pwrite, which leaves the pages cached
// for the next one. Reads take the fault: it does the read a pread would.
func (d *Device) resident(qs *queueState, off, n uint64) bool {
	if n == 0 {
		return true
	}
	const page = 4096
	start := off &^ (page - 1)
	end := min(off+n, uint64(len(d.mapped)))
	pages := (end - start + page - 1) / page
	if uint64(cap(qs.vec)) < pages {
		qs.vec = make([]byte, pages)
	}
	vec := qs.vec[:pages]
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&d.mapped[start])), uintptr(end-start), uintptr(unsafe.Pointer(&vec[0])))
	if e != 0 {
		return false
	}
	for _, v := range vec {
		if v&1 == 0 {
			return false
		}
	}
	return true
}
