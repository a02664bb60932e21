package image

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrArchive marks an initramfs that is malformed or that asks for
// something the extractor refuses (see ExtractInitramfs).
var ErrArchive = errors.New("image: initramfs refused")

// Bounds on what one archive may hold. An image author chooses every byte
// of the archive, so each is a limit on what the extraction may cost.
const (
	maxEntry     = 256 << 20 // bytes of one member
	maxTotal     = 2 << 30   // bytes of all members
	maxEntries   = 1 << 17   // members
	maxNameBytes = 16 << 20  // bytes of all names (kept to refuse duplicates)
	maxName      = 4096      // bytes of one name, NUL included (PATH_MAX)
	maxLink      = 4095      // bytes of one symlink target
)

// ExtractStats says what an extraction wrote and what it skipped.
type ExtractStats struct {
	Entries        int   `json:"entries"`
	Bytes          int64 `json:"bytes"`
	SkippedDevices int   `json:"skipped_devices"`
}

// resolveInTree confines every lookup to the tree: no symlink is followed
// (an archive's own symlinks are only ever created, never walked), no "..",
// no absolute path, no mount crossing.
const resolveInTree = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// ExtractInitramfs unpacks a gzip-compressed newc cpio archive into the
// empty directory root. Every archive is treated as hostile:
//
//   - a name must be relative, clean and free of ".." ("./" is allowed in
//     front); "." itself is skipped;
//   - a name may appear once (directories included), and its parent must be
//     a directory the archive created before it;
//   - every entry is created relative to its parent's descriptor, which is
//     opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), and files
//     with O_CREAT|O_EXCL|O_NOFOLLOW: nothing outside root is ever reached,
//     whatever the archive's symlinks point at;
//   - only directories, regular files and symlinks are created. Character
//     and block devices are skipped and counted (azote's own images carry
//     dev/console and dev/null for the kernel's early console; a root
//     volume gets /dev from devtmpfs); FIFOs, sockets and hard links are
//     refused;
//   - setuid, setgid and sticky bits are refused. A directory is given at
//     least rwx and a file at least r for its owner (root in the guest,
//     who has those rights anyway), so an unprivileged extractor and
//     mke2fs can fill and read the tree;
//   - size, count and name bytes are bounded (see the limits above).
//
// Errors about the archive's content wrap ErrArchive.
func ExtractInitramfs(archive io.Reader, root *os.File) (ExtractStats, error) {
	zr, err := gzip.NewReader(bufio.NewReader(archive))
	if err != nil {
		return ExtractStats{}, fmt.Errorf("%w: %v", ErrArchive, err)
	}
	x := &extractor{r: bufio.NewReader(zr), root: int(root.Fd()), seen: map[string]bool{}}
	defer runtime.KeepAlive(root) // x.root is its descriptor
	for {
		done, err := x.next()
		if err != nil || done {
			return x.st, err
		}
	}
}

type extractor struct {
	r         *bufio.Reader
	pos       int64
	root      int
	seen      map[string]bool
	nameBytes int
	st        ExtractStats
}

