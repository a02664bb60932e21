// Package host runs a private azoted for a benchmark, in a temporary
// directory of its own.
package host

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
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
	return StartCommand([]string{filepath.Join(bin, "azoted")}, nil, prefix, listen)
}

// StartCommand is Start with the command that runs azoted given: argv,
// to which azoted's flags are appended, and env, added to this
// process's environment.
func StartCommand(argv, env []string, prefix, listen string) (*Azoted, error) {
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
	a.cmd = exec.Command(argv[0], append(argv[1:len(argv):len(argv)], "--state-dir", a.State, "--socket", a.Socket, "--listen", listen)...)
	a.cmd.Env = append(os.Environ(), env...)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := a.cmd.Start(); err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	return a, nil
}

// Pid is azoted's process id.
func (a *Azoted) Pid() int { return a.cmd.Process.Pid }

// Endpoint waits up to timeout for azoted to publish the URL of its
// HTTPS listener, and returns it.
func (a *Azoted) Endpoint(timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(filepath.Join(a.State, "endpoint"))
		if e := strings.TrimSpace(string(b)); e != "" {
			return e, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("azoted did not publish its endpoint in %v (log in %s)", timeout, a.Log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends azoted and removes its directory.
func (a *Azoted) Stop() {
	a.cmd.Process.Signal(syscall.SIGTERM)
	a.cmd.Wait()
	os.RemoveAll(a.Root)
}
