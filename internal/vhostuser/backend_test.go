package vhostuser

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSetMemTableChecks: a memory region reaching past the end of its
// file (where the first access would raise SIGBUS in the card) is refused
// as malformed before anything is mapped; one that fits is taken.
func TestSetMemTableChecks(t *testing.T) {
	b := NewBackend(&gateDevice{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer b.Close()
	memfd := func(size int64) int {
		fd, err := unix.MemfdCreate("guest", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Ftruncate(fd, size); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	for name, c := range map[string]struct {
		r    MemRegion
		size int64
	}{
		"region past the end": {MemRegion{Size: 2 << 20}, 1 << 20},
		"offset past the end": {MemRegion{Size: 1 << 20, MmapOffset: 4096}, 1 << 20},
		"empty file":          {MemRegion{Size: 4096}, 0},
	} {
		err := b.setMemTable(&Message{Request: SetMemTable, Payload: memTableBytes([]MemRegion{c.r}), FDs: []int{memfd(c.size)}})
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	ok := MemRegion{Size: 1 << 20, MmapOffset: 4096}
	if err := b.setMemTable(&Message{Request: SetMemTable, Payload: memTableBytes([]MemRegion{ok}), FDs: []int{memfd(1<<20 + 4096)}}); err != nil {
		t.Fatalf("a region that fits its file: %v", err)
	}
	if b.mem == nil {
		t.Fatal("the accepted table is not mapped")
	}
	// A bad table after a good one is refused before the good one is
	// touched: the backend still has the memory it had.
	mem := b.mem
	bad := MemRegion{Size: 2 << 20}
	if err := b.setMemTable(&Message{Request: SetMemTable, Payload: memTableBytes([]MemRegion{bad}), FDs: []int{memfd(1 << 20)}}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a region past the end after a good table: %v", err)
	}
	if b.mem != mem {
		t.Fatal("a refused table replaced the mapped memory")
	}
}
