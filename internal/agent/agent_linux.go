package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Paths inside the guest image.
const (
	ModulesList = "/etc/azote/modules" // module paths, one per line, in load order
	ScriptPath  = "/etc/azote/rc"      // run with /bin/sh after ready, if present
	ConsolePath = "/dev/console"
	ControlPath = "/dev/ttyS1" // the host's control port
)

// Commands the host sends on the control port, one per line.
const (
	CmdStop   = "stop"
	CmdReboot = "reboot"
	CmdPing   = "ping"
)

// Run is the body of azote-agent as PID 1. It returns only on a fatal
// error; a clean stop ends in reboot(2).
func Run() error {
	initMs := bootMillis()
	console := openConsole()
	report := func(r Report) { fmt.Fprintf(console, "\r\n%s\r\n", r.Format()) }
	fail := func(err error) { report(Report{Event: EventError, Message: err.Error()}) }

	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			fail(err)
			continue
		}
		if err := unix.Mount(m.src, m.dst, m.fs, unix.MS_NOSUID, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			fail(fmt.Errorf("mount %s: %w", m.dst, err))
		}
	}
	// The kernel writes its messages to the console byte by byte,
	// whatever else is being written there: one in the middle of a report
	// line garbles it for the host. From here on only warnings and worse
	// reach the console (all stay in the kernel's log); drivers coming up
	// (a NIC's link, addresses) say what they do at info level.
	if err := os.WriteFile("/proc/sys/kernel/printk", []byte("4"), 0); err != nil {
		fail(fmt.Errorf("console log level: %w", err))
	}
	os.Setenv("PATH", "/usr/local/bin:/bin:/sbin:/usr/bin:/usr/sbin")
	reapChildren()

	loaded, errs := loadModules(ModulesList)
	for _, err := range errs {
		fail(err)
	}
	root := kernelParam("azote.root")
	if root != "" {
		if err := switchRoot(root); err != nil {
			fail(fmt.Errorf("root %s: %w", root, err))
			root = ""
		} else if hasInit() {
			// A distribution's root: its init (systemd) takes over as
			// PID 1 and starts azote-agent.service, which reports.
			if err := applyModes(ModesPath, ModesDone); err != nil {
				fail(fmt.Errorf("root %s: %w", root, err))
			}
			err := execInit()
			fail(fmt.Errorf("root %s: exec %s: %w", root, InitPath, err))
		}
	}
	r := Report{
		Event:    EventReady,
		Root:     root,
		Instance: kernelParam("azote.instance"),
		InitMs:   initMs,
		VCPUs:    onlineCPUs(),
		Modules:  loaded,
	}
	r.MemTotalKiB, r.MemRAMKiB = memory()
	r.ReadyMs = bootMillis()
	report(r)
	go func() {
		configureNetwork(report)
		runScript(report)
	}()

	return controlLoop(report)
}

// controlLoop serves the host's commands and exec sessions until one
// ends the guest.
func controlLoop(report func(Report)) error {
	f, err := os.OpenFile(ControlPath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		report(Report{Event: EventError, Message: "control port: " + err.Error()})
		select {} // stay up: the host can still power the machine off
	}
	makeRaw(int(f.Fd()))
	command := func(cmd string) {
		switch cmd {
		case CmdStop:
			report(Report{Event: EventStop, Message: "power off requested by host"})
			shutdown(unix.LINUX_REBOOT_CMD_POWER_OFF)
		case CmdReboot:
			report(Report{Event: EventStop, Message: "reboot requested by host"})
			shutdown(unix.LINUX_REBOOT_CMD_RESTART)
		}
	}
	for {
		// A read error (EOF when the host side hangs up): the port stays
		// ours, read on. Sessions keep running meanwhile.
		ServeControl(f, Processes{}, command)
		time.Sleep(100 * time.Millisecond)
	}
}

func shutdown(cmd int) {
	if systemdMode {
		systemctl(cmd)
		return
	}
	unix.Sync()
	// Anything later added under / (volumes) is flushed by sync; the
	// initramfs itself has nothing to unmount cleanly.
	if err := unix.Reboot(cmd); err != nil {
		fmt.Fprintf(os.Stderr, "reboot: %v\n", err)
	}
}

func openConsole() *os.File {
	f, err := os.OpenFile(ConsolePath, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return os.Stdout
	}
	return f
}

func makeRaw(fd int) {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	unix.IoctlSetTermios(fd, unix.TCSETS, t)
}

// reapMu orders the orphan reaper with commands the agent starts and
// waits for itself (startReaped), whose status a wait(-1) would rob.
var reapMu sync.Mutex

