package blk

import (
	"crypto/rand"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// procField returns the fields after the line of /proc/pid/<file> that
// starts with prefix.
func procField(t *testing.T, pid int, file, prefix string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + file)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			return strings.Fields(rest)
		}
	}
	t.Fatalf("no %q in /proc/%d/%s", prefix, pid, file)
	return nil
}

// TestCardFileSizeLimit: a started card can write no file past the larger
// of its volume's size and its log room, hard limit included, and ignores
// SIGXFSZ, so a write past it fails with EFBIG instead of killing the
// card (regression: a compromised card could pwrite past the end of its
// backing file and grow its volume beyond the size the quota counted).
func TestCardFileSizeLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the card binary; skipped in -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "azote-card")
	build := exec.Command("go", "build", "-o", bin, "github.com/azote/azote/cmd/azote-card")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	key := make([]byte, 64)
	rand.Read(key)
	// A volume larger than the default log room, then one smaller.
	for _, size := range []int64{DefaultLogRoom + 64<<20, 4 << 20} {
		backing := filepath.Join(dir, "vol.img")
		if err := os.WriteFile(backing, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(backing, size); err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(dir, "blk.sock")
		card := startCardProcess(t, bin, sock, backing, append([]byte(nil), key...), 0, io.Discard)
		want := strconv.FormatInt(max(size, DefaultLogRoom), 10)
		f := procField(t, card.Process.Pid, "limits", "Max file size")
		if len(f) < 2 || f[0] != want || f[1] != want {
			t.Errorf("volume of %d bytes: card's file size limit %v, want %s (soft and hard)", size, f, want)
		}
		ign, err := strconv.ParseUint(procField(t, card.Process.Pid, "status", "SigIgn:")[0], 16, 64)
		if err != nil || ign&(1<<(unix.SIGXFSZ-1)) == 0 {
			t.Errorf("card does not ignore SIGXFSZ: SigIgn %x %v", ign, err)
		}
		card.Process.Kill()
		card.Wait()
	}
}

// TestFileSizeLimitRefusesWritesPastIt: under limitFileSize a write past
// the limit fails with EFBIG and the process lives on; writes up to it,
// to the backing file's last byte, succeed. In a child process (the test
// binary run again), since the limit cannot be raised again.
func TestFileSizeLimitRefusesWritesPastIt(t *testing.T) {
	if os.Getenv("AZOTE_FSIZE_CHILD") == "1" {
		dir := os.Getenv("AZOTE_FSIZE_DIR")
		backing, err := os.OpenFile(filepath.Join(dir, "vol.img"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := limitFileSize(backing, 64<<10); err != nil {
			t.Fatal(err)
		}
		if _, err := backing.WriteAt(make([]byte, 4096), 1<<20-4096); err != nil {
			t.Errorf("writing the last block of the volume: %v", err)
		}
		if _, err := backing.WriteAt([]byte{1}, 1<<20); !errors.Is(err, unix.EFBIG) {
			t.Errorf("writing past the end of the volume: %v, want EFBIG", err)
		}
		if _, err := backing.WriteAt([]byte{1}, 1<<40); !errors.Is(err, unix.EFBIG) {
			t.Errorf("writing far past the end of the volume: %v, want EFBIG", err)
		}
		return
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vol.img"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "vol.img"), 1<<20); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestFileSizeLimitRefusesWritesPastIt$", "-test.v")
	cmd.Env = append(os.Environ(), "AZOTE_FSIZE_CHILD=1", "AZOTE_FSIZE_DIR="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("limited child failed: %v\n%s", err, out)
	}
	if st, err := os.Stat(filepath.Join(dir, "vol.img")); err != nil || st.Size() != 1<<20 {
		t.Fatalf("the volume grew: %v %v", st.Size(), err)
	}
}
