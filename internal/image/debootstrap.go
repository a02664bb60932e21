package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/agent"
)

// DebianSuite is the Debian release the debian distro is built from.
const DebianSuite = "bookworm"

// DebianPackages are installed on debootstrap's minbase variant: an init,
// device management, sshd, the ip tool, CA certificates and sudo for the
// admin user.
var DebianPackages = []string{"systemd", "systemd-sysv", "udev", "openssh-server", "iproute2", "ca-certificates", "sudo"}

// DefaultRootSize is the root filesystem size a Debian image is built
// for unless --size says otherwise.
const DefaultRootSize = 2 << 30

// DebianOptions says what to put into a Debian image: the kernel and
// initramfs of BuildOptions, and a root filesystem made by debootstrap.
type DebianOptions struct {
	BuildOptions
	Suite    string   // DebianSuite when empty
	Mirror   string   // the host's apt source for Suite when empty
	Packages []string // added to DebianPackages
	// RootSize is the root volume size the tree must fit in (with room
	// for ext4 and the guest's own writes).
	RootSize int64
}

// ErrNoDebootstrap is returned when the host lacks debootstrap.
var ErrNoDebootstrap = errors.New("image: building a Debian image needs debootstrap (Debian package debootstrap: apt-get install debootstrap)")

// BuildDebian builds a Debian image: Build's kernel and initramfs, whose
// agent mounts the root volume and hands PID 1 to systemd, and a root
// filesystem archive (Artifacts.Rootfs) that root volumes of the image
// are made from. debootstrap runs from the cache's .deb cache (a second
// build downloads nothing new) in a temporary directory under the cache
// that is removed however the build ends; cancelling ctx kills
// debootstrap and everything it started.
func BuildDebian(ctx context.Context, o DebianOptions) (*Artifacts, error) {
	if o.Suite == "" {
		o.Suite = DebianSuite
	}
	if o.RootSize == 0 {
		o.RootSize = DefaultRootSize
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	for _, p := range o.Packages {
		if !debNameRE.MatchString(p) {
			return nil, fmt.Errorf("%w: package name %q", ErrInvalid, p)
		}
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return nil, ErrNoDebootstrap
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("image: debootstrap needs root (it chroots and installs packages as root)")
	}
	if o.Mirror == "" {
		m, err := HostDebianMirror(o.Suite)
		if err != nil {
			return nil, err
		}
		o.Mirror = m
	}
	cache, err := filepath.Abs(o.CacheDir)
	if err != nil {
		return nil, err
	}
	debs := filepath.Join(cache, "debootstrap", o.Suite)
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return nil, err
	}
	art, err := Build(o.BuildOptions)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(cache, "debian-build-")
	if err != nil {
		return nil, err
	}
	root := filepath.Join(work, "root")
	defer func() {
		// Never remove through a mount debootstrap left (in a container
		// it bind-mounts the host's /dev into the target).
		if err := unmountUnder(work); err != nil {
			o.Progress(fmt.Sprintf("leaving %s: %v", work, err))
			return
		}
		os.RemoveAll(work)
	}()

	pkgs := append(append([]string(nil), DebianPackages...), o.Packages...)
	o.Progress(fmt.Sprintf("debootstrap %s from %s (minbase + %s)", o.Suite, o.Mirror, strings.Join(pkgs, ",")))
	if err := debootstrap(ctx, root, debs, o.Suite, o.Mirror, pkgs, o.Progress); err != nil {
		return nil, err
	}
	if err := unmountUnder(work); err != nil {
		return nil, err
	}
	agentBin, err := os.ReadFile(o.AgentPath)
	if err != nil {
		return nil, fmt.Errorf("image: agent binary: %w", err)
	}
	o.Progress("configuring: azote-agent.service, sshd, user admin, systemd-networkd")
	if err := configureDebian(ctx, root, agentBin); err != nil {
		return nil, err
	}
	o.Progress("packing the root filesystem")
	rootfs, st, err := packRootfs(ctx, root)
	if err != nil {
		return nil, err
	}
	// ext4's metadata and journal, and room for the guest to write.
	if need := st.Bytes + st.Bytes/4 + 64<<20; need > o.RootSize {
		return nil, fmt.Errorf("image: the root filesystem holds %d MiB and needs a volume of about %d MiB; --size is %d MiB", st.Bytes>>20, need>>20, o.RootSize>>20)
	}
	if st.Bytes > maxTotal || st.Entries > maxEntries {
		return nil, fmt.Errorf("image: the root filesystem (%d files, %d MiB) exceeds what a root volume can be made from (%d files, %d MiB)", st.Entries, st.Bytes>>20, maxEntries, maxTotal>>20)
	}
	o.Progress(fmt.Sprintf("root filesystem: %d entries, %d MiB, archive %d MiB (%d special modes kept in %s, %d device nodes left to devtmpfs)",
		st.Entries, st.Bytes>>20, len(rootfs)>>20, st.Modes, agent.ModesPath, st.Skipped))
	art.Rootfs = rootfs
	art.RootSize = o.RootSize
	return art, nil
}

