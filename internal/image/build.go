package image

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultCmdline is the kernel command line of built images: the serial
// console azoted captures, and no reboot loop on panic (the engine exits
// and the instance fails with a reason). Kernel messages stay on: under
// TCG they cost no measurable boot time and they are what an operator
// reads in the console.
const DefaultCmdline = "console=ttyS0 panic=-1"

// DefaultKernelPackage is the Debian package images take their kernel from.
const DefaultKernelPackage = "linux-image-cloud-amd64"

// BuildOptions says what to put into an image.
type BuildOptions struct {
	KernelPackage  string   // Debian package name; a metapackage is followed
	BusyboxPackage string   // Debian package holding a static /bin/busybox
	Modules        []string // module names; dependencies are added
	// Binaries are host executables copied into /bin with the shared
	// libraries and loader they need (e.g. /sbin/mke2fs).
	Binaries []string
	// Files are more files for the initramfs, such as a nested guest's
	// kernel and initramfs that a test host boots.
	Files []File
	// Script, when set, is run by the agent with /bin/sh after the guest
	// is ready; its output goes to the console.
	Script    []byte
	Cmdline   string
	AgentPath string // the static azote-agent binary
	CacheDir  string // where packages are downloaded and unpacked
	// Cached takes each package from CacheDir when a copy is there,
	// without asking the archive for a newer one; and NoGzip leaves the
	// initramfs an uncompressed newc archive, which the kernel takes as
	// well. Both are for throwaway images built many times a minute,
	// such as test hosts, where they save about 4 s a build.
	Cached   bool
	NoGzip   bool
	Progress func(string)
}

// Artifacts are the bytes of a built image.
type Artifacts struct {
	Kernel        []byte
	Initrd        []byte
	Cmdline       string
	KernelVersion string
	Modules       []string // load order, paths inside the initramfs
	// Rootfs, for a distribution image, is the gzip-compressed newc
	// archive its root volumes are made from (the initramfs then only
	// mounts the root volume); RootSize the volume size it was built for.
	Rootfs   []byte
	RootSize int64
}

