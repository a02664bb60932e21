// Package host runs a private azoted for a benchmark, in a temporary
// directory of its own.
package host

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// Azoted is a running azoted and where it keeps its files.
type Azoted struct {
	Root   string // temporary directory holding everything below
	State  string // --state-dir
	Socket string // --socket
	Log    string // its stdout and stderr
	cmd    *exec.Cmd
}

// Start runs bin/azoted with its state in a new temporary directory named
// after prefix, serving the HTTPS API on listen ("" for none).
func Start(bin, prefix, listen string) (*Azoted, error) {
	bin, _ = filepath.Abs(bin)
	root, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	a := &Azoted{Root: root, State: filepath.Join(root, "state"), Socket: filepath.Join(root, "azoted.sock"),
		Log: filepath.Join(root, "azoted.log")}
	logf, err := os.Create(a.Log)
	if err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	defer logf.Close()
	a.cmd = exec.Command(filepath.Join(bin, "azoted"), "--state-dir", a.State, "--socket", a.Socket, "--listen", listen)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := a.cmd.Start(); err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	return a, nil
}

// Stop ends azoted and removes its directory.
func (a *Azoted) Stop() {
	a.cmd.Process.Signal(syscall.SIGTERM)
	a.cmd.Wait()
	os.RemoveAll(a.Root)
}
