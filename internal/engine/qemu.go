package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/azote/azote/internal/proc"
)

// QEMU runs guests under qemu-system-x86_64 on the q35 machine. It adds no
// emulated disk or network device (-nodefaults): the guest gets a serial
// console, a second serial port for the agent's control channel, and
// memory in a shared memfd so that vhost-user cards can map it.
type QEMU struct {
	Binary string // qemu-system-x86_64
	accel  string // "kvm" or "tcg"
}

// NewQEMU returns the QEMU engine with the given accelerator.
func NewQEMU(binary, accel string) (*QEMU, error) {
	if accel != "kvm" && accel != "tcg" {
		return nil, fmt.Errorf("engine: unknown accelerator %q", accel)
	}
	if binary == "" {
		binary = "qemu-system-x86_64"
	}
	p, err := exec.LookPath(binary)
	if err != nil {
		return nil, fmt.Errorf("engine: %s not found (install qemu-system-x86): %w", binary, err)
	}
	return &QEMU{Binary: p, accel: accel}, nil
}

func (q *QEMU) Name() string  { return "qemu" }
func (q *QEMU) Accel() string { return q.accel }

// LogName is the engine's log (QEMU's stdout and stderr) in the instance
// directory. The engine appends to it; the controller bounds its size.
const LogName = "engine.log"

// Files inside the instance directory.
const (
	qmpSocket  = "qmp.sock"
	ctlSocket  = "control.sock"
	engineLog  = LogName
	markerTmpl = "azote-%s" // in the process name, to recognise it on adoption
)

// Args returns the QEMU command line for s.
func (q *QEMU) Args(s Spec) []string {
	cpu := "max"
	if q.accel == "kvm" {
		cpu = "host"
	}
	mem := strconv.Itoa(s.MemoryMiB) + "M"
	args := []string{
		"-name", fmt.Sprintf(markerTmpl, s.InstanceID) + ",debug-threads=on",
		"-machine", "q35,accel=" + q.accel + ",memory-backend=mem",
		"-cpu", cpu,
		"-smp", strconv.Itoa(s.VCPUs),
		"-m", mem,
		"-object", "memory-backend-memfd,id=mem,size=" + mem + ",share=on",
		"-nodefaults", "-no-user-config", "-display", "none",
		"-kernel", s.Kernel, "-initrd", s.Initrd, "-append", s.Cmdline,
		"-chardev", "file,id=console,path=" + s.ConsolePath + ",append=on",
		"-serial", "chardev:console",
		"-chardev", "socket,id=control,path=" + filepath.Join(s.Dir, ctlSocket) + ",server=on,wait=off",
		"-serial", "chardev:control",
		"-qmp", "unix:" + filepath.Join(s.Dir, qmpSocket) + ",server=on,wait=off",
		// QEMU's own seccomp filter: no new processes, no privilege gain.
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
	}
	for i, d := range s.Disks {
		// reconnect=1: if the card dies, QEMU reconnects to its successor.
		id := "disk" + strconv.Itoa(i)
		args = append(args,
			"-chardev", "socket,id="+id+",path="+d.Socket+",reconnect=1",
			"-device", "vhost-user-blk-pci,chardev="+id+",num-queues="+strconv.Itoa(d.Queues))
	}
	return args
}

