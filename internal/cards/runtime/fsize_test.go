package runtime

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFileSizeLimitRefusesWritesPastIt: under LimitFileSize a write past
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
		if err := LimitFileSize(backing, 64<<10); err != nil {
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
