package seccomp

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The filter is installed in a child process (the test binary run again),
// since it cannot be removed from the process that installs it.
func runChild(t *testing.T, name string, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^"+name+"$", "-test.v")
	cmd.Env = append(append(os.Environ(), "AZOTE_SECCOMP_CHILD=1"), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("confined child failed: %v\n%s", err, out)
	}
}

func TestConfined(t *testing.T) {
	if os.Getenv("AZOTE_SECCOMP_CHILD") == "1" {
		mfd, err := unix.MemfdCreate("sealed", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			t.Fatal(err)
		}
		if err := Install(-1); err != nil {
			t.Fatal(err)
		}
		// The vhost-user backend checks an inflight memfd's seals.
		if _, err := unix.FcntlInt(uintptr(mfd), unix.F_GET_SEALS, 0); err != nil {
			t.Fatalf("fcntl(F_GET_SEALS) after Install: %v", err)
		}
		if _, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0); !errors.Is(err, unix.EPERM) {
			t.Fatalf("socket(AF_INET) after Install: %v, want EPERM", err)
		}
		if _, err := os.Open("/etc/hostname"); !errors.Is(err, unix.EPERM) {
			t.Fatalf("open after Install: %v, want EPERM", err)
		}
		// What a card does keeps working: eventfds, pipes, goroutines,
		// the fcntl calls of the os and net packages, signals to itself.
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			t.Fatalf("eventfd after Install: %v", err)
		}
		unix.Write(fd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		if err := unix.SetNonblock(fd, true); err != nil {
			t.Fatalf("fcntl(F_GETFL/F_SETFL) after Install: %v", err)
		}
		unix.Close(fd)
		done := make(chan int)
		for i := 0; i < 8; i++ {
			go func(i int) { done <- i }(i)
		}
		for i := 0; i < 8; i++ {
			<-done
		}
		if err := unix.Kill(os.Getpid(), 0); err != nil {
			t.Fatalf("kill(self, 0) after Install: %v", err)
		}
		if err := unix.Tgkill(os.Getpid(), unix.Gettid(), 0); err != nil {
			t.Fatalf("tgkill(self, own thread, 0) after Install: %v", err)
		}
		var lim unix.Rlimit
		if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
			t.Fatalf("prlimit(0) after Install: %v", err)
		}
		if err := unix.Prlimit(os.Getpid(), unix.RLIMIT_NOFILE, nil, &lim); err != nil {
			t.Fatalf("prlimit(self) after Install: %v", err)
		}
		return
	}
	runChild(t, "TestConfined")
}

// TestOtherProcessesUnreachable: a confined process can neither signal nor
// re-limit another process, nor make one (regression: tgkill, tkill,
// prlimit64, clone and fcntl were allowed whatever their arguments, so a
// compromised card could kill or starve its neighbours).
func TestOtherProcessesUnreachable(t *testing.T) {
	if os.Getenv("AZOTE_SECCOMP_CHILD") == "1" {
		victim, err := strconv.Atoi(os.Getenv("AZOTE_SECCOMP_VICTIM"))
		if err != nil {
			t.Fatal(err)
		}
		if err := Install(-1); err != nil {
			t.Fatal(err)
		}
		if err := unix.Kill(victim, unix.SIGKILL); !errors.Is(err, unix.EPERM) {
			t.Errorf("kill(other, SIGKILL): %v, want EPERM", err)
		}
		if err := unix.Tgkill(victim, victim, unix.SIGKILL); !errors.Is(err, unix.EPERM) {
			t.Errorf("tgkill(other, SIGKILL): %v, want EPERM", err)
		}
		// A thread id of its own group, but named without the group.
		if _, _, e := unix.Syscall(unix.SYS_TKILL, uintptr(victim), uintptr(unix.SIGKILL), 0); e != unix.EPERM {
			t.Errorf("tkill(other, SIGKILL): %v, want EPERM", e)
		}
		one := unix.Rlimit{Cur: 1, Max: 1}
		if err := unix.Prlimit(victim, unix.RLIMIT_NOFILE, &one, nil); !errors.Is(err, unix.EPERM) {
			t.Errorf("prlimit(other, NOFILE=1): %v, want EPERM", err)
		}
		if err := unix.Prlimit(victim, unix.RLIMIT_NOFILE, nil, &one); !errors.Is(err, unix.EPERM) {
			t.Errorf("prlimit(other) read: %v, want EPERM", err)
		}
		// fork: clone without CLONE_THREAD.
		if pid, _, e := unix.RawSyscall6(unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0); e != unix.EPERM {
			if e == 0 && pid == 0 {
				unix.RawSyscall(unix.SYS_EXIT, 0, 0, 0)
			}
			t.Errorf("clone(SIGCHLD) = %d, %v, want EPERM", pid, e)
		}
		// A thread that also asks for a new namespace.
		if _, _, e := unix.RawSyscall6(unix.SYS_CLONE, unix.CLONE_THREAD|unix.CLONE_VM|unix.CLONE_SIGHAND|unix.CLONE_NEWNET, 0, 0, 0, 0, 0); e != unix.EPERM {
			t.Errorf("clone(THREAD|NEWNET): %v, want EPERM", e)
		}
		if _, _, e := unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0); e != unix.ENOSYS {
			t.Errorf("clone3: %v, want ENOSYS", e)
		}
		// F_SETOWN would aim SIGIO at another process.
		fds := make([]int, 2)
		if err := unix.Pipe2(fds, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.FcntlInt(uintptr(fds[0]), unix.F_SETOWN, victim); !errors.Is(err, unix.EPERM) {
			t.Errorf("fcntl(F_SETOWN, other): %v, want EPERM", err)
		}
		if _, err := syscall.ForkExec("/bin/true", []string{"true"}, nil); err == nil {
			t.Errorf("ForkExec after Install succeeded")
		}
		return
	}
	victim := exec.Command("sleep", "60")
	if err := victim.Start(); err != nil {
		t.Skipf("no sleep(1) to be the other process: %v", err)
	}
	defer victim.Process.Kill()
	exited := make(chan error, 1)
	go func() { exited <- victim.Wait() }()
	runChild(t, "TestOtherProcessesUnreachable", "AZOTE_SECCOMP_VICTIM="+strconv.Itoa(victim.Process.Pid))
	select {
	case err := <-exited:
		t.Fatalf("the other process died: %v", err)
	default:
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(victim.Process.Pid) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(strings.TrimPrefix(l, "Max open files")); l != strings.TrimPrefix(l, "Max open files") && len(f) > 0 && f[0] == "1" {
			t.Fatalf("the other process was re-limited: %s", l)
		}
	}
}