func (q *QEMU) Launch(ctx context.Context, s Spec) (Machine, error) {
	logf, err := os.OpenFile(filepath.Join(s.Dir, engineLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// Stale sockets from an earlier run of this instance.
	os.Remove(filepath.Join(s.Dir, qmpSocket))
	os.Remove(filepath.Join(s.Dir, ctlSocket))

	cmd := exec.Command(q.Binary, q.Args(s)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = s.Dir
	// A session of its own: the machine outlives azoted and is re-adopted.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("engine: start qemu: %w", err)
	}
	m := newQEMUMachine(q, s)
	m.handle.PID = cmd.Process.Pid
	m.handle.StartTime, _ = proc.StartTime(cmd.Process.Pid)
	go func() {
		err := cmd.Wait()
		m.finish(m.classifyChild(cmd.ProcessState, err))
	}()

	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	go func() {
		select {
		case <-m.done:
			cancel()
		case <-dctx.Done():
		}
	}()
	qc, err := dialQMP(dctx, filepath.Join(s.Dir, qmpSocket), m.onEvent)
	if err != nil {
		cmd.Process.Kill()
		<-m.done
		return nil, fmt.Errorf("engine: qemu did not start: %s", m.Exit().Reason)
	}
	m.setQMP(qc)
	return m, nil
}

func (q *QEMU) Adopt(h Handle, s Spec) (Machine, error) {
	if !proc.Same(h.PID, h.StartTime, fmt.Sprintf(markerTmpl, s.InstanceID)) {
		return nil, ErrGone
	}
	m := newQEMUMachine(q, s)
	m.handle = h
	m.adopted = true
	w, err := proc.WatchPID(h.PID, func() { m.finish(m.classifyAdopted()) })
	if err != nil {
		return nil, ErrGone
	}
	m.watch = w
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := dialQMP(ctx, filepath.Join(s.Dir, qmpSocket), m.onEvent)
	if err != nil {
		// The process is alive but its monitor does not answer: keep
		// watching it; stop falls back to signals.
		return m, nil
	}
	m.setQMP(qc)
	return m, nil
}

type qemuMachine struct {
	spec    Spec
	adopted bool
	watch   *proc.Watch
	resets  chan time.Time
	done    chan struct{}
	handle  Handle

	mu           sync.Mutex
	qmp          *qmp
	exit         Exit
	lastShutdown string // reason of the last QMP SHUTDOWN event
	finished     bool
}

func newQEMUMachine(q *QEMU, s Spec) *qemuMachine {
	return &qemuMachine{
		spec:   s,
		resets: make(chan time.Time, 8),
		done:   make(chan struct{}),
		handle: Handle{Engine: q.Name(), Accel: q.accel, Dir: s.Dir},
	}
}

func (m *qemuMachine) Handle() Handle           { return m.handle }
func (m *qemuMachine) Done() <-chan struct{}    { return m.done }
func (m *qemuMachine) Resets() <-chan time.Time { return m.resets }

func (m *qemuMachine) Exit() Exit {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exit
}

func (m *qemuMachine) setQMP(q *qmp) {
	m.mu.Lock()
	m.qmp = q
	m.mu.Unlock()
}

func (m *qemuMachine) onEvent(name string, data json.RawMessage, at time.Time) {
	var ev struct {
		Guest  bool   `json:"guest"`
		Reason string `json:"reason"`
	}
	json.Unmarshal(data, &ev)
	switch name {
	case "SHUTDOWN":
		m.mu.Lock()
		m.lastShutdown = ev.Reason
		m.mu.Unlock()
	case "RESET":
		select {
		case m.resets <- at:
		default:
		}
	}
}

func (m *qemuMachine) finish(e Exit) {
	m.mu.Lock()
	if m.finished {
		m.mu.Unlock()
		return
	}
	m.finished = true
	m.exit = e
	q := m.qmp
	m.mu.Unlock()
	if q != nil {
		go q.Close()
	}
	close(m.done)
}

// shutdownClean tells whether a SHUTDOWN reason is an orderly end.
func shutdownClean(reason string) (bool, string) {
	switch reason {
	case "guest-shutdown":
		return true, "guest powered off"
	case "host-qmp-quit":
		return true, "stopped by the host"
	case "guest-panic":
		return false, "guest kernel panicked"
	case "host-signal":
		return false, "engine process terminated by a signal"
	}
	return false, ""
}

func (m *qemuMachine) classifyChild(ps *os.ProcessState, waitErr error) Exit {
	m.mu.Lock()
	last := m.lastShutdown
	m.mu.Unlock()
	if ps == nil {
		return Exit{Reason: fmt.Sprintf("engine wait: %v", waitErr)}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return Exit{Reason: fmt.Sprintf("engine process killed by signal %d (%v)", ws.Signal(), ws.Signal())}
	}
	clean, why := shutdownClean(last)
	if ps.ExitCode() == 0 && clean {
		return Exit{Clean: true, Reason: why}
	}
	if why == "" {
		why = fmt.Sprintf("engine exited with status %d: %s", ps.ExitCode(), lastLogLine(m.spec.Dir))
	}
	return Exit{Reason: why}
}

func (m *qemuMachine) classifyAdopted() Exit {
	m.mu.Lock()
	last := m.lastShutdown
	m.mu.Unlock()
	if clean, why := shutdownClean(last); why != "" {
		return Exit{Clean: clean, Reason: why}
	}
	return Exit{Reason: "engine process exited without a guest shutdown (killed or crashed)"}
}

func lastLogLine(dir string) string {
	// Only the tail is read: the head of a bounded log may be a hole of
	// any apparent size.
	var b []byte
	if f, err := os.Open(filepath.Join(dir, engineLog)); err == nil {
		if st, err := f.Stat(); err == nil {
			off := max(st.Size()-4096, 0)
			b = make([]byte, st.Size()-off)
			n, _ := f.ReadAt(b, off)
			b = b[:n]
		}
		f.Close()
	}
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	if len(b) > 300 {
		b = b[len(b)-300:]
	}
	if len(b) == 0 {
		return "no output"
	}
	return string(b)
}

func (m *qemuMachine) Command(ctx context.Context, cmd string) error {
	select {
	case <-m.done:
		return ErrNotRunning
	default:
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", filepath.Join(m.spec.Dir, ctlSocket))
	if err != nil {
		return fmt.Errorf("engine: control port: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Write([]byte(cmd + "\n"))
	return err
}

func (m *qemuMachine) Quit(ctx context.Context) error {
	m.mu.Lock()
	q := m.qmp
	m.mu.Unlock()
	if q == nil {
		return m.Kill()
	}
	if _, err := q.execute(ctx, "quit", nil); err != nil && !errors.Is(err, errQMPClosed) {
		return err
	}
	return nil
}

func (m *qemuMachine) Kill() error {
	select {
	case <-m.done:
		return nil
	default:
	}
	if !proc.Same(m.handle.PID, m.handle.StartTime, fmt.Sprintf(markerTmpl, m.spec.InstanceID)) {
		return nil
	}
	return syscall.Kill(m.handle.PID, syscall.SIGKILL)
}

func (m *qemuMachine) Release() {
	if m.watch != nil {
		m.watch.Stop()
	}
	m.mu.Lock()
	q := m.qmp
	m.qmp = nil
	m.mu.Unlock()
	if q != nil {
		q.Close()
	}
}

func (q *QEMU) Sweep(instanceID string) int {
	// The marker ends with the comma of "-name azote-<id>,debug-threads=on"
	// so that one id cannot match a longer one.
	return proc.KillMarked(fmt.Sprintf(markerTmpl, instanceID) + ",")
}
