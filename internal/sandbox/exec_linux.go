package sandbox

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Exec replaces the calling process (which must be root) with argv[0]
// running as uid, with gid uid and the supplementary groups given (none,
// or the group of /dev/kvm), no capabilities in any set, an empty bounding
// set and no_new_privs. It returns only on failure.
//
// Capabilities, the bounding set and no_new_privs belong to a thread: the
// whole sequence runs on one locked thread, which is the one that calls
// execve.
func Exec(uid int, groups []int, argv []string, env []string) error {
	runtime.LockOSThread()
	// Stays locked: the process image is replaced or exits on error.
	if uid <= 0 {
		return fmt.Errorf("sandbox: refusing to run as uid %d", uid)
	}
	last := 40
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("sandbox: dropping capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("sandbox: clearing ambient capabilities: %w", err)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("sandbox: setgroups: %w", err)
	}
	if err := syscall.Setresgid(uid, uid, uid); err != nil {
		return fmt.Errorf("sandbox: setresgid: %w", err)
	}
	// Leaving uid 0 clears the permitted and effective sets (no
	// SECBIT_KEEP_CAPS); the inheritable set is cleared below.
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("sandbox: setresuid: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var none [2]unix.CapUserData
	if err := unix.Capset(&hdr, &none[0]); err != nil {
		return fmt.Errorf("sandbox: clearing capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("sandbox: no_new_privs: %w", err)
	}
	var got [2]unix.CapUserData
	if err := unix.Capget(&hdr, &got[0]); err != nil {
		return fmt.Errorf("sandbox: capget: %w", err)
	}
	if got != none || os.Geteuid() != uid || os.Getegid() != uid {
		return fmt.Errorf("sandbox: still privileged after dropping to %d (capabilities %+v)", uid, got)
	}
	return syscall.Exec(argv[0], argv, env)
}

// KVMGroup is the group that owns /dev/kvm, which an engine using KVM
// needs as a supplementary group; -1 when there is no /dev/kvm.
func KVMGroup() int {
	var st unix.Stat_t
	if err := unix.Stat("/dev/kvm", &st); err != nil {
		return -1
	}
	return int(st.Gid)
}
