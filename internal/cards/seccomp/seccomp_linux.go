// Package seccomp confines a card after start-up to the system calls a card
// needs: I/O on the descriptors it already holds, memory mapping of guest
// memory, eventfds, and the Go runtime's own needs. Everything else fails
// with EPERM; in particular socket(2), so a card can open no network
// connection, and openat(2), so it can reach no file it was not handed.
//
// The calls that name another process are allowed on this process only:
// signals (kill, tgkill) go to its own thread group, prlimit64 reads its
// own limits (and sets none), and clone makes threads, never processes. A
// compromised card can therefore neither kill nor re-limit another card,
// whatever uid they run as.
//
// fallocate(2) is allowed only to punch holes (FALLOC_FL_PUNCH_HOLE with
// FALLOC_FL_KEEP_SIZE, how a card serves DISCARD and WRITE_ZEROES) and
// only on the descriptor the card names at Install, its backing file:
// no call of it can then allocate a block or grow a file, so a card can
// neither preallocate past the end of its log, where a bound by size
// would not see the blocks, nor so grow its volume (writes past the end
// are held back by the file size limit the card sets before confining
// itself, which prlimit64 cannot raise).
package seccomp

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// allowed lists the system calls a card may make after start-up (amd64)
// whatever their arguments. The calls whose arguments are checked are in
// program.
var allowed = []uintptr{
	// I/O on held descriptors.
	unix.SYS_READ, unix.SYS_WRITE, unix.SYS_READV, unix.SYS_WRITEV,
	unix.SYS_PREAD64, unix.SYS_PWRITE64, unix.SYS_PREADV, unix.SYS_PWRITEV,
	unix.SYS_CLOSE, unix.SYS_FSTAT, unix.SYS_NEWFSTATAT, unix.SYS_LSEEK,
	unix.SYS_FDATASYNC, unix.SYS_FSYNC,
	// The vhost-user socket and the metrics socket (already bound).
	unix.SYS_ACCEPT, unix.SYS_ACCEPT4, unix.SYS_RECVMSG, unix.SYS_SENDMSG,
	unix.SYS_RECVFROM, unix.SYS_SENDTO, unix.SYS_GETSOCKOPT, unix.SYS_SHUTDOWN,
	unix.SYS_GETSOCKNAME, unix.SYS_GETPEERNAME,
	// Guest memory, eventfds, polling.
	unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MPROTECT, unix.SYS_MADVISE, unix.SYS_BRK,
	// Locked memory for keys that arrive while the card serves (a net
	// card's VPC keys, rotated); bounded by RLIMIT_MEMLOCK.
	unix.SYS_MLOCK, unix.SYS_MUNLOCK,
	unix.SYS_EVENTFD2, unix.SYS_POLL, unix.SYS_PPOLL, unix.SYS_PIPE2,
	unix.SYS_EPOLL_CREATE1, unix.SYS_EPOLL_CTL, unix.SYS_EPOLL_WAIT, unix.SYS_EPOLL_PWAIT,
	// The Go runtime: threads, signals, time, scheduling.
	unix.SYS_FUTEX, unix.SYS_SET_ROBUST_LIST, unix.SYS_RSEQ,
	unix.SYS_RT_SIGACTION, unix.SYS_RT_SIGPROCMASK, unix.SYS_RT_SIGRETURN, unix.SYS_SIGALTSTACK,
	unix.SYS_GETPID, unix.SYS_GETTID,
	unix.SYS_NANOSLEEP, unix.SYS_CLOCK_GETTIME, unix.SYS_CLOCK_NANOSLEEP, unix.SYS_GETTIMEOFDAY,
	unix.SYS_SCHED_YIELD, unix.SYS_SCHED_GETAFFINITY, unix.SYS_GETRANDOM,
	unix.SYS_RESTART_SYSCALL, unix.SYS_EXIT, unix.SYS_EXIT_GROUP, unix.SYS_MINCORE,
	unix.SYS_MEMBARRIER,
}

// fcntlCmds are the fcntl commands a card (its Go runtime, its net and os
// packages, and the vhost-user backend checking an inflight memfd's seals)
// uses on descriptors it holds. Not F_SETOWN/F_SETSIG (which aim SIGIO at
// another process), leases, locks, notifications or adding seals.
var fcntlCmds = []uint32{unix.F_GETFD, unix.F_SETFD, unix.F_GETFL, unix.F_SETFL, unix.F_DUPFD_CLOEXEC, unix.F_GET_SEALS}

// threadFlags are the clone flags a thread may be made with: the Go
// runtime's (runtime.cloneFlags) and the thread-id and TLS conveniences.
// CLONE_THREAD is required: without it clone makes a process, which could
// outlive the card's limits or be used to signal as someone else.
const (
	threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
		unix.CLONE_SYSVSEM | unix.CLONE_THREAD | unix.CLONE_SETTLS |
		unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID | unix.CLONE_CHILD_SETTID
	threadRequired = unix.CLONE_THREAD | unix.CLONE_VM | unix.CLONE_SIGHAND
)

