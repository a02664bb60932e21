package keymem

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// vmFlags returns the VmFlags of the mapping of /proc/self/smaps that
// holds addr.
func vmFlags(t *testing.T, addr uintptr) []string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 {
			in = addr >= lo && addr < hi
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			return strings.Fields(strings.TrimPrefix(line, "VmFlags:"))
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return nil
}

func has(flags []string, f string) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

// TestLockedNotDumpable: a key buffer's mapping is locked ("lo") and left
// out of core dumps ("dd"), and Free wipes and unmaps it.
func TestLockedNotDumpable(t *testing.T) {
	b, err := New(64)
	if err != nil {
		t.Fatal(err)
	}
	key := b.Bytes()
	if len(key) != 64 {
		t.Fatalf("len %d", len(key))
	}
	for i := range key {
		key[i] = byte(i + 1)
	}
	addr := uintptr(unsafe.Pointer(&key[0]))
	flags := vmFlags(t, addr)
	if !has(flags, "lo") || !has(flags, "dd") {
		t.Fatalf("key mapping VmFlags %v, want lo (locked) and dd (no dump)", flags)
	}
	c, err := Copy(key[:32])
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Bytes(); len(got) != 32 || got[31] != 32 {
		t.Fatalf("Copy: %v", got)
	}
	if f := vmFlags(t, uintptr(unsafe.Pointer(&c.Bytes()[0]))); !has(f, "lo") || !has(f, "dd") {
		t.Fatalf("copied key mapping VmFlags %v", f)
	}
	c.Free()
	b.Free()
	b.Free()
	if b.Bytes() != nil {
		t.Fatal("Bytes after Free")
	}
	// The pages are gone: mincore on them fails with ENOMEM.
	vec := make([]byte, 1)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, addr&^uintptr(os.Getpagesize()-1), 1, uintptr(unsafe.Pointer(&vec[0]))); e != unix.ENOMEM {
		t.Fatalf("mincore after Free: %v, want ENOMEM (unmapped)", e)
	}
}

func TestPlace(t *testing.T) {
	type schedule struct{ rk [60]uint32 }
	b, err := New(SizeOf[schedule]())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free()
	s, err := Place[schedule](b)
	if err != nil {
		t.Fatal(err)
	}
	s.rk[59] = 7
	if b.Bytes()[59*4] != 7 {
		t.Fatal("the struct does not live in the buffer")
	}
	small, _ := New(8)
	defer small.Free()
	if _, err := Place[schedule](small); err == nil {
		t.Fatal("Place into a buffer too small succeeded")
	}
}

// TestNoDumps runs in a child, since it cannot be undone.
func TestNoDumps(t *testing.T) {
	if os.Getenv("AZOTE_KEYMEM_CHILD") == "1" {
		if err := NoDumps(); err != nil {
			t.Fatal(err)
		}
		if d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); err != nil || d != 0 {
			t.Fatalf("PR_GET_DUMPABLE = %d, %v after NoDumps", d, err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestNoDumps$")
	cmd.Env = append(os.Environ(), "AZOTE_KEYMEM_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