func (x *extractor) read(b []byte) error {
	n, err := io.ReadFull(x.r, b)
	x.pos += int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (x *extractor) skipPad() error {
	if p := (4 - x.pos%4) % 4; p > 0 {
		if err := x.read(make([]byte, p)); err != nil {
			return fmt.Errorf("%w: padding: %v", ErrArchive, err)
		}
	}
	return nil
}

// newc header fields, in order after the magic.
const (
	fIno = iota
	fMode
	fUID
	fGID
	fNlink
	fMtime
	fSize
	fDevMajor
	fDevMinor
	fRdevMajor
	fRdevMinor
	fNameSize
	fCheck
	nFields
)

// next reads and creates one entry; done is true after the trailer.
func (x *extractor) next() (done bool, err error) {
	hdr := make([]byte, 6+8*nFields)
	if err := x.read(hdr); err != nil {
		return false, fmt.Errorf("%w: header: %v", ErrArchive, err)
	}
	if string(hdr[:6]) != "070701" {
		return false, fmt.Errorf("%w: bad magic %q (only newc archives are read)", ErrArchive, hdr[:6])
	}
	var f [nFields]uint64
	for i := range f {
		v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
		if err != nil {
			return false, fmt.Errorf("%w: header field %d: %q", ErrArchive, i, hdr[6+8*i:14+8*i])
		}
		f[i] = v
	}
	if f[fNameSize] < 2 || f[fNameSize] > maxName {
		return false, fmt.Errorf("%w: name of %d bytes", ErrArchive, f[fNameSize])
	}
	nameB := make([]byte, f[fNameSize])
	if err := x.read(nameB); err != nil {
		return false, fmt.Errorf("%w: name: %v", ErrArchive, err)
	}
	if nameB[len(nameB)-1] != 0 || strings.IndexByte(string(nameB[:len(nameB)-1]), 0) >= 0 {
		return false, fmt.Errorf("%w: name %q is not one NUL-terminated string", ErrArchive, nameB)
	}
	name := string(nameB[:len(nameB)-1])
	if err := x.skipPad(); err != nil {
		return false, err
	}
	if name == "TRAILER!!!" {
		return true, nil
	}
	size := int64(f[fSize])
	if x.st.Entries++; x.st.Entries > maxEntries {
		return false, fmt.Errorf("%w: more than %d entries", ErrArchive, maxEntries)
	}
	if size > maxEntry {
		return false, fmt.Errorf("%w: %q has %d bytes (limit %d)", ErrArchive, name, size, maxEntry)
	}
	if x.st.Bytes += size; x.st.Bytes > maxTotal {
		return false, fmt.Errorf("%w: over %d bytes", ErrArchive, maxTotal)
	}
	if err := x.create(name, uint32(f[fMode]), f[fNlink], size); err != nil {
		return false, err
	}
	return false, x.skipPad()
}

// cleanName returns name relative to the tree root, "" for the root
// itself, or an error for a name that could leave the tree.
func cleanName(name string) (string, error) {
	n := strings.TrimPrefix(name, "./")
	if n == "." || n == "" {
		return "", nil
	}
	if path.Clean(n) != n || path.IsAbs(n) || n == ".." || strings.HasPrefix(n, "../") {
		return "", fmt.Errorf("%w: unsafe name %q (absolute, not clean, or with ..)", ErrArchive, name)
	}
	for _, c := range strings.Split(n, "/") {
		if len(c) > 255 {
			return "", fmt.Errorf("%w: name %q has a component over 255 bytes", ErrArchive, name)
		}
	}
	return n, nil
}

func (x *extractor) create(name string, mode uint32, nlink uint64, size int64) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	typ, perm := mode&unix.S_IFMT, mode&0o7777
	if perm&^0o777 != 0 {
		return fmt.Errorf("%w: %q has mode %o: setuid, setgid and sticky bits are not allowed", ErrArchive, name, perm)
	}
	if n == "" {
		// The root itself: it exists already (its mode stays the
		// extractor's).
		if typ != unix.S_IFDIR || size != 0 {
			return fmt.Errorf("%w: %q is the root and must be a directory", ErrArchive, name)
		}
		return nil
	}
	if x.seen[n] {
		return fmt.Errorf("%w: %q appears twice (duplicate names are refused)", ErrArchive, name)
	}
	if x.nameBytes += len(n); x.nameBytes > maxNameBytes {
		return fmt.Errorf("%w: names over %d bytes in all", ErrArchive, maxNameBytes)
	}
	x.seen[n] = true
	switch typ {
	case unix.S_IFDIR, unix.S_IFREG, unix.S_IFLNK:
	case unix.S_IFCHR, unix.S_IFBLK:
		if size != 0 {
			return fmt.Errorf("%w: device %q has data", ErrArchive, name)
		}
		x.st.SkippedDevices++
		return nil
	case unix.S_IFIFO, unix.S_IFSOCK:
		return fmt.Errorf("%w: %q is a FIFO or socket, which a root filesystem from an image may not hold", ErrArchive, name)
	default:
		return fmt.Errorf("%w: %q has unknown type %o", ErrArchive, name, typ)
	}
	if typ == unix.S_IFREG && nlink > 1 {
		return fmt.Errorf("%w: %q is a hard link (nlink %d), which is not supported", ErrArchive, name, nlink)
	}
	dir, base := path.Split(n)
	if dir == "" {
		dir = "."
	}
	parent, err := x.openat(x.root, dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("%w: parent of %q: %v", ErrArchive, name, describe(err))
	}
	defer unix.Close(parent)
	switch typ {
	case unix.S_IFDIR:
		if size != 0 {
			return fmt.Errorf("%w: directory %q has data", ErrArchive, name)
		}
		if err := unix.Mkdirat(parent, base, 0o700); err != nil {
			return fmt.Errorf("creating %q: %w", name, err)
		}
		fd, err := x.openat(parent, base, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return fmt.Errorf("opening %q: %w", name, err)
		}
		defer unix.Close(fd)
		return chmod(fd, name, perm|0o700)
	case unix.S_IFREG:
		fd, err := x.openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("creating %q: %w", name, err)
		}
		f := os.NewFile(uintptr(fd), name)
		defer f.Close()
		if _, err := io.CopyN(f, x.r, size); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: data of %q: %v", ErrArchive, name, io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("writing %q: %w", name, err)
		}
		x.pos += size
		return chmod(fd, name, perm|0o400)
	default: // unix.S_IFLNK
		if size == 0 || size > maxLink {
			return fmt.Errorf("%w: symlink %q has a target of %d bytes", ErrArchive, name, size)
		}
		target := make([]byte, size)
		if err := x.read(target); err != nil {
			return fmt.Errorf("%w: target of %q: %v", ErrArchive, name, err)
		}
		if strings.IndexByte(string(target), 0) >= 0 {
			return fmt.Errorf("%w: symlink %q has a NUL in its target", ErrArchive, name)
		}
		// The target is stored, never followed: every later lookup
		// refuses symlinks.
		if err := unix.Symlinkat(string(target), parent, base); err != nil {
			return fmt.Errorf("creating %q: %w", name, err)
		}
		return nil
	}
}

func (x *extractor) openat(dir int, name string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat2(dir, name, &unix.OpenHow{
			Flags:   uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW),
			Mode:    uint64(mode),
			Resolve: resolveInTree,
		})
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		return fd, err
	}
}

func chmod(fd int, name string, perm uint32) error {
	if err := unix.Fchmod(fd, perm); err != nil {
		return fmt.Errorf("chmod %q: %w", name, err)
	}
	return nil
}

// describe turns what openat2 answers for a parent into words.
func describe(err error) string {
	switch {
	case errors.Is(err, unix.ELOOP):
		return "it is or passes through a symlink"
	case errors.Is(err, unix.ENOTDIR):
		return "it is not a directory"
	case errors.Is(err, unix.ENOENT):
		return "the archive did not create it before"
	case errors.Is(err, unix.EXDEV):
		return "it leaves the tree"
	case errors.Is(err, unix.ENOSYS):
		return "openat2 is not available (Linux 5.6 or later is needed)"
	}
	return err.Error()
}
