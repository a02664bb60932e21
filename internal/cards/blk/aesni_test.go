package blk

import (
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cards/channel"
	"github.com/azote/azote/internal/xts"
)

// TestCardRefusesEncryptedWithoutAESNI starts the real card binary with
// AES-NI switched off (GODEBUG=cpu.aes=off, which the CPU feature check
// obeys) and an encrypted volume: the card must exit with an error naming
// the reason, without ever serving the volume with the table-based AES.
func TestCardRefusesEncryptedWithoutAESNI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the card binary; skipped in -short")
	}
	if xts.Available() != nil {
		t.Skip("this CPU has no AES-NI: nothing to switch off")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "azote-card")
	build := exec.Command("go", "build", "-o", bin, "github.com/azote/azote/cmd/azote-card")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	backing := filepath.Join(dir, "vol.img")
	if err := os.WriteFile(backing, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(backing, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
	defer ours.Close()
	sock := filepath.Join(dir, "blk.sock")
	var log logBuffer
	cmd := exec.Command(bin, "blk", "--socket", sock)
	cmd.Env = append(os.Environ(), "GODEBUG=cpu.aes=off")
	cmd.ExtraFiles = []*os.File{f, theirs}
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	key := make([]byte, 64)
	rand.Read(key)
	if err := channel.SendBlk(ours, channel.BlkConfig{VolumeID: "vol-noaesni", Queues: 1, Encrypted: true}, key, nil); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// The card either exits or opens its socket to serve the volume.
	deadline := time.Now().Add(time.Minute)
wait:
	for {
		select {
		case err = <-exited:
			break wait
		case <-time.After(10 * time.Millisecond):
		}
		_, serr := os.Stat(sock)
		if serr == nil || time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			t.Fatalf("the card serves an encrypted volume without AES-NI (socket opened: %v):\n%s", serr == nil, log.String())
		}
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("card exit: %v, want a failure\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "no AES-NI") || !strings.Contains(log.String(), "vol-noaesni") {
		t.Fatalf("the card's error does not say why:\n%s", log.String())
	}
	if _, err := os.Stat(sock); err == nil {
		t.Fatal("the card opened its socket for the volume")
	}
}