// debNameRE is a Debian package name (Policy 5.6.7).
var debNameRE = regexRE(`^[a-z0-9][a-z0-9+.-]{1,62}$`)

// debootstrap runs debootstrap in its own process group, turning its
// "I:" lines into progress by stage, and kills the whole group when ctx
// ends (debootstrap starts dpkg, chroot and maintainer scripts).
func debootstrap(ctx context.Context, root, debs, suite, mirror string, pkgs []string, progress func(string)) error {
	cmd := exec.Command("debootstrap", "--variant=minbase", "--merged-usr",
		"--include="+strings.Join(pkgs, ","), "--cache-dir="+debs, suite, root, mirror)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("image: debootstrap: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { unix.Kill(-cmd.Process.Pid, unix.SIGKILL) })
	defer stop()
	var last []string
	stage, n := "", 0
	start := time.Now()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		last = append(last, line)
		if len(last) > 20 {
			last = last[1:]
		}
		msg, ok := strings.CutPrefix(line, "I: ")
		if !ok {
			continue
		}
		verb, _, _ := strings.Cut(msg, " ")
		st, ok := debootstrapStages[verb]
		if !ok {
			progress("debootstrap: " + msg)
			continue
		}
		// One line when a stage starts and every 25 packages, not one
		// per package (a minbase with systemd is about 150).
		if st != stage {
			stage, n = st, 0
			progress(fmt.Sprintf("debootstrap: %s packages (%.0f s)", st, time.Since(start).Seconds()))
		}
		if verb != "Validating" {
			n++
			if n%25 == 0 {
				progress(fmt.Sprintf("debootstrap: %s: %d packages (%.0f s)", st, n, time.Since(start).Seconds()))
			}
		}
	}
	if err := sc.Err(); err != nil {
		progress("debootstrap: reading its output: " + err.Error())
	}
	err = cmd.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("image: debootstrap cancelled: %w", ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("image: debootstrap: %v:\n%s", err, strings.Join(last, "\n"))
	}
	return nil
}

// debootstrapStages names the stage of each per-package "I:" line.
var debootstrapStages = map[string]string{
	"Retrieving": "downloading", "Validating": "downloading",
	"Extracting": "extracting", "Unpacking": "unpacking", "Configuring": "configuring",
}

// unmountUnder detaches every mount at or below dir, deepest first, and
// checks that none is left.
func unmountUnder(dir string) error {
	for i := 0; i < 3; i++ {
		mounts, err := mountsUnder(dir)
		if err != nil {
			return err
		}
		if len(mounts) == 0 {
			return nil
		}
		sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
		for _, m := range mounts {
			unix.Unmount(m, unix.MNT_DETACH)
		}
	}
	if mounts, _ := mountsUnder(dir); len(mounts) > 0 {
		return fmt.Errorf("image: could not unmount %v", mounts)
	}
	return nil
}

func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// rootfsStats counts what packRootfs put in the archive.
type rootfsStats struct {
	Entries int
	Bytes   int64
	Modes   int // entries whose special bits or owner went to the manifest
	Skipped int // device nodes, FIFOs and sockets
}