// reapChildren collects every orphan the kernel hands PID 1.
func reapChildren() {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, unix.SIGCHLD)
	reapMu.Lock()
	reaping = true
	reapMu.Unlock()
	go func() {
		for range ch {
			reapMu.Lock()
			for {
				var ws unix.WaitStatus
				pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
				reapedLocked(pid, ws)
			}
			reapMu.Unlock()
		}
	}()
}

// loadModules loads each module listed in path, in order. A module that is
// already present (built in, or loaded as a dependency) is not an error.
func loadModules(path string) (int, []error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, []error{err}
	}
	var errs []error
	n := 0
	for _, m := range strings.Fields(string(data)) {
		f, err := os.Open(m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		switch {
		case err == nil:
			n++
		case errors.Is(err, unix.EEXIST):
		default:
			errs = append(errs, fmt.Errorf("load %s: %w", m, err))
		}
	}
	return n, errs
}

func bootMillis() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return ts.Sec*1000 + ts.Nsec/1e6
}

func kernelParam(name string) string {
	data, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(data)) {
		if v, ok := strings.CutPrefix(f, name+"="); ok && len(v) <= 64 {
			return v
		}
	}
	return ""
}

// onlineCPUs counts the CPUs in /sys/devices/system/cpu/online ("0-3,5").
func onlineCPUs() int {
	data, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return 0
	}
	return countCPUList(strings.TrimSpace(string(data)))
}

func countCPUList(s string) int {
	n := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		if b >= a {
			n += b - a + 1
		}
	}
	return n
}

// memory returns MemTotal and the sum of top-level "System RAM" ranges.
func memory() (total, ram int64) {
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				total, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			}
		}
	}
	if data, err := os.ReadFile("/proc/iomem"); err == nil {
		ram = systemRAMKiB(string(data))
	}
	return total, ram
}

func systemRAMKiB(iomem string) int64 {
	var sum int64
	for _, l := range strings.Split(iomem, "\n") {
		if strings.HasPrefix(l, " ") || !strings.HasSuffix(l, ": System RAM") {
			continue
		}
		rng, _, _ := strings.Cut(l, " ")
		lo, hi, ok := strings.Cut(rng, "-")
		if !ok {
			continue
		}
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil && b >= a {
			sum += int64(b-a+1) / 1024
		}
	}
	return sum
}

// runScript runs the image's script, if it has one, with its output on the
// console, and reports how it ended.
func runScript(report func(Report)) {
	if _, err := os.Stat(ScriptPath); err != nil {
		return
	}
	console, err := os.OpenFile(ConsolePath, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return
	}
	defer console.Close()
	cmd := exec.Command("/bin/sh", ScriptPath)
	cmd.Stdout, cmd.Stderr = console, console
	msg := "exit 0"
	wait, err := startReaped(cmd)
	if err != nil {
		msg = err.Error()
	} else if ws := wait(); ws.Signaled() {
		msg = "signal: " + ws.Signal().String()
	} else if ws.ExitStatus() != 0 {
		msg = "exit status " + strconv.Itoa(ws.ExitStatus())
	}
	report(Report{Event: EventScript, Message: msg})
}

// switchRoot mounts dev (ext4) and makes it / the way switch_root does in
// an initramfs: the kernel filesystems move along, then the new root is
// moved over / and chrooted into. The initramfs contents stay in memory
// (they are small) and are no longer reachable.
func switchRoot(dev string) error {
	// The device node appears once virtio_blk has probed the disk.
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(dev); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.MkdirAll("/newroot", 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, "/newroot", "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	for _, m := range []string{"/dev", "/proc", "/sys", "/run", "/tmp"} {
		os.MkdirAll("/newroot"+m, 0o755)
		if err := unix.Mount(m, "/newroot"+m, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s: %w", m, err)
		}
	}
	if err := unix.Chdir("/newroot"); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	return unix.Chdir("/")
}

// InitPath is the init a distribution's root volume carries (systemd on
// Debian). A root without it (a volume made from a busybox image) keeps
// the agent as PID 1.
const InitPath = "/sbin/init"

// hasInit tells whether the new root has an init of its own to hand PID
// 1 to.
func hasInit() bool {
	st, err := os.Stat(InitPath)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// execInit replaces the agent with the root's init, as switch_root does;
// it returns only on error. The kernel command line reaches it as
// /proc/cmdline; the environment is the kernel's own minimal one.
func execInit() error {
	unix.Sync()
	return unix.Exec(InitPath, []string{InitPath}, []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=linux"})
}
