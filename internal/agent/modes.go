package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
)

// Paths of the modes manifest of a distribution root. The rootfs card
// makes a root volume's files root's, without setuid, setgid or sticky
// bits (it refuses them: see image.ExtractInitramfs), so the image
// builder lists here what the distribution had (sudo setuid, /tmp
// sticky, /etc/shadow group shadow); the initramfs agent applies it to
// the root volume once, before systemd starts.
const (
	ModesPath = "/etc/azote/modes"
	ModesDone = "/var/lib/azote/modes.done"
)

// ModeEntry is one line of the manifest: "MODE UID GID PATH", the mode
// in octal with its setuid, setgid and sticky bits.
type ModeEntry struct {
	Mode     os.FileMode // permission and special bits, Go's encoding
	UID, GID int
	Path     string
}

// FormatModeEntry renders one manifest line (with its newline).
func FormatModeEntry(perm uint32, uid, gid int, p string) string {
	return fmt.Sprintf("%04o %d %d %s\n", perm&0o7777, uid, gid, p)
}

// ParseModes reads a manifest: at most 65536 lines, each with an
// absolute, clean path.
func ParseModes(r io.Reader) ([]ModeEntry, error) {
	var out []ModeEntry
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		if n > 1<<16 {
			return nil, errors.New("modes: too many lines")
		}
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.SplitN(line, " ", 4)
		if len(f) != 4 {
			return nil, fmt.Errorf("modes: line %d: want MODE UID GID PATH", n)
		}
		m, err1 := strconv.ParseUint(f[0], 8, 32)
		uid, err2 := strconv.Atoi(f[1])
		gid, err3 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || err3 != nil || m > 0o7777 || uid < 0 || gid < 0 {
			return nil, fmt.Errorf("modes: line %d: bad mode or owner", n)
		}
		p := f[3]
		if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
			return nil, fmt.Errorf("modes: line %d: path %q is not absolute and clean", n, p)
		}
		mode := os.FileMode(m & 0o777)
		if m&0o4000 != 0 {
			mode |= os.ModeSetuid
		}
		if m&0o2000 != 0 {
			mode |= os.ModeSetgid
		}
		if m&0o1000 != 0 {
			mode |= os.ModeSticky
		}
		out = append(out, ModeEntry{Mode: mode, UID: uid, GID: gid, Path: p})
	}
	return out, sc.Err()
}

// applyModes applies the manifest at manifest once: done records that it
// was. Symbolic links are left alone (chmod would follow them). The
// owner goes first, since chown clears setuid.
func applyModes(manifest, done string) error {
	if _, err := os.Stat(done); err == nil {
		return nil
	}
	f, err := os.Open(manifest)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	entries, err := ParseModes(f)
	f.Close()
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		st, err := os.Lstat(e.Path)
		if err != nil || st.Mode()&os.ModeSymlink != 0 {
			continue // removed since, or a link: nothing to do
		}
		if err := os.Lchown(e.Path, e.UID, e.GID); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Chmod(e.Path, e.Mode); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.MkdirAll(path.Dir(done), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		return err
	}
	return errors.Join(errs...)
}
