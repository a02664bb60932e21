package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Processes is the Spawner of a guest: it runs commands as users of the
// guest's /etc/passwd, with a pseudo-terminal for tty sessions and pipes
// otherwise, each in a session (and process group) of its own.
type Processes struct{}

// credential is who a command runs as.
type credential struct {
	uid, gid uint32
	groups   []uint32
	home     string
	shell    string
	name     string
}

// lookupUser resolves name (empty: root) from /etc/passwd and /etc/group.
// Root needs no entry: the busybox image has no /etc/passwd at all.
func lookupUser(name string) (credential, error) {
	if name == "" {
		name = "root"
	}
	u, err := user.Lookup(name)
	if err != nil {
		if name == "root" {
			return credential{name: "root", home: "/root", shell: "/bin/sh"}, nil
		}
		return credential{}, fmt.Errorf("no user %q in the guest", name)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return credential{}, fmt.Errorf("user %q has a non-numeric uid or gid", name)
	}
	c := credential{uid: uint32(uid), gid: uint32(gid), home: u.HomeDir, name: name, shell: passwdShell(name)}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if v, err := strconv.ParseUint(g, 10, 32); err == nil {
				c.groups = append(c.groups, uint32(v))
			}
		}
	}
	return c, nil
}

// passwdShell is the login shell of name from /etc/passwd (os/user does
// not report it), /bin/sh when it has none.
func passwdShell(name string) string {
	data, err := os.ReadFile("/etc/passwd")
	if err == nil {
		for _, l := range splitLines(string(data)) {
			f := splitColon(l)
			if len(f) == 7 && f[0] == name && f[6] != "" {
				return f[6]
			}
		}
	}
	return "/bin/sh"
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}

