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

	"github.com/azote/azote/internal/xts"
)

// TestCardRefusesEncryptedWithoutAESNI starts the real card binary with
// AES-NI switched off (GODEBUG=cpu.aes=off, which the CPU feature check
// obeys) and an encrypted volume: the card must exit with an error naming
// the reason, without ever serving the volume with the table-based AES.
func TestCardRefusesEncryptedWithoutAESNI(t *testing.T) {
	if xts.Available() != nil {
		t.Skip("this CPU has no AES-NI: nothing to switch off")
	}
	bin := buildCard(t)
	dir := t.TempDir()
	backing := filepath.Join(dir, "vol.img")
	if err := os.WriteFile(backing, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "blk.sock")
	key := make([]byte, 64)
	rand.Read(key)
	var log logBuffer
	cmd := startCardProcess(t, bin, sock, backing, key, cardOpts{
		log: &log, env: []string{"GODEBUG=cpu.aes=off"}, volumeID: "vol-noaesni", noWait: true})
	var err error
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