// BPF: struct seccomp_data is { int nr; __u32 arch; __u64 ip; __u64 args[6] }
// (little-endian: the low half of args[i] is at 16+8i).
const (
	offNR          = 0
	offArch        = 4
	auditArchX8664 = 0xc000003e
	retAllow       = 0x7fff0000
	retKillProcess = 0x80000000
	retErrno       = 0x00050000
)

func argLow(i int) uint32 { return uint32(16 + 8*i) }

func argHigh(i int) uint32 { return argLow(i) + 4 }

// punchHole is the one fallocate mode a card uses.
const punchHole = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE

// program builds the filter for the process whose pid is self and whose
// backing file is the descriptor fallocFD (no fallocate at all if it is
// negative). The pid is compiled in: a filter cannot ask who is calling,
// and a card never forks. The pid arguments of kill, tgkill and
// prlimit64 are pid_t, which the kernel truncates to 32 bits, as it does
// clone's flags, fcntl's command and fallocate's descriptor and mode
// (ints), so only the low halves are compared.
func program(self uint32, fallocFD int) []unix.SockFilter {
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	jeq := func(k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: jt, Jf: jf, K: k}
	}
	jset := func(k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, Jt: jt, Jf: jf, K: k}
	}
	ld := func(off uint32) unix.SockFilter { return stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off) }
	and := func(k uint32) unix.SockFilter { return stmt(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, k) }
	allow := stmt(unix.BPF_RET|unix.BPF_K, retAllow)
	deny := stmt(unix.BPF_RET|unix.BPF_K, retErrno|uint32(unix.EPERM))
	enosys := stmt(unix.BPF_RET|unix.BPF_K, retErrno|uint32(unix.ENOSYS))

	p := []unix.SockFilter{
		ld(offArch),
		jeq(auditArchX8664, 1, 0),
		stmt(unix.BPF_RET|unix.BPF_K, retKillProcess),
		ld(offNR),
	}
	for _, nr := range allowed {
		p = append(p, jeq(uint32(nr), 0, 1), allow)
	}
	// Each checked call is a block that starts with "is it this call?"
	// (skipping the block when not) and ends in a return, so it leaves
	// the accumulator to the next block only when the number differs.
	block := func(nr uintptr, body ...unix.SockFilter) {
		p = append(p, jeq(uint32(nr), 0, uint8(len(body))))
		p = append(p, body...)
	}
	// kill(pid, sig): itself only (the runtime's raiseproc).
	block(unix.SYS_KILL, ld(argLow(0)), jeq(self, 0, 1), allow, deny)
	// tgkill(tgid, tid, sig): its own thread group only (the runtime's
	// preemption and signal forwarding). tkill names a bare thread id,
	// which may be anyone's: refused.
	block(unix.SYS_TGKILL, ld(argLow(0)), jeq(self, 0, 1), allow, deny)
	// prlimit64(pid, resource, new, old): 0 (itself) or its own pid, and
	// reading only (new is NULL), so the limits the card set before it
	// was confined (RLIMIT_FSIZE) hold even for a card left running as
	// root.
	block(unix.SYS_PRLIMIT64,
		ld(argLow(0)), jeq(0, 1, 0), jeq(self, 0, 5),
		ld(argLow(2)), jeq(0, 0, 3),
		ld(argHigh(2)), jeq(0, 0, 1),
		allow, deny)
	// clone(flags, …): threads only.
	block(unix.SYS_CLONE,
		ld(argLow(0)),
		jset(^uint32(threadFlags), 3, 0),
		and(threadRequired),
		jeq(threadRequired, 0, 1),
		allow, deny)
	// clone3 passes its flags in memory, out of a filter's reach: ENOSYS,
	// so that a caller falls back to clone.
	block(unix.SYS_CLONE3, enosys)
	// fcntl(fd, cmd, …): the commands in fcntlCmds.
	body := []unix.SockFilter{ld(argLow(1))}
	for i, cmd := range fcntlCmds {
		body = append(body, jeq(cmd, uint8(len(fcntlCmds)-i), 0))
	}
	body = append(body, deny, allow)
	block(unix.SYS_FCNTL, body...)
	// fallocate(fd, mode, …): punching holes in the backing file only.
	if fallocFD >= 0 {
		block(unix.SYS_FALLOCATE,
			ld(argLow(0)), jeq(uint32(fallocFD), 0, 3),
			ld(argLow(1)), jeq(punchHole, 0, 1),
			allow, deny)
	}
	return append(p, deny)
}

// Install applies the filter to every thread of the process. fallocFD is
// the descriptor of the card's backing file, the only one it may punch
// holes in (-1: none). It cannot be undone.
func Install(fallocFD int) error {
	// no_new_privs is per thread, and the kernel requires it of the
	// thread that installs the filter: both calls must run on one
	// thread, or a goroutine moved between them gets EACCES (seen as
	// "seccomp: install: permission denied" in a fill card now and then).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seccomp: no_new_privs: %w", err)
	}
	return install(program(uint32(os.Getpid()), fallocFD))
}
