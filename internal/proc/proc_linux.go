package proc

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// StartTime reads field 22 (starttime) of /proc/<pid>/stat. Together
// with the pid it names a process uniquely across pid reuse. A zombie
// counts as gone.
func StartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// comm (field 2) may contain spaces and parentheses; fields after the
	// last ')' are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc: malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state); starttime is field 22.
	if len(fields) < 20 {
		return 0, fmt.Errorf("proc: short /proc/%d/stat", pid)
	}
	if fields[0] == "Z" || fields[0] == "X" {
		// Exited, waiting to be reaped by whoever is its parent now.
		return 0, fmt.Errorf("proc: process %d has exited", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// Cmdline is pid's command line with NULs as spaces, or "" when the
// process is gone or unreadable. It names a process for Same and
// KillMarked; it is not proof of identity on its own.
func Cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}

// Same tells whether pid is still the process that started at start and
// that its command line mentions marker.
func Same(pid int, start uint64, marker string) bool {
	st, err := StartTime(pid)
	if err != nil || st != start {
		return false
	}
	return strings.Contains(Cmdline(pid), marker)
}

// Watch signals when a process that is not our child exits, through a
// pidfd. Stop ends the watch early.
type Watch struct {
	mu     sync.Mutex
	cancel int // eventfd; closed by the watching goroutine
	closed bool
}

// WatchPID calls exited once when pid (not necessarily our child) exits.
func WatchPID(pid int, exited func()) (*Watch, error) {
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("proc: pidfd_open %d: %w", pid, err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(pfd)
		return nil, err
	}
	w := &Watch{cancel: efd}
	go func() {
		defer func() {
			w.mu.Lock()
			w.closed = true
			unix.Close(pfd)
			unix.Close(efd)
			w.mu.Unlock()
		}()
		fds := []unix.PollFd{{Fd: int32(pfd), Events: unix.POLLIN}, {Fd: int32(efd), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, -1)
			if err == unix.EINTR {
				continue
			}
			if fds[0].Revents != 0 {
				exited()
			}
			return
		}
	}()
	return w, nil
}

// Stop ends the watch without calling exited.
func (w *Watch) Stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		var one [8]byte
		one[0] = 1
		unix.Write(w.cancel, one[:])
	}
}

// KillMarked SIGKILLs every process whose command line contains marker
// and waits briefly for each to go.
func KillMarked(marker string) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if !strings.Contains(Cmdline(pid), marker) {
			continue
		}
		if unix.Kill(pid, unix.SIGKILL) == nil {
			n++
			for i := 0; i < 100; i++ {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || Cmdline(pid) == "" {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	return n
}

// PeerCred returns the credentials of the process at the other end of a
// unix socket, as the kernel recorded them at connect (SO_PEERCRED): the
// peer cannot forge them.
func PeerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, serr
}
