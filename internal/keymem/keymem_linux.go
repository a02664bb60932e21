// Package keymem keeps key material in memory of its own: pages that are
// locked (mlock: never written to swap), left out of core dumps
// (MADV_DONTDUMP), not inherited by a child (MADV_WIPEONFORK), and wiped
// when freed. A key that lives in a Buf is never copied to the Go heap by
// this package; callers read and write keys straight into Bytes.
//
// What it cannot cover: key schedules that the standard library keeps in
// the Go heap (crypto/aes inside keywrap's AES-GCM). A process that holds
// keys also makes itself non-dumpable (NoDumps), which keeps those out of
// core files and out of reach of ptrace and /proc/PID/mem for any caller
// without CAP_SYS_PTRACE.
package keymem

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Buf is n bytes of locked, non-dumpable memory.
type Buf struct {
	mu  sync.Mutex
	mem []byte // whole pages, nil once freed
	n   int
}

// New maps n bytes (rounded up to pages) and locks them. It fails when
// the memory cannot be locked (RLIMIT_MEMLOCK for a process without
// CAP_IPC_LOCK): a key is never kept where it could be swapped.
func New(n int) (*Buf, error) {
	if n <= 0 {
		return nil, fmt.Errorf("keymem: %d bytes", n)
	}
	page := os.Getpagesize()
	size := (n + page - 1) &^ (page - 1)
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("keymem: mmap: %w", err)
	}
	if err := unix.Madvise(mem, unix.MADV_DONTDUMP); err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("keymem: MADV_DONTDUMP: %w", err)
	}
	// Older kernels lack WIPEONFORK; the pages are still locked and out of
	// dumps, and no key holder forks after it holds keys.
	unix.Madvise(mem, unix.MADV_WIPEONFORK)
	if err := unix.Mlock(mem); err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("keymem: mlock: %w", err)
	}
	return &Buf{mem: mem, n: n}, nil
}

// Copy returns a new Buf holding a copy of key.
func Copy(key []byte) (*Buf, error) {
	b, err := New(max(len(key), 1))
	if err != nil {
		return nil, err
	}
	b.n = len(key)
	copy(b.mem, key)
	return b, nil
}

// Bytes is the buffer; nil after Free. Callers must not keep it past Free.
func (b *Buf) Bytes() []byte {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mem == nil {
		return nil
	}
	return b.mem[:b.n:b.n]
}

// Len is the number of bytes the buffer holds.
func (b *Buf) Len() int {
	if b == nil {
		return 0
	}
	return b.n
}

// Free wipes and unmaps the buffer. It may be called more than once, and
// on a nil Buf.
func (b *Buf) Free() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mem == nil {
		return
	}
	clear(b.mem)
	unix.Munlock(b.mem)
	unix.Munmap(b.mem)
	b.mem = nil
}

// NoDumps makes the calling process non-dumpable: no core file, and no
// ptrace attach or /proc/PID/mem, environ, maps by anyone lacking
// CAP_SYS_PTRACE, even under the same uid. A program it executes starts
// dumpable again (execve resets the flag), so children are unaffected.
func NoDumps() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("keymem: PR_SET_DUMPABLE: %w", err)
	}
	return nil
}