// packRootfs writes the tree at root as a gzip-compressed newc archive
// the rootfs card accepts: directories, files and symlinks, every entry
// root's with no setuid, setgid or sticky bit, and a hard link stored as
// a copy. What the archive cannot carry (owners, special bits) goes to
// the modes manifest the initramfs agent applies (agent.ModesPath).
// Entries are in lexical order with mtime 0, so equal trees give equal
// archives.
func packRootfs(ctx context.Context, root string) ([]byte, rootfsStats, error) {
	var st rootfsStats
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.DefaultCompression)
	w := newCpioWriter(zw)
	var modes strings.Builder
	manifest := strings.TrimPrefix(agent.ModesPath, "/")
	// The extractor wants every parent before its child.
	if err := os.MkdirAll(filepath.Join(root, filepath.Dir(manifest)), 0o755); err != nil {
		return nil, st, err
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == manifest {
			return nil // written last, from what the walk found
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		sys, _ := info.Sys().(*syscall.Stat_t)
		mode := uint32(info.Mode().Perm())
		if info.Mode()&fs.ModeSetuid != 0 {
			mode |= 0o4000
		}
		if info.Mode()&fs.ModeSetgid != 0 {
			mode |= 0o2000
		}
		if info.Mode()&fs.ModeSticky != 0 {
			mode |= 0o1000
		}
		record := func() {
			if sys != nil && (mode&0o7000 != 0 || sys.Uid != 0 || sys.Gid != 0) {
				modes.WriteString(agent.FormatModeEntry(mode, int(sys.Uid), int(sys.Gid), "/"+rel))
				st.Modes++
			}
		}
		switch {
		case info.Mode().IsDir():
			w.entry(rel, modeDir|(mode&0o777), 0, 0, nil)
			record()
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			w.entry(rel, modeFile|(mode&0o777), 0, 0, data)
			st.Bytes += int64(len(data))
			record()
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			w.Symlink(rel, target)
		default:
			st.Skipped++
			return nil
		}
		st.Entries++
		return w.err
	})
	if err != nil {
		return nil, st, fmt.Errorf("image: packing the root filesystem: %w", err)
	}
	w.File(manifest, 0o644, []byte(modes.String()))
	st.Entries++
	if err := w.Close(); err != nil {
		return nil, st, err
	}
	if err := zw.Close(); err != nil {
		return nil, st, err
	}
	return gz.Bytes(), st, nil
}

// HostDebianMirror returns the Debian archive the host's apt sources use
// for suite: on these machines the only reachable archive.
func HostDebianMirror(suite string) (string, error) {
	var files []string
	files = append(files, "/etc/apt/sources.list")
	more, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	files = append(files, more...)
	for _, f := range files {
		if !strings.HasSuffix(f, ".list") && !strings.HasSuffix(f, ".sources") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if m := debianMirror(string(b), strings.HasSuffix(f, ".sources"), suite); m != "" {
			return m, nil
		}
	}
	return "", fmt.Errorf("image: no Debian archive for %s in /etc/apt/sources.list*; give --mirror", suite)
}

// debianMirror finds, in one apt source file (one-line ".list" or
// deb822 ".sources" format), the URI of a "deb" source of suite itself
// (not -security or -updates).
func debianMirror(text string, deb822 bool, suite string) string {
	if !deb822 {
		for _, line := range strings.Split(text, "\n") {
			f := strings.Fields(strings.TrimSpace(line))
			if len(f) >= 3 && f[0] == "deb" {
				i := 1
				if strings.HasPrefix(f[1], "[") { // [signed-by=… arch=…]
					for i < len(f) && !strings.HasSuffix(f[i], "]") {
						i++
					}
					i++
				}
				if i+1 < len(f) && f[i+1] == suite {
					return f[i]
				}
			}
		}
		return ""
	}
	for _, stanza := range strings.Split(strings.ReplaceAll(text, "\r", ""), "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if ok && !strings.HasPrefix(line, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !contains(strings.Fields(fields["types"]), "deb") || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		if contains(strings.Fields(fields["suites"]), suite) {
			if uris := strings.Fields(fields["uris"]); len(uris) > 0 {
				return uris[0]
			}
		}
	}
	return ""
}

// copyTo writes r to path with perm, replacing what was there.
func copyTo(path string, perm os.FileMode, r io.Reader) error {
	os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(path, perm)
}