func splitColon(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ':' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

// Start runs req's command.
func (Processes) Start(req OpenRequest) (Process, error) {
	cred, err := lookupUser(req.User)
	if err != nil {
		return nil, err
	}
	argv := req.Argv
	if req.Login {
		// A login shell is named with a leading dash (login(1)'s
		// convention), which makes sh read the profile.
		argv = []string{cred.shell}
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("%s: command not found", argv[0])
	}
	cmd := &exec.Cmd{Path: path, Args: argv, Dir: cred.home}
	if req.Login {
		cmd.Args = []string{"-" + baseName(cred.shell)}
	}
	if st, err := os.Stat(cmd.Dir); err != nil || !st.IsDir() {
		cmd.Dir = "/"
	}
	cmd.Env = []string{"HOME=" + cred.home, "USER=" + cred.name, "LOGNAME=" + cred.name, "SHELL=" + cred.shell,
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"}
	attr := &syscall.SysProcAttr{Setsid: true}
	if uint32(os.Getuid()) != cred.uid || uint32(os.Getgid()) != cred.gid {
		attr.Credential = &syscall.Credential{Uid: cred.uid, Gid: cred.gid, Groups: cred.groups}
	}
	cmd.SysProcAttr = attr
	p := &proc{}
	if req.TTY {
		cmd.Env = append(cmd.Env, "TERM=xterm-256color")
		master, slave, err := openPTY()
		if err != nil {
			return nil, err
		}
		rows, cols := req.Rows, req.Cols
		if rows == 0 || cols == 0 {
			rows, cols = 24, 80
		}
		setWinsize(master, rows, cols)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		attr.Setctty, attr.Ctty = true, 0
		p.master = master
		p.closeAfterStart = []*os.File{slave}
	} else {
		inR, inW, err1 := os.Pipe()
		outR, outW, err2 := os.Pipe()
		errR, errW, err3 := os.Pipe()
		if err := errors.Join(err1, err2, err3); err != nil {
			for _, f := range []*os.File{inR, inW, outR, outW, errR, errW} {
				if f != nil {
					f.Close()
				}
			}
			return nil, err
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
		p.stdin, p.stdout, p.stderr = inW, outR, errR
		p.closeAfterStart = []*os.File{inR, outW, errW}
	}
	p.wait, err = startReaped(cmd)
	for _, f := range p.closeAfterStart {
		f.Close()
	}
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("%s: %v", argv[0], err)
	}
	p.pid = cmd.Process.Pid
	return p, nil
}

func baseName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

type proc struct {
	pid                   int
	master                *os.File // tty sessions
	stdin, stdout, stderr *os.File // pipe sessions
	closeAfterStart       []*os.File
	wait                  func() unix.WaitStatus
	closeOnce             sync.Once
}

// ptyStdin keeps Close from closing the master, which output still
// reads: a tty has no half-close, so closing stdin sends EOF (^D) instead.
type ptyStdin struct{ f *os.File }

func (p ptyStdin) Write(b []byte) (int, error) { return p.f.Write(b) }
func (p ptyStdin) Close() error                { _, err := p.f.Write([]byte{4}); return err }

func (p *proc) Stdin() io.WriteCloser {
	if p.master != nil {
		return ptyStdin{p.master}
	}
	return p.stdin
}

func (p *proc) Stdout() io.Reader {
	if p.master != nil {
		return p.master
	}
	return p.stdout
}

func (p *proc) Stderr() io.Reader {
	if p.master != nil {
		return nil
	}
	return p.stderr
}

func (p *proc) Resize(rows, cols uint16) error {
	if p.master == nil {
		return nil
	}
	return setWinsize(p.master, rows, cols)
}

func (p *proc) Kill() error {
	// The command leads its own process group (Setsid): all of it goes.
	return unix.Kill(-p.pid, unix.SIGKILL)
}

func (p *proc) Wait() ExitStatus {
	ws := p.wait()
	switch {
	case ws.Exited():
		return ExitStatus{Code: ws.ExitStatus()}
	case ws.Signaled():
		return ExitStatus{Code: 128 + int(ws.Signal()), Signal: unix.SignalName(ws.Signal())}
	}
	return ExitStatus{Code: -1, Error: "unknown wait status"}
}

func (p *proc) Close() {
	p.closeOnce.Do(func() {
		for _, f := range []*os.File{p.master, p.stdin, p.stdout, p.stderr} {
			if f != nil {
				f.Close()
			}
		}
	})
}

// openPTY opens a pseudo-terminal pair (posix_openpt, unlockpt, ptsname).
func openPTY() (master, slave *os.File, err error) {
	if _, err := os.Stat("/dev/pts/ptmx"); err != nil {
		// An initramfs has devtmpfs but no devpts yet.
		os.MkdirAll("/dev/pts", 0o755)
		unix.Mount("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "gid=5,mode=620,ptmxmode=666")
	}
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("open pty slave: %w", err)
	}
	return m, s, nil
}

func setWinsize(f *os.File, rows, cols uint16) error {
	return unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
}

// The orphan reaper of PID 1 (reapChildren) calls wait4(-1): it would
// take the exit status of a session's command from under os/exec. So
// while the reaper runs, commands are started under reapMu and their pid
// registered; the reaper hands each registered pid's status to its
// waiter. Without the reaper (the agent as a systemd service), os/exec
// waits as usual.
var (
	reaping bool                             // under reapMu
	waiters = map[int]chan unix.WaitStatus{} // under reapMu
)

// startReaped starts cmd and returns how to wait for it.
func startReaped(cmd *exec.Cmd) (func() unix.WaitStatus, error) {
	reapMu.Lock()
	defer reapMu.Unlock()
	if !reaping {
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return func() unix.WaitStatus {
			cmd.Wait()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
				return unix.WaitStatus(ws)
			}
			return 0
		}, nil
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	waiters[cmd.Process.Pid] = ch
	return func() unix.WaitStatus {
		ws := <-ch
		cmd.Process.Release()
		return ws
	}, nil
}

// reapedLocked delivers a status the reaper collected to its waiter, if
// the pid is a session's; reapMu is held.
func reapedLocked(pid int, ws unix.WaitStatus) {
	if ch, ok := waiters[pid]; ok {
		delete(waiters, pid)
		ch <- ws
	}
}
