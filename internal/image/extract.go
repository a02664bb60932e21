package image

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrArchive marks a malformed initramfs.
var ErrArchive = errors.New("image: malformed initramfs")

// maxEntry bounds one archive member and maxTotal the whole tree.
const (
	maxEntry = 256 << 20
	maxTotal = 2 << 30
)

// ExtractInitramfs unpacks a gzip-compressed newc cpio archive into dir,
// which must exist and be empty. Names are confined to dir: absolute
// names, "..", and paths through symlinks are refused.
func ExtractInitramfs(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrArchive, err)
	}
	r := bufio.NewReader(zr)
	var total int64
	var pos int64
	read := func(b []byte) error {
		n, err := io.ReadFull(r, b)
		pos += int64(n)
		return err
	}
	skipPad := func() error {
		if p := (4 - pos%4) % 4; p > 0 {
			return read(make([]byte, p))
		}
		return nil
	}
	hdr := make([]byte, 110)
	for {
		if err := read(hdr); err != nil {
			return fmt.Errorf("%w: header: %v", ErrArchive, err)
		}
		if string(hdr[:6]) != "070701" {
			return fmt.Errorf("%w: bad magic %q", ErrArchive, hdr[:6])
		}
		field := func(i int) (uint64, error) {
			return strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
		}
		mode, err1 := field(1)
		size, err2 := field(6)
		rmaj, err3 := field(9)
		rmin, err4 := field(10)
		nameLen, err5 := field(11)
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil || nameLen == 0 || nameLen > 4096 || size > maxEntry {
			return fmt.Errorf("%w: header fields", ErrArchive)
		}
		nameB := make([]byte, nameLen)
		if err := read(nameB); err != nil {
			return fmt.Errorf("%w: name: %v", ErrArchive, err)
		}
		name := strings.TrimRight(string(nameB), "\x00")
		if err := skipPad(); err != nil {
			return err
		}
		if name == "TRAILER!!!" {
			return nil
		}
		data := make([]byte, size)
		if err := read(data); err != nil {
			return fmt.Errorf("%w: data of %s: %v", ErrArchive, name, err)
		}
		if err := skipPad(); err != nil {
			return err
		}
		total += int64(size)
		if total > maxTotal {
			return fmt.Errorf("%w: over %d bytes", ErrArchive, maxTotal)
		}
		clean := filepath.Clean("/" + name)
		if clean == "/" || name != strings.TrimPrefix(clean, "/") && name != "."+clean {
			if clean == "/" {
				continue
			}
			return fmt.Errorf("%w: unsafe name %q", ErrArchive, name)
		}
		dst := filepath.Join(dir, clean)
		// No component of the parent may be a symlink.
		if parent, err := filepath.EvalSymlinks(filepath.Dir(dst)); err == nil {
			if rel, err := filepath.Rel(dir, parent); err != nil || strings.HasPrefix(rel, "..") {
				return fmt.Errorf("%w: %q escapes the tree", ErrArchive, name)
			}
		}
		perm := os.FileMode(mode & 0o7777)
		switch mode & 0o170000 {
		case modeDir:
			if err := os.MkdirAll(dst, perm|0o700); err != nil {
				return err
			}
		case modeFile:
			if err := os.WriteFile(dst, data, perm); err != nil {
				return err
			}
		case modeSymlink:
			if err := os.Symlink(string(data), dst); err != nil {
				return err
			}
		case modeChar:
			if err := unix.Mknod(dst, unix.S_IFCHR|uint32(perm), int(unix.Mkdev(uint32(rmaj), uint32(rmin)))); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: %q has unsupported type %o", ErrArchive, name, mode&0o170000)
		}
	}
}
