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

	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/proc"
	"github.com/azote/azote/internal/sandbox"
)

// QEMU runs guests under qemu-system-x86_64 on the q35 machine. It adds no
// emulated disk or network device (-nodefaults): the guest gets a serial
// console, a second serial port for the agent's control channel, and
// memory in a shared memfd so that vhost-user cards can map it.
//
// QEMU runs as a uid of its own (Spec.UID), started through Exec (`azote-card
// exec`), with no capabilities and no_new_privs. It reaches nothing by a
// path under the state directory: every file it needs is opened here and
// donated (qemuFiles), and its working directory is the instance directory
// (group Spec.UID, mode 0710), through which it connects to the cards'
// sockets by relative names, again after a card restarts.
type QEMU struct {
	Binary string // qemu-system-x86_64
	// Exec is the program that drops to Spec.UID and then executes QEMU
	// (azote-card, run as `azote-card exec --uid N -- qemu …`).
	Exec  string
	accel string // "kvm" or "tcg"
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

// qemuFiles are the descriptors QEMU is given, by name: console is
// appended to (through fd set 1: QEMU's file chardev opens
// /dev/fdset/1), qmp and control are listening sockets it serves, kernel
// and initrd are read through /proc/self/fd (QEMU's x86 loader opens them
// by name; the blobs are mode 0644 in a directory QEMU cannot reach).
type qemuFiles struct {
	console, qmp, control, kernel, initrd int
}

// donate returns the descriptor number f will have in the child (os/exec
// gives ExtraFiles 3, 4, …).
func donate(files *[]*os.File, f *os.File) int {
	*files = append(*files, f)
	return 2 + len(*files)
}

// args returns the QEMU command line for s with the descriptors fds.
func (q *QEMU) args(s Spec, fds qemuFiles) []string {
	cpu := "max"
	if q.accel == "kvm" {
		cpu = "host"
	}
	mem := strconv.Itoa(s.MemoryMiB) + "M"
	fd := strconv.Itoa
	args := []string{
		"-name", fmt.Sprintf(markerTmpl, s.InstanceID) + ",debug-threads=on",
		"-machine", "q35,accel=" + q.accel + ",memory-backend=mem",
		"-cpu", cpu,
		"-smp", strconv.Itoa(s.VCPUs),
		"-m", mem,
		"-object", "memory-backend-memfd,id=mem,size=" + mem + ",share=on",
		"-nodefaults", "-no-user-config", "-display", "none",
		"-kernel", "/proc/self/fd/" + fd(fds.kernel), "-initrd", "/proc/self/fd/" + fd(fds.initrd), "-append", s.Cmdline,
		"-add-fd", "fd=" + fd(fds.console) + ",set=1",
		"-chardev", "file,id=console,path=/dev/fdset/1,append=on",
		"-serial", "chardev:console",
		"-chardev", "socket,id=control,fd=" + fd(fds.control) + ",server=on,wait=off",
		"-serial", "chardev:control",
		"-chardev", "socket,id=qmp,fd=" + fd(fds.qmp) + ",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		// QEMU's own seccomp filter: no new processes, no privilege gain.
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
	}
	for i, d := range s.Devices {
		// reconnect=1: if the card dies, QEMU reconnects to its successor.
		// The path is relative to the instance directory, QEMU's working
		// directory, which it can search though not the ones above it.
		sock := d.Socket
		if rel, err := filepath.Rel(s.Dir, d.Socket); err == nil && filepath.IsLocal(rel) {
			sock = "./" + rel
		}
		switch d.Kind {
		case DeviceBlk:
			id := "disk" + strconv.Itoa(i)
			args = append(args,
				"-chardev", "socket,id="+id+",path="+sock+",reconnect=1",
				"-device", "vhost-user-blk-pci,chardev="+id+",num-queues="+strconv.Itoa(d.Queues))
		case DeviceNet:
			// The card serves every queue; QEMU keeps the control queue
			// and the configuration space (MAC, link) itself. MQ needs
			// a vector per queue, and two more.
			id := "net" + strconv.Itoa(i)
			dev := "virtio-net-pci,netdev=" + id + ",mac=" + d.MAC
			switch {
			case q.accel == "tcg":
				// QEMU 7.2 under TCG dereferences NULL in
				// msix_set_vector_notifiers when vhost_net_start unmasks
				// the vectors of a vhost-user netdev (seen on every boot
				// of a stock Linux guest): such a device gets no MSI-X,
				// and interrupts by INTx.
				dev += ",vectors=0"
				if d.Queues > 1 {
					dev += ",mq=on"
				}
			case d.Queues > 1:
				dev += ",mq=on,vectors=" + strconv.Itoa(2*d.Queues+2)
			}
			args = append(args,
				"-chardev", "socket,id="+id+",path="+sock+",reconnect=1",
				"-netdev", "vhost-user,id="+id+",chardev="+id+",queues="+strconv.Itoa(d.Queues),
				"-device", dev)
		}
	}
	return args
}

// command returns the argv that runs QEMU with args as s.UID (directly
// when s.UID is 0).
func (q *QEMU) command(s Spec, args []string) []string {
	if s.UID == 0 {
		return append([]string{q.Binary}, args...)
	}
	argv := []string{q.Exec, "exec", "--uid", strconv.Itoa(s.UID)}
	if q.accel == "kvm" {
		if g := sandbox.KVMGroup(); g >= 0 {
			argv = append(argv, "--group", strconv.Itoa(g))
		}
	}
	argv = append(argv, "--", q.Binary)
	return append(argv, args...)
}

func (q *QEMU) Launch(ctx context.Context, s Spec) (Machine, error) {
	if s.UID != 0 && q.Exec == "" {
		return nil, fmt.Errorf("engine: no program to drop to uid %d with", s.UID)
	}
	for _, d := range s.Devices {
		if d.Kind != DeviceBlk && d.Kind != DeviceNet {
			return nil, fmt.Errorf("%w: %q (device %s)", ErrDeviceKind, d.Kind, d.ID)
		}
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, engineLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var fds qemuFiles
	console, err := os.OpenFile(s.ConsolePath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("engine: console: %w", err)
	}
	fds.console = donate(&files, console)
	// azoted binds the sockets (0600, root's) and hands them over: QEMU
	// could not bind in the instance directory, and only root connects.
	for _, l := range []struct {
		name string
		fd   *int
	}{{qmpSocket, &fds.qmp}, {ctlSocket, &fds.control}} {
		f, err := proc.ListenFile(filepath.Join(s.Dir, l.name))
		if err != nil {
			return nil, fmt.Errorf("engine: %s: %w", l.name, err)
		}
		*l.fd = donate(&files, f)
	}
	for _, b := range []struct {
		path string
		fd   *int
	}{{s.Kernel, &fds.kernel}, {s.Initrd, &fds.initrd}} {
		f, err := os.Open(b.path)
		if err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		*b.fd = donate(&files, f)
	}

	argv := q.command(s, q.args(s, fds))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.ExtraFiles = files
	cmd.Stdout, cmd.Stderr = logf, logf
	// The working directory is entered as root, before the drop: QEMU
	// keeps it without being able to reach it by its path.
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

	// ctl is the one connection to the control port: QEMU's socket
	// chardev serves a single client, so line commands and exec
	// sessions share it. Made on first use, again after it broke.
	ctlMu sync.Mutex
	ctl   *agent.Channel
}

func newQEMUMachine(q *QEMU, s Spec) *qemuMachine {
	return &qemuMachine{
		spec:   s,
		resets: make(chan time.Time, 8),
		done:   make(chan struct{}),
		handle: Handle{Engine: q.Name(), Accel: q.accel, Dir: s.Dir, UID: s.UID},
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
	go m.closeChannel()
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
	ch, err := m.channel(ctx)
	if err != nil {
		return err
	}
	return ch.Command(cmd)
}

func (m *qemuMachine) Exec(ctx context.Context, req agent.OpenRequest) (*agent.Session, error) {
	ch, err := m.channel(ctx)
	if err != nil {
		return nil, err
	}
	return ch.Open(ctx, req)
}

// channel returns the control port's channel, connecting to it if needed.
func (m *qemuMachine) channel(ctx context.Context) (*agent.Channel, error) {
	select {
	case <-m.done:
		return nil, ErrNotRunning
	default:
	}
	m.ctlMu.Lock()
	defer m.ctlMu.Unlock()
	if m.ctl != nil {
		select {
		case <-m.ctl.Done():
			m.ctl = nil
		default:
			return m.ctl, nil
		}
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", filepath.Join(m.spec.Dir, ctlSocket))
	if err != nil {
		return nil, fmt.Errorf("engine: control port: %w", err)
	}
	m.ctl = agent.NewChannel(writeDeadline{c.(*net.UnixConn)})
	return m.ctl, nil
}

// writeDeadline bounds each write to the control port: a guest that
// reads nothing from it (no agent) must not hold a writer for ever.
type writeDeadline struct{ *net.UnixConn }

func (w writeDeadline) Write(p []byte) (int, error) {
	w.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return w.UnixConn.Write(p)
}

func (m *qemuMachine) closeChannel() {
	m.ctlMu.Lock()
	ch := m.ctl
	m.ctl = nil
	m.ctlMu.Unlock()
	if ch != nil {
		ch.Close()
	}
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
	m.closeChannel()
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