// TestFallocatePunchHoleOnly: a confined card may only punch holes in its
// backing file (regression: fallocate was allowed with any mode on any
// descriptor, so a compromised card could preallocate past the end of its
// log, out of the size-based bound's sight, or grow its volume), and may
// set no limit of its own (the file size limit it set before holds).
func TestFallocatePunchHoleOnly(t *testing.T) {
	if os.Getenv("AZOTE_SECCOMP_CHILD") == "1" {
		// memfds stand for the backing file and the log: the filter
		// looks at the descriptor and mode only, and the child cannot
		// remove a temporary directory once confined.
		backing, err := unix.MemfdCreate("backing", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		log, err := unix.MemfdCreate("log", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		for _, fd := range []int{backing, log} {
			if err := unix.Ftruncate(fd, 1<<20); err != nil {
				t.Fatal(err)
			}
		}
		if err := Install(backing); err != nil {
			t.Fatal(err)
		}
		if err := unix.Fallocate(backing, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 64<<10); err != nil {
			t.Errorf("fallocate(backing, PUNCH_HOLE|KEEP_SIZE): %v", err)
		}
		for _, c := range []struct {
			name string
			fd   int
			mode uint32
		}{
			{"log, KEEP_SIZE", log, unix.FALLOC_FL_KEEP_SIZE},
			{"log, 0", log, 0},
			{"log, PUNCH_HOLE|KEEP_SIZE", log, unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE},
			{"backing, KEEP_SIZE", backing, unix.FALLOC_FL_KEEP_SIZE},
			{"backing, 0", backing, 0},
			{"backing, ZERO_RANGE", backing, unix.FALLOC_FL_ZERO_RANGE},
			{"backing, ZERO_RANGE|KEEP_SIZE", backing, unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE},
		} {
			if err := unix.Fallocate(c.fd, c.mode, 1<<20, 1<<20); !errors.Is(err, unix.EPERM) {
				t.Errorf("fallocate(%s) past the end: %v, want EPERM", c.name, err)
			}
		}
		var st unix.Stat_t
		if err := unix.Fstat(log, &st); err != nil || st.Blocks != 0 {
			t.Errorf("the log holds %d blocks (%v)", st.Blocks, err)
		}
		big := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
		if err := unix.Prlimit(0, unix.RLIMIT_FSIZE, &big, nil); !errors.Is(err, unix.EPERM) {
			t.Errorf("prlimit(self, FSIZE=infinity): %v, want EPERM", err)
		}
		if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &big); !errors.Is(err, unix.EPERM) {
			t.Errorf("setrlimit(FSIZE=infinity): %v, want EPERM", err)
		}
		return
	}
	runChild(t, "TestFallocatePunchHoleOnly")
}
