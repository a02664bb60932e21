// Package seccomp confines a card after start-up to the system calls a card
// needs: I/O on the descriptors it already holds, memory mapping of guest
// memory, eventfds, and the Go runtime's own needs. Everything else fails
// with EPERM; in particular socket(2), so a card can open no network
// connection, and openat(2), so it can reach no file it was not handed.
package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// allowed lists the system calls a card may make after start-up (amd64).
var allowed = []uintptr{
	// I/O on held descriptors.
	unix.SYS_READ, unix.SYS_WRITE, unix.SYS_READV, unix.SYS_WRITEV,
	unix.SYS_PREAD64, unix.SYS_PWRITE64, unix.SYS_PREADV, unix.SYS_PWRITEV,
	unix.SYS_CLOSE, unix.SYS_FSTAT, unix.SYS_NEWFSTATAT, unix.SYS_LSEEK, unix.SYS_FCNTL,
	unix.SYS_FDATASYNC, unix.SYS_FSYNC, unix.SYS_FALLOCATE,
	// The vhost-user socket and the metrics socket (already bound).
	unix.SYS_ACCEPT, unix.SYS_ACCEPT4, unix.SYS_RECVMSG, unix.SYS_SENDMSG,
	unix.SYS_RECVFROM, unix.SYS_SENDTO, unix.SYS_GETSOCKOPT, unix.SYS_SHUTDOWN,
	unix.SYS_GETSOCKNAME, unix.SYS_GETPEERNAME,
	// Guest memory, eventfds, polling.
	unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MPROTECT, unix.SYS_MADVISE, unix.SYS_BRK,
	unix.SYS_EVENTFD2, unix.SYS_POLL, unix.SYS_PPOLL, unix.SYS_PIPE2,
	unix.SYS_EPOLL_CREATE1, unix.SYS_EPOLL_CTL, unix.SYS_EPOLL_WAIT, unix.SYS_EPOLL_PWAIT,
	// The Go runtime: threads, signals, time, scheduling.
	unix.SYS_CLONE, unix.SYS_FUTEX, unix.SYS_SET_ROBUST_LIST, unix.SYS_RSEQ,
	unix.SYS_RT_SIGACTION, unix.SYS_RT_SIGPROCMASK, unix.SYS_RT_SIGRETURN, unix.SYS_SIGALTSTACK,
	unix.SYS_GETPID, unix.SYS_GETTID, unix.SYS_TGKILL, unix.SYS_TKILL,
	unix.SYS_NANOSLEEP, unix.SYS_CLOCK_GETTIME, unix.SYS_CLOCK_NANOSLEEP, unix.SYS_GETTIMEOFDAY,
	unix.SYS_SCHED_YIELD, unix.SYS_SCHED_GETAFFINITY, unix.SYS_GETRANDOM, unix.SYS_PRLIMIT64,
	unix.SYS_RESTART_SYSCALL, unix.SYS_EXIT, unix.SYS_EXIT_GROUP, unix.SYS_MINCORE,
	unix.SYS_MEMBARRIER,
}

// BPF: struct seccomp_data is { int nr; __u32 arch; __u64 ip; __u64 args[6] }.
const (
	offNR          = 0
	offArch        = 4
	auditArchX8664 = 0xc000003e
	retAllow       = 0x7fff0000
	retKillProcess = 0x80000000
	retErrno       = 0x00050000
)

func program() []unix.SockFilter {
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	jeq := func(k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: jt, Jf: jf, K: k}
	}
	p := []unix.SockFilter{
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offArch),
		jeq(auditArchX8664, 1, 0),
		stmt(unix.BPF_RET|unix.BPF_K, retKillProcess),
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offNR),
	}
	for _, nr := range allowed {
		p = append(p, jeq(uint32(nr), 0, 1), stmt(unix.BPF_RET|unix.BPF_K, retAllow))
	}
	return append(p, stmt(unix.BPF_RET|unix.BPF_K, retErrno|uint32(unix.EPERM)))
}

// Install applies the allow-list to every thread of the process. It cannot
// be undone.
func Install() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seccomp: no_new_privs: %w", err)
	}
	return install(program())
}
