package kvmhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/image"
)

// QEMU is the emulator the test host runs in.
const QEMU = "qemu-system-x86_64"

// qemuArgs is the test host: q35 under TCG with an EPYC CPU that has SVM,
// so the kernel's kvm_amd finds the virtualization it needs in the
// emulated CPU. No default devices: COM1 is the console, COM2 the
// command's output, each a unix socket this process listens on. No
// reboot: a panic (panic=-1) or a triple fault ends QEMU instead of
// booting again.
func qemuArgs(o Options, kernel, initrd, consoleSock, outSock string) []string {
	return []string{
		"-M", "q35", "-accel", "tcg", "-cpu", "EPYC,+svm",
		"-smp", strconv.Itoa(o.CPUs), "-m", strconv.Itoa(o.MemMiB),
		"-nographic", "-nodefaults", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", image.DefaultCmdline,
		"-chardev", "socket,id=console,path=" + consoleSock,
		"-serial", "chardev:console",
		"-chardev", "socket,id=out,path=" + outSock,
		"-serial", "chardev:out",
	}
}

// qemuProc is a running QEMU.
type qemuProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once QEMU is reaped
	err    error         // Wait's error, set before exited is closed
}

// startQEMU starts QEMU so that it dies with this process.
//
// Pdeathsig is delivered when the thread that forked the child exits, not
// the process: a Go thread can exit under a running child (when a locked
// goroutine ends), and QEMU would be killed mid-run. So the fork happens
// on a goroutine that holds its thread until QEMU has been reaped; the
// thread then ends only with the process.
func startQEMU(qemu string, args []string, stderr io.Writer) (*qemuProc, error) {
	p := &qemuProc{exited: make(chan struct{})}
	p.cmd = exec.Command(qemu, args...)
	p.cmd.Stdout, p.cmd.Stderr = stderr, stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := p.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("kvmhost: starting %s: %w", qemu, err)
	}
	return p, nil
}

// kill ends QEMU and reaps it. The test host has nothing to save.
func (p *qemuProc) kill() {
	select {
	case <-p.exited:
	default:
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// boot runs the test host until the command's end line is in, QEMU ends,
// or ctx is done, and kills QEMU in every case.
func boot(ctx context.Context, qemu string, o Options, kernel, initrd, dir string, fr *framer) (*Result, error) {
	consoleSock, outSock := filepath.Join(dir, "console.sock"), filepath.Join(dir, "out.sock")
	consoleL, err := net.Listen("unix", consoleSock)
	if err != nil {
		return nil, err
	}
	defer consoleL.Close()
	outL, err := net.Listen("unix", outSock)
	if err != nil {
		return nil, err
	}
	defer outL.Close()

	var stderr bytes.Buffer // QEMU's own complaints; small
	t0 := time.Now()
	p, err := startQEMU(qemu, qemuArgs(o, kernel, initrd, consoleSock, outSock), &limitedWriter{w: &stderr, n: 16 << 10})
	if err != nil {
		return nil, err
	}
	defer p.kill()

	console := &tail{max: consoleTail}
	consoleW := io.MultiWriter(console, o.Log)
	// The readers own fr, began and outErr until wg.Wait returns.
	var (
		wg     sync.WaitGroup
		began  time.Time
		outErr error
	)
	ended := make(chan struct{}) // closed when the output port is done
	serve := func(l net.Listener, read func(net.Conn)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := l.Accept()
			if err != nil {
				return // listener closed: QEMU never connected
			}
			defer c.Close()
			read(c)
		}()
	}
	serve(consoleL, func(c net.Conn) { io.Copy(consoleW, c) })
	serve(outL, func(c net.Conn) {
		defer close(ended)
		buf := make([]byte, 32<<10)
		for !fr.done {
			n, err := c.Read(buf)
			if n > 0 {
				wasStarted := fr.started
				if _, werr := fr.Write(buf[:n]); werr != nil {
					outErr = werr
					return
				}
				if !wasStarted && fr.started {
					began = time.Now()
				}
			}
			if err != nil {
				return
			}
		}
	})
	// stop ends the readers: killing QEMU closes its ends of the
	// connections, closing the listeners ends an Accept still waiting.
	var stopOnce sync.Once
	stop := func() {
		stopOnce.Do(func() {
			p.kill()
			consoleL.Close()
			outL.Close()
			wg.Wait()
		})
	}
	defer stop()

	var runErr error
	select {
	case <-ended:
	case <-p.exited:
		// QEMU's ends of the connections closed with it: stop lets the
		// readers take in the last bytes up to the end of each.
	case <-ctx.Done():
		runErr = context.Cause(ctx)
	}
	stop()
	res := &Result{Console: console.bytes()}
	if !began.IsZero() {
		res.Boot = began.Sub(t0)
	}
	if runErr != nil {
		return res, fmt.Errorf("%w\n%s", runErr, describe(res.Console, stderr.Bytes()))
	}
	if outErr != nil {
		return res, outErr
	}
	status, output, err := fr.result()
	if err != nil {
		if !fr.done {
			err = fmt.Errorf("%w (%v)", ErrNoResult, p.err)
		}
		return res, fmt.Errorf("%w\n%s", err, describe(res.Console, stderr.Bytes()))
	}
	res.ExitCode, res.Output = status, output
	return res, nil
}

// describe is what an error shows of the test host: the end of its
// console and what QEMU said.
func describe(console, stderr []byte) string {
	const show = 8 << 10
	if len(console) > show {
		console = console[len(console)-show:]
	}
	s := "--- test host console (end) ---\n" + string(console)
	if len(stderr) > 0 {
		s += "\n--- qemu ---\n" + string(stderr)
	}
	return s
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 2*t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.b
	if len(b) > t.max {
		b = b[len(b)-t.max:]
	}
	return bytes.Clone(b)
}

// limitedWriter keeps the first n bytes and drops the rest.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// lockPath is the file that gives the machine's processes their turns.
func lockPath() string { return filepath.Join(os.TempDir(), "azote-kvmhost.lock") }

// takeTurn waits until no other test host runs on this machine (in this
// or another process) and returns the function that ends this one's turn.
func takeTurn(ctx context.Context, log io.Writer) (func(), error) {
	f, err := os.OpenFile(lockPath(), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fmt.Errorf("kvmhost: %w", err)
	}
	said := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("kvmhost: lock %s: %w", lockPath(), err)
		}
		if !said {
			fmt.Fprintf(log, "kvmhost: waiting for another test host on this machine to finish (%s)\n", lockPath())
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, context.Cause(ctx)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
