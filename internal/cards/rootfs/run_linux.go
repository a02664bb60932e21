package rootfs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/image"
)

// ErrRefused marks an archive the helper refused (what it holds, not a
// failure of the host); the message says why.
var ErrRefused = errors.New("rootfs: initramfs refused")

// DefaultUID is the host uid (and gid) the helper runs as unless azoted is
// told otherwise: not nobody (65534), which the cards run as, so that a
// compromised card cannot signal or trace the helper, and outside the
// ranges Debian and systemd hand out.
const DefaultUID = 65533

// Spec is one root filesystem to build.
type Spec struct {
	// Command runs the helper: the binary and the arguments that select
	// Main (`azote-card rootfs`). The binary is opened by the caller's
	// uid and executed through its descriptor, so it may sit in a
	// directory the helper's uid cannot search.
	Command []string
	Mke2fs  string // absolute path of mke2fs
	// UID is the host uid and gid the helper's root is mapped to. It
	// must not be 0 and should belong to nothing else on the host.
	UID int
	// Archive is the gzip-compressed newc initramfs.
	Archive *os.File
	// Out receives the filesystem; it already has its final size. Run
	// gives it to UID (mke2fs opens it again through /proc/self/fd).
	Out *os.File
	// WorkDir is an empty directory only the caller can reach; Run makes
	// the helper's tree in it. The caller removes it.
	WorkDir string
}

// Result is what the helper reports.
type Result struct {
	image.ExtractStats
	// Status holds the helper's credential lines from /proc/self/status
	// (Uid, Gid, Groups, Cap*, NoNewPrivs) as it saw them after
	// confining itself, and UIDMap its uid_map, for the record.
	Status map[string]string `json:"status"`
	UIDMap string            `json:"uid_map"`
}

// report is the one JSON line the helper writes on stdout.
type report struct {
	Result
	Refused string `json:"refused,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Namespaces the helper runs in: its own users (root mapped to Spec.UID),
// pids (it is init: whatever it leaves dies with it), no network, and
// mounts (it sees only programs, libraries and its own /proc:
// isolateMounts).
const cloneFlags = unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWNS

// Descriptors the helper inherits, by name.
const (
	fdArchive = 3 + iota
	fdOut
	fdWork
	fdBinary
)

// Run builds the filesystem in Spec.Out with the helper and waits for it.
// A refused archive gives an error wrapping ErrRefused. Cancelling ctx
// kills the helper (and with it everything in its pid namespace).
func Run(ctx context.Context, s Spec) (Result, error) {
	if s.UID <= 0 {
		return Result{}, fmt.Errorf("rootfs: helper uid %d: must be an unprivileged id", s.UID)
	}
	if len(s.Command) == 0 || !filepath.IsAbs(s.Mke2fs) {
		return Result{}, fmt.Errorf("rootfs: no helper command or mke2fs path")
	}
	tree := filepath.Join(s.WorkDir, "work")
	if err := os.Mkdir(tree, 0o700); err != nil {
		return Result{}, err
	}
	if err := os.Chown(tree, s.UID, s.UID); err != nil {
		return Result{}, err
	}
	work, err := os.OpenFile(tree, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return Result{}, err
	}
	defer work.Close()
	if err := s.Out.Chown(s.UID, s.UID); err != nil {
		return Result{}, err
	}
	bin, err := os.Open(s.Command[0])
	if err != nil {
		return Result{}, fmt.Errorf("rootfs: helper binary: %w", err)
	}
	defer bin.Close()
	args := append(append([]string(nil), s.Command[1:]...),
		"--archive-fd", strconv.Itoa(fdArchive), "--out-fd", strconv.Itoa(fdOut), "--work-fd", strconv.Itoa(fdWork),
		"--uid", strconv.Itoa(s.UID), "--mke2fs", s.Mke2fs)
	cmd := exec.CommandContext(ctx, fmt.Sprintf("/proc/self/fd/%d", fdBinary), args...)
	cmd.Args[0] = s.Command[0]
	cmd.ExtraFiles = []*os.File{s.Archive, s.Out, work, bin}
	cmd.Env = []string{}
	var stdout, stderr bounded
	stdout.max, stderr.max = 64<<10, 4<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  cloneFlags,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: s.UID, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: s.UID, Size: 1}},
		// setgroups stays allowed just long enough for the child to
		// drop azoted's supplementary groups (Groups: none) before it
		// execs; the helper then holds no CAP_SETGID to call it again.
		GidMappingsEnableSetgroups: true,
		Credential:                 &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}},
		Setsid:                     true,
		Pdeathsig:                  syscall.SIGKILL,
	}
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return Result{}, fmt.Errorf("building the root filesystem: %w", ctx.Err())
	}
	var rep report
	if err := json.Unmarshal(bytes.TrimSpace(stdout.b.Bytes()), &rep); err != nil {
		return Result{}, fmt.Errorf("rootfs helper: %v; no report (%v): %s", runErr, err, stderr.b.Bytes())
	}
	switch {
	case rep.Refused != "":
		return Result{}, fmt.Errorf("%w: %s", ErrRefused, rep.Refused)
	case rep.Error != "":
		return Result{}, fmt.Errorf("rootfs helper: %s %s", rep.Error, bytes.TrimSpace(stderr.b.Bytes()))
	case runErr != nil:
		return Result{}, fmt.Errorf("rootfs helper: %v: %s", runErr, stderr.b.Bytes())
	}
	return rep.Result, nil
}

// bounded keeps the first max bytes written to it and drops the rest.
type bounded struct {
	b   bytes.Buffer
	max int
}

func (w *bounded) Write(p []byte) (int, error) {
	if room := w.max - w.b.Len(); room > 0 {
		w.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
