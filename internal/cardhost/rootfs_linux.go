package cardhost

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
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cards/cardproto"
)

// ErrRefused marks an archive the rootfs card refused (what it holds, not
// a failure of the host); the message says why.
var ErrRefused = errors.New("rootfs: initramfs refused")

// DefaultRootfsUID is the host uid (and gid) the rootfs card runs as
// unless azoted is told otherwise: outside the range the long-running
// cards take their uids from, so that a compromised card cannot signal or
// trace it, and outside the ranges Debian and systemd hand out.
const DefaultRootfsUID = 65533

// RootfsSpec is one root volume to fill (the rootfs card: package
// internal/cards/rootfs).
type RootfsSpec struct {
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
	// Out is the volume file; it already has its final size. The card
	// writes it through this descriptor only (it stays root's).
	Out *os.File
	// Key is the volume's data key (in locked memory), nil for a
	// plaintext volume. It reaches the card over a private socketpair,
	// never argv, the environment or a file.
	Key []byte
	// WorkDir is an empty directory only the caller can reach; RunRootfs
	// makes the card's tree in it. The caller removes it. The plaintext
	// filesystem never has a name in it (the card makes it O_TMPFILE).
	WorkDir string
}

// Namespaces the helper runs in: its own users (root mapped to Spec.UID),
// pids (it is init: whatever it leaves dies with it), no network, and
// mounts (it sees only programs, libraries and its own /proc:
// isolateMounts).
const cloneFlags = unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWNS

// RunRootfs fills Spec.Out with the rootfs card and waits for it. A
// refused archive gives an error wrapping ErrRefused. Cancelling ctx
// kills the card (and with it everything in its pid namespace); what it
// wrote of the volume is the caller's to remove.
func RunRootfs(ctx context.Context, s RootfsSpec) (cardproto.RootfsResult, error) {
	type Result = cardproto.RootfsResult
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
	bin, err := os.Open(s.Command[0])
	if err != nil {
		return Result{}, fmt.Errorf("rootfs: helper binary: %w", err)
	}
	defer bin.Close()
	ours, theirs, err := socketpair()
	if err != nil {
		return Result{}, err
	}
	defer ours.Close()
	defer theirs.Close()
	args := append(append([]string(nil), s.Command[1:]...), "--uid", strconv.Itoa(s.UID), "--mke2fs", s.Mke2fs)
	cmd := exec.CommandContext(ctx, s.Command[0], args...)
	var d Donation
	d.Donate(cardproto.FDArchive, s.Archive)
	d.Donate(cardproto.FDOut, s.Out)
	d.Donate(cardproto.FDWork, work)
	d.Donate(cardproto.FDChannel, theirs)
	d.Donate(cardproto.FDBinary, bin)
	d.Apply(cmd)
	cmd.Path = d.ProcPath(cardproto.FDBinary)
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
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("rootfs: starting the card: %w", err)
	}
	theirs.Close()
	// The card reads its key once confined; a card that died first
	// leaves the write unread in a buffer that is gone with the pair.
	ours.SetWriteDeadline(time.Now().Add(10 * time.Second))
	sendErr := cardproto.SendRootfs(ours, s.Key)
	runErr := cmd.Wait()
	if ctx.Err() != nil {
		return Result{}, fmt.Errorf("building the root filesystem: %w", ctx.Err())
	}
	var rep cardproto.RootfsReport
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
	case sendErr != nil:
		return Result{}, fmt.Errorf("rootfs helper: sending its key: %w", sendErr)
	case rep.Encrypted != (s.Key != nil):
		return Result{}, fmt.Errorf("rootfs helper: reported encrypted=%v for a key of %d bytes", rep.Encrypted, len(s.Key))
	}
	return rep.RootfsResult, nil
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

// socketpair makes the private channel: ours, and the end the card
// inherits.
func socketpair() (ours, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "channel"), os.NewFile(uintptr(fds[1]), "channel"), nil
}
