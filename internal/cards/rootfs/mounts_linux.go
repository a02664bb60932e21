package rootfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Top-level directories of the host the helper sees, read-only: programs
// and their libraries (directories, or merged-/usr symlinks to them).
var viewDirs = []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr"}

// Single host files it sees, read-only: what the dynamic linker and
// mke2fs read, and the character devices a program may open.
var viewFiles = []string{"/etc/ld.so.cache", "/etc/mke2fs.conf", "/dev/null", "/dev/zero", "/dev/urandom"}

// isolateMounts gives the helper, in the mount namespace Run made for it,
// a root of its own: a read-only tmpfs holding viewDirs and viewFiles
// bound read-only, mke2fs, and a fresh /proc of its pid namespace. The
// host's /tmp, /dev/shm, /home, /etc and the rest are not in it, so the
// helper can neither write the host's world-writable directories nor read
// its world-readable files. Mounts never propagate to the host's (they are
// made private first). It needs the helper's root's capabilities in its
// namespace, so it runs before confine drops them.
func isolateMounts(mke2fs string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	// The new root is built on a tmpfs mounted over /tmp, which no
	// longer shows the host's /tmp from here on.
	const nr = "/tmp"
	if err := unix.Mount("tmpfs", nr, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m,nr_inodes=256,mode=0755"); err != nil {
		return fmt.Errorf("mounting the helper's root: %w", err)
	}
	for _, d := range viewDirs {
		p := "/" + d
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, nr+p); err != nil {
				return err
			}
		case fi.IsDir():
			if err := bindReadOnly(p, nr+p, true); err != nil {
				return err
			}
		}
	}
	files := append(viewFiles[:len(viewFiles):len(viewFiles)], mke2fs)
	for _, f := range files {
		if _, err := os.Stat(nr + f); err == nil {
			continue // already there (mke2fs under /usr)
		}
		real, err := filepath.EvalSymlinks(f)
		if errors.Is(err, fs.ErrNotExist) && f != mke2fs {
			continue
		} else if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(nr+f), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(nr+f, nil, 0o644); err != nil {
			return err
		}
		if err := bindReadOnly(real, nr+f, false); err != nil {
			return err
		}
	}
	if err := os.Mkdir(nr+"/proc", 0o555); err != nil {
		return err
	}
	// A proc of the helper's own pid namespace: it shows no host process.
	if err := unix.Mount("proc", nr+"/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	if err := os.Mkdir(nr+"/.old", 0o700); err != nil {
		return err
	}
	if err := unix.PivotRoot(nr, nr+"/.old"); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount("/.old", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the host's root: %w", err)
	}
	if err := os.Remove("/.old"); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("making the helper's root read-only: %w", err)
	}
	return nil
}

// bindReadOnly binds src on dst (recursively for a directory) and makes
// the bind read-only, keeping the flags the kernel locks from the host's
// mount (nosuid, nodev, noexec, atime).
func bindReadOnly(src, dst string, dir bool) error {
	if dir {
		if err := os.Mkdir(dst, 0o755); err != nil {
			return err
		}
	}
	flags := uintptr(unix.MS_BIND)
	if dir {
		flags |= unix.MS_REC
	}
	if err := unix.Mount(src, dst, "", flags, ""); err != nil {
		return fmt.Errorf("binding %s: %w", src, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dst, &st); err != nil {
		return err
	}
	keep := uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME)
	if err := unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|keep, ""); err != nil {
		return fmt.Errorf("binding %s read-only: %w", strings.TrimPrefix(dst, "/tmp"), err)
	}
	return nil
}
