package keys

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"

	"github.com/azote/azote/internal/testutil"
)

// swtpm is a software TPM 2.0 (Debian's swtpm, libtpms inside) that
// keeps its state, owner seed included, in a directory: started again on
// the same directory it is the same TPM, on another it is another TPM.
// It serves raw TPM commands on a unix socket, which go-tpm's
// linuxudstpm transport speaks.
type swtpm struct {
	state, sock, log string
	cmd              *exec.Cmd
	done             chan struct{}
}

// startSWTPM starts swtpm on state (made if missing) and stops it when
// the test ends.
func startSWTPM(t *testing.T, state string) *swtpm {
	t.Helper()
	testutil.RequiresCommand(t, "swtpm", "swtpm")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	// Short names: a unix socket's path has room for 107 bytes.
	run, err := os.MkdirTemp("", "swtpm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	s := &swtpm{state: state, sock: filepath.Join(run, "tpm"), log: filepath.Join(run, "log"), done: make(chan struct{})}
	logf, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	s.cmd = exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+state,
		"--server", "type=unixio,path="+s.sock,
		"--ctrl", "type=unixio,path="+filepath.Join(run, "ctrl"),
		// Powered on and started (TPM2_Startup(CLEAR)) by swtpm itself,
		// as firmware does for a real TPM before the OS runs.
		"--flags", "not-need-init,startup-clear")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", s.sock); err == nil {
			c.Close()
			return s
		}
		select {
		case <-s.done:
			out, _ := os.ReadFile(s.log)
			t.Fatalf("swtpm exited at start: %s", out)
		default:
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(s.log)
			t.Fatalf("swtpm did not open %s in 10 s: %s", s.sock, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends swtpm (SIGTERM: it writes its state and exits) and waits for
// it; a second call does nothing.
func (s *swtpm) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// config is a RootConfig that reaches this swtpm as its TPM device.
func (s *swtpm) config(stateDir string) RootConfig {
	return RootConfig{StateDir: stateDir, Source: SourceTPM, TPMDevice: s.sock, OpenTPM: linuxudstpm.Open}
}

// bus records every byte that crosses the transport, both ways, so a
// test can see what an interposer on the TPM's bus would.
type bus struct {
	mu      sync.Mutex
	traffic bytes.Buffer
}

func (b *bus) open(path string) (transport.TPMCloser, error) {
	t, err := linuxudstpm.Open(path)
	if err != nil {
		return nil, err
	}
	return &tappedTPM{TPMCloser: t, bus: b}, nil
}

func (b *bus) contains(secret []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Contains(b.traffic.Bytes(), secret)
}

func (b *bus) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.traffic.Len()
}

type tappedTPM struct {
	transport.TPMCloser
	bus *bus
}

func (t *tappedTPM) Send(cmd []byte) ([]byte, error) {
	rsp, err := t.TPMCloser.Send(cmd)
	t.bus.mu.Lock()
	t.bus.traffic.Write(cmd)
	t.bus.traffic.Write(rsp)
	t.bus.mu.Unlock()
	return rsp, err
}
