package controller

import (
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMainNotDumpable: azoted makes itself non-dumpable before anything
// else (regression: it held the host key and every data key in a process
// that could dump core and be read through ptrace by any holder of its
// uid). Main runs in a child (the test binary again), since the flag
// cannot be set back; it fails on a bad flag, after the point that
// matters.
func TestMainNotDumpable(t *testing.T) {
	if os.Getenv("AZOTE_MAIN_CHILD") == "1" {
		if code := Main([]string{"--no-such-flag"}); code != 2 {
			t.Fatalf("Main with a bad flag = %d, want 2", code)
		}
		if d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); err != nil || d != 0 {
			t.Fatalf("after Main, PR_GET_DUMPABLE = %d, %v; want 0", d, err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestMainNotDumpable$", "-test.v")
	cmd.Env = append(os.Environ(), "AZOTE_MAIN_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
