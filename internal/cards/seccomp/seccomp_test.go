package seccomp

import (
	"errors"
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// The filter is installed in a child process (the test binary run again),
// since it cannot be removed from the process that installs it.
func TestConfined(t *testing.T) {
	if os.Getenv("AZOTE_SECCOMP_CHILD") == "1" {
		if err := Install(); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0); !errors.Is(err, unix.EPERM) {
			t.Fatalf("socket(AF_INET) after Install: %v, want EPERM", err)
		}
		if _, err := os.Open("/etc/hostname"); !errors.Is(err, unix.EPERM) {
			t.Fatalf("open after Install: %v, want EPERM", err)
		}
		// What a card does keeps working: eventfds, pipes, goroutines.
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			t.Fatalf("eventfd after Install: %v", err)
		}
		unix.Write(fd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		unix.Close(fd)
		done := make(chan int)
		for i := 0; i < 8; i++ {
			go func(i int) { done <- i }(i)
		}
		for i := 0; i < 8; i++ {
			<-done
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestConfined$", "-test.v")
	cmd.Env = append(os.Environ(), "AZOTE_SECCOMP_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("confined child failed: %v\n%s", err, out)
	}
}
