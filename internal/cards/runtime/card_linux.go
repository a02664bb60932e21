package runtime

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/cards/seccomp"
)

// Card is one card process's view of what azoted donated.
type Card struct {
	fds  cardproto.FDs
	Log  *slog.Logger
	kind string
}

// New registers the descriptor flag (cardproto.FDFlag) on fs; the card
// parses fs, then asks for its descriptors by name.
func New(kind string, fs *flag.FlagSet) *Card {
	c := &Card{fds: cardproto.FDs{}, kind: kind,
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil)).With("card", kind)}
	fs.Var(c.fds, cardproto.FDFlag, "an inherited descriptor, NAME=FD (repeatable; written by azoted)")
	return c
}

// Has says whether a descriptor was donated under name.
func (c *Card) Has(name string) bool { _, ok := c.fds[name]; return ok }

// FD is the number of the descriptor donated under name.
func (c *Card) FD(name string) (int, error) {
	fd, ok := c.fds[name]
	if !ok {
		return -1, fmt.Errorf("no %q descriptor was donated", name)
	}
	return fd, nil
}

// File takes the descriptor donated under name.
func (c *Card) File(name string) (*os.File, error) {
	fd, err := c.FD(name)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("%s descriptor %d: %w", name, fd, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// Listener takes the listening unix socket donated under name. azoted
// binds the sockets a card serves and hands them over, so the card needs
// no way into the directory they sit in.
func (c *Card) Listener(name string) (*net.UnixListener, error) {
	f, err := c.File(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("%s is not a unix listening socket", name)
	}
	return ul, nil
}

// DropPrivileges switches every thread to uid/gid id with no
// supplementary groups, for good (real, effective and saved ids).
func DropPrivileges(id int) error {
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(id, id, id); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := syscall.Setresuid(id, id, id); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	if os.Geteuid() != id {
		return fmt.Errorf("still uid %d after dropping to %d", os.Geteuid(), id)
	}
	return nil
}

// LimitFileSize keeps every file the card writes (its backing file, its
// log) from growing past the larger of the backing file's size and
// logRoom: a compromised card writing past the end of its volume gets
// EFBIG (SIGXFSZ is ignored), so the volume holds no more than the quota
// counted. Only the hard limit binds: the card cannot raise it once it
// gave up root, and the seccomp filter lets it set no limit at all.
func LimitFileSize(backing *os.File, logRoom int64) error {
	var size int64
	if backing != nil {
		st, err := backing.Stat()
		if err != nil {
			return fmt.Errorf("backing fd: %w", err)
		}
		size = st.Size()
	}
	signal.Ignore(syscall.SIGXFSZ)
	lim := uint64(max(size, logRoom, 0))
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: lim, Max: lim}); err != nil {
		return fmt.Errorf("file size limit: %w", err)
	}
	return nil
}

// Confine is the last step before a long-running card serves: it gives
// up root for uid (when uid >= 0), bounds the files it writes to the
// backing file's size or logRoom, and installs the seccomp filter, under
// which the backing file (fallocFD; a card without one passes nil) is
// the one file it may punch holes in. From here on the card only serves
// what it holds: it opens no new sockets or files and starts no
// processes.
func Confine(uid int, backing *os.File, logRoom int64) error {
	if uid >= 0 {
		if err := DropPrivileges(uid); err != nil {
			return err
		}
	}
	if err := LimitFileSize(backing, logRoom); err != nil {
		return err
	}
	fd := -1
	if backing != nil {
		fd = int(backing.Fd())
	}
	return seccomp.Install(fd)
}