// Build fetches the kernel and busybox packages and assembles the image.
func Build(o BuildOptions) (*Artifacts, error) {
	if o.KernelPackage == "" {
		o.KernelPackage = DefaultKernelPackage
	}
	if o.BusyboxPackage == "" {
		o.BusyboxPackage = "busybox-static"
	}
	if o.Modules == nil {
		o.Modules = DefaultModules
	}
	if o.Cmdline == "" {
		o.Cmdline = DefaultCmdline
	}
	if err := validCmdline(o.Cmdline); err != nil {
		return nil, err
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	agent, err := os.ReadFile(o.AgentPath)
	if err != nil {
		return nil, fmt.Errorf("image: agent binary: %w", err)
	}
	if err := requireStatic(o.AgentPath); err != nil {
		return nil, err
	}
	c := &debCache{dir: o.CacheDir, progress: o.Progress, cached: o.Cached}
	kroot, version, err := c.kernelPackage(o.KernelPackage)
	if err != nil {
		return nil, err
	}
	o.Progress("kernel " + version)
	kernel, err := os.ReadFile(filepath.Join(kroot, "boot", "vmlinuz-"+version))
	if err != nil {
		return nil, err
	}
	o.Progress("fetching " + o.BusyboxPackage)
	bdeb, err := c.fetch(o.BusyboxPackage)
	if err != nil {
		return nil, err
	}
	broot, err := c.extract(bdeb)
	if err != nil {
		return nil, err
	}
	busyboxPath := filepath.Join(broot, "bin", "busybox")
	if err := requireStatic(busyboxPath); err != nil {
		return nil, err
	}
	busybox, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, err
	}
	applets, err := busyboxApplets(busyboxPath)
	if err != nil {
		return nil, err
	}

	modRoot := filepath.Join(kroot, "lib", "modules", version)
	tree, err := openModuleTree(modRoot)
	if err != nil {
		return nil, err
	}
	order, err := tree.resolve(o.Modules)
	if err != nil {
		return nil, err
	}
	o.Progress(fmt.Sprintf("%d modules in load order", len(order)))

	var raw bytes.Buffer
	w := newCpioWriter(&raw)
	dirs := map[string]bool{}
	mkdirs := func(p string) {
		var parts []string
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			parts = append(parts, d)
		}
		for i := len(parts) - 1; i >= 0; i-- {
			if !dirs[parts[i]] {
				dirs[parts[i]] = true
				w.Dir(parts[i])
			}
		}
	}
	for _, d := range []string{"bin", "sbin", "dev", "etc", "etc/azote", "proc", "sys", "run", "tmp", "root", "mnt"} {
		dirs[d] = true
		w.Dir(d)
	}
	w.CharDev("dev/console", 0o600, 5, 1)
	w.CharDev("dev/null", 0o666, 1, 3)
	w.File("init", 0o755, agent)
	w.File("bin/busybox", 0o755, busybox)
	for _, a := range applets {
		if a != "busybox" && !strings.Contains(a, "/") {
			w.Symlink("bin/"+a, "busybox")
		}
	}
	var loadList []string
	for _, rel := range order {
		data, err := os.ReadFile(filepath.Join(modRoot, rel))
		if err != nil {
			return nil, err
		}
		p := path.Join("lib/modules", version, filepath.ToSlash(rel))
		mkdirs(p)
		w.File(p, 0o644, data)
		loadList = append(loadList, "/"+p)
	}
	w.File("etc/azote/modules", 0o644, []byte(strings.Join(loadList, "\n")+"\n"))
	w.File("etc/azote/kernel-version", 0o644, []byte(version+"\n"))
	if len(o.Script) > 0 {
		w.File("etc/azote/rc", 0o755, o.Script)
	}
	if err := addBinaries(w, mkdirs, o.Binaries); err != nil {
		return nil, err
	}
	if err := addFiles(w, mkdirs, o.Files); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}

	if o.NoGzip {
		o.Progress(fmt.Sprintf("initramfs %d KiB, not compressed", raw.Len()/1024))
		return &Artifacts{Kernel: kernel, Initrd: raw.Bytes(), Cmdline: o.Cmdline, KernelVersion: version, Modules: loadList}, nil
	}
	// gzip with a zero header time and no name, so equal inputs give equal
	// bytes and therefore equal digests.
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	o.Progress(fmt.Sprintf("initramfs %d KiB (%d KiB uncompressed)", gz.Len()/1024, raw.Len()/1024))
	return &Artifacts{Kernel: kernel, Initrd: gz.Bytes(), Cmdline: o.Cmdline, KernelVersion: version, Modules: loadList}, nil
}

// File is one file for the initramfs, given by its bytes.
type File struct {
	// Path inside the archive: relative and clean ("srv/guest/vmlinuz").
	// A path the image already has (init, bin/busybox, a module) is
	// refused, never overwritten.
	Path string
	Mode uint32 // permission bits; 0 means 0644
	Data []byte
}

// addFiles writes the extra files, creating their parent directories.
func addFiles(w *cpioWriter, mkdirs func(string), files []File) error {
	for _, f := range files {
		if !fs.ValidPath(f.Path) || f.Path == "." {
			return fmt.Errorf("%w: initramfs file path %q (want a relative path without . or .. elements)", ErrInvalid, f.Path)
		}
		if f.Mode&^0o777 != 0 {
			return fmt.Errorf("%w: initramfs file %s: mode %#o has more than permission bits", ErrInvalid, f.Path, f.Mode)
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		mkdirs(f.Path)
		w.File(f.Path, mode, f.Data)
	}
	return nil
}

// requireStatic refuses an ELF executable with a program interpreter: the
// initramfs has no dynamic loader.
func requireStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("image: %s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("image: %s is dynamically linked; the initramfs needs a static binary", p)
		}
	}
	return nil
}

func busyboxApplets(p string) ([]string, error) {
	out, err := exec.Command(p, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("image: %s --list: %w", p, err)
	}
	applets := strings.Fields(string(out))
	sort.Strings(applets)
	return applets, nil
}
