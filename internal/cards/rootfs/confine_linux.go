package rootfs

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// securebits (linux/securebits.h): root gets no capability at exec, no uid
// change grants or drops any, none can be kept or raised as ambient, and
// all of that is locked.
const lockedSecurebits = 1<<0 | 1<<1 | // SECBIT_NOROOT, _LOCKED
	1<<2 | 1<<3 | // SECBIT_NO_SETUID_FIXUP, _LOCKED
	1<<5 | // SECBIT_KEEP_CAPS_LOCKED (KEEP_CAPS off)
	1<<6 | 1<<7 // SECBIT_NO_CAP_AMBIENT_RAISE, _LOCKED

// confine gives up everything the helper's root holds in its namespace
// and execs the helper again (argv), so that every thread of the process
// that reads the archive starts from the confined credentials: they are
// per thread, and a Go process has several before main runs. It refuses
// to run outside a user namespace that maps its root to uid. Before it
// drops its capabilities it replaces its view of the host's mounts
// (isolateMounts). It returns only on error.
func confine(uid int, mke2fs string, argv []string) error {
	if err := checkMaps(uid); err != nil {
		return err
	}
	if !filepath.IsAbs(mke2fs) {
		return fmt.Errorf("mke2fs %q: not an absolute path", mke2fs)
	}
	if err := isolateMounts(mke2fs); err != nil {
		return fmt.Errorf("isolating the helper's mounts: %w", err)
	}
	runtime.LockOSThread() // the thread that confines itself is the one that execs
	if err := unix.Prctl(unix.PR_SET_SECUREBITS, lockedSecurebits, 0, 0, 0); err != nil {
		return fmt.Errorf("securebits: %w", err)
	}
	for c := 0; c < 64; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err == unix.EINVAL {
			break // past the kernel's last capability
		} else if err != nil {
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing the ambient set: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // mirrors struct __user_cap_data_struct[2]
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	err := syscall.Exec("/proc/self/exe", argv, []string{})
	return fmt.Errorf("exec after confining: %w", err)
}

// checkMaps refuses a user namespace other than the one Run makes.
func checkMaps(uid int) error {
	want := fmt.Sprintf("0 %d 1", uid)
	for _, f := range []string{"uid_map", "gid_map"} {
		b, err := os.ReadFile("/proc/self/" + f)
		if err != nil {
			return err
		}
		if m := strings.Join(strings.Fields(string(b)), " "); m != want || uid <= 0 {
			return fmt.Errorf("%s is %q, want %q: the helper runs only in the user namespace azoted makes for it", f, m, want)
		}
	}
	return nil
}

// confined finishes confinement after the exec (what is per process)
// and checks every thread in /proc. It returns the helper's credential
// lines and its uid_map.
func confined(uid int) (map[string]string, string, error) {
	if err := checkMaps(uid); err != nil {
		return nil, "", err
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return nil, "", fmt.Errorf("dumpable: %w", err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return nil, "", fmt.Errorf("core limit: %w", err)
	}
	return checkConfined()
}

// checkConfined reads every thread's status back: no capability in any
// set, no_new_privs, no supplementary group.
func checkConfined() (map[string]string, string, error) {
	tasks, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil || len(tasks) == 0 {
		return nil, "", fmt.Errorf("no task status: %v", err)
	}
	var first map[string]string
	for _, t := range tasks {
		st, err := readStatus(t)
		if err != nil {
			return nil, "", err
		}
		for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
			if v, err := strconv.ParseUint(st[k], 16, 64); err != nil || v != 0 {
				return st, "", fmt.Errorf("%s: %s is %q after dropping every capability", t, k, st[k])
			}
		}
		if st["NoNewPrivs"] != "1" || st["Groups"] != "" {
			return st, "", fmt.Errorf("%s: NoNewPrivs %q, Groups %q", t, st["NoNewPrivs"], st["Groups"])
		}
		if first == nil {
			first = st
		}
	}
	b, _ := os.ReadFile("/proc/self/uid_map")
	return first, strings.Join(strings.Fields(string(b)), " "), nil
}

// readStatus returns the credential lines of a /proc status file.
func readStatus(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	st := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "PPid", "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp":
			st[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return st, nil
}
