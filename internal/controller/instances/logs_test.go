package instances

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/engine"
)

// fillLog appends n bytes of numbered lines through f, as a child holding
// the log's fd would, and returns the last line.
func fillLog(t *testing.T, f *os.File, n int) string {
	t.Helper()
	var b bytes.Buffer
	last := ""
	for i := 0; b.Len() < n; i++ {
		last = fmt.Sprintf("line %08d %s", i, strings.Repeat("x", 80))
		b.WriteString(last + "\n")
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	return last
}

// The engine log and the card logs of a supervised instance are cut to
// LogLimit while the engine and cards keep writing through their fds.
func TestSupervisorBoundsEngineAndCardLogs(t *testing.T) {
	fx := newFixture(t)
	inst, err := fx.s.Run(context.Background(), api.RunInstanceRequest{Name: "noisy", Image: "default", VCPUs: 1, MemoryMiB: 64})
	if err != nil {
		t.Fatal(err)
	}
	fx.waitState(inst.ID, api.StateRunning)
	dir := fx.s.instanceDir(inst.ID)
	limit := fx.s.cfg.LogLimit
	var files []*os.File
	for _, name := range []string{engine.LogName, "vol-0123456789abcdef0" + cardLogSuffix} {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
		fillLog(t, f, int(8*limit))
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, f := range files {
		for statBlocks(t, f.Name()).allocated > limit+64<<10 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d bytes allocated, want at most about %d", filepath.Base(f.Name()), statBlocks(t, f.Name()).allocated, limit)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The child writes on; its lines land at the end, whole.
		last := fillLog(t, f, 1000)
		tail := string(logTail(f.Name(), 4096))
		if !strings.HasSuffix(tail, last+"\n") || strings.ContainsRune(tail, 0) {
			t.Fatalf("%s: tail after bounding: %q", filepath.Base(f.Name()), tail[max(0, len(tail)-200):])
		}
	}
}

// collapseAndPunchDirs returns a directory on the file system of the
// test's temporary directories ("default", which can usually collapse a
// range) and, when the test runs as root, one on a tmpfs of size ("tmpfs",
// which can only punch holes).
func collapseAndPunchDirs(t *testing.T, size string) map[string]string {
	dirs := map[string]string{"default": t.TempDir()}
	if os.Geteuid() == 0 {
		tmp := t.TempDir()
		if err := syscall.Mount("tmpfs", tmp, "tmpfs", 0, "size="+size); err == nil {
			t.Cleanup(func() { syscall.Unmount(tmp, syscall.MNT_DETACH) })
			dirs["tmpfs"] = tmp
		}
	}
	return dirs
}

// boundLog keeps the last lines on a file system that can collapse a
// range (the state directory's, usually) and on one that can only punch
// holes (tmpfs).
func TestBoundLog(t *testing.T) {
	dirs := collapseAndPunchDirs(t, "64m")
	for fs, dir := range dirs {
		path := filepath.Join(dir, "x.card.log")
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		last := fillLog(t, f, 4<<20)
		if err := boundLog(path, 256<<10); err != nil {
			t.Fatalf("%s: %v", fs, err)
		}
		if a := statBlocks(t, path).allocated; a > 300<<10 {
			t.Errorf("%s: %d bytes allocated after bounding to 256 KiB", fs, a)
		}
		if tail := string(logTail(path, 200)); !strings.HasSuffix(tail, last+"\n") {
			t.Errorf("%s: tail %q", fs, tail)
		}
		// Bounding again changes nothing; the child appends at the end.
		if err := boundLog(path, 256<<10); err != nil {
			t.Fatal(err)
		}
		last = fillLog(t, f, 100)
		if tail := string(logTail(path, 200)); !strings.HasSuffix(tail, last+"\n") {
			t.Errorf("%s: tail after a new write %q", fs, tail)
		}
		f.Close()
	}
}

// A writer that preallocates past the end of its log (fallocate with
// FALLOC_FL_KEEP_SIZE: blocks the size does not show) gets them freed by
// the bounding, whether the log is below its limit or was cut
// (regression: boundLog and boundConsole cut by the size alone, so a
// compromised card or engine could fill the disk through its log).
func TestBoundingFreesBlocksPastTheEnd(t *testing.T) {
	dirs := collapseAndPunchDirs(t, "128m")
	const limit, prealloc = 256 << 10, 64 << 20
	bounders := map[string]func(string, int64) error{"boundLog": boundLog, "boundConsole": boundConsole}
	for fs, dir := range dirs {
		for name, bound := range bounders {
			for _, n := range []int{10 << 10, 4 << 20} {
				path := filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, n))
				f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
				if err != nil {
					t.Fatal(err)
				}
				last := fillLog(t, f, n)
				if err := bound(path, limit); err != nil {
					t.Fatalf("%s %s: %v", fs, name, err)
				}
				size := statBlocks(t, path).size
				if err := syscall.Fallocate(int(f.Fd()), 1 /* FALLOC_FL_KEEP_SIZE */, size, prealloc); err != nil {
					t.Fatalf("%s: preallocating past the end: %v", fs, err)
				}
				if st := statBlocks(t, path); st.allocated < prealloc || st.size != size {
					t.Fatalf("%s: preallocation not as expected: %+v", fs, st)
				}
				if err := bound(path, limit); err != nil {
					t.Fatalf("%s %s: %v", fs, name, err)
				}
				if st := statBlocks(t, path); st.allocated > limit+128<<10 || st.size != size {
					t.Errorf("%s %s of a %d-byte log: %d bytes allocated, size %d (was %d) after bounding to %d",
						fs, name, n, st.allocated, st.size, size, limit)
				}
				if tail := string(logTail(path, 200)); !strings.HasSuffix(tail, last+"\n") {
					t.Errorf("%s %s: tail %q", fs, name, tail)
				}
				last = fillLog(t, f, 100)
				if tail := string(logTail(path, 200)); !strings.HasSuffix(tail, last+"\n") {
					t.Errorf("%s %s: tail after a new write %q", fs, name, tail)
				}
				f.Close()
			}
		}
	}
}

// A card log whose size passed the room given is started again, with its
// last lines, before its card starts (where the head cannot be collapsed,
// bounding frees blocks but the size keeps growing, and the card may
// write no file past its limit).
func TestRenewLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vol-x"+cardLogSuffix)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	last := fillLog(t, f, 2<<20)
	f.Close()
	if err := renewLog(path, 64<<10, 4<<20); err != nil || statBlocks(t, path).size < 2<<20 {
		t.Fatalf("a log under the room was renewed: %v", err)
	}
	if err := renewLog(path, 64<<10, 1<<20); err != nil {
		t.Fatal(err)
	}
	if st := statBlocks(t, path); st.size != 64<<10 {
		t.Errorf("renewed log of %d bytes, want 64 KiB", st.size)
	}
	if tail := string(logTail(path, 200)); !strings.HasSuffix(tail, last+"\n") {
		t.Errorf("tail %q", tail)
	}
}
