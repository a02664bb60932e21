package image

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// dirMaker is the directory bookkeeping Build does around addFiles: each
// parent directory once, outermost first.
func dirMaker(w *cpioWriter) func(string) {
	made := map[string]bool{}
	return func(p string) {
		var parents []string
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			if !made[parents[i]] {
				made[parents[i]] = true
				w.Dir(parents[i])
			}
		}
	}
}

// Extra files land at their paths with their modes, parents created, as a
// test host that boots a nested guest needs its kernel and initramfs.
func TestAddFiles(t *testing.T) {
	var raw bytes.Buffer
	w := newCpioWriter(&raw)
	files := []File{
		{Path: "srv/guest/vmlinuz", Data: []byte("kernel")},
		{Path: "srv/guest/run.sh", Mode: 0o755, Data: []byte("#!/bin/sh\n")},
		{Path: "empty", Data: nil},
	}
	if err := addFiles(w, dirMaker(w), files); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	root, _, err := extractTo(t, t.TempDir(), gzipBytes(raw.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		data string
		mode fs.FileMode
	}{
		"srv/guest/vmlinuz": {"kernel", 0o644},
		"srv/guest/run.sh":  {"#!/bin/sh\n", 0o755},
		"empty":             {"", 0o644},
	}
	for p, w := range want {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(root, p))
		if string(b) != w.data || fi.Mode() != w.mode {
			t.Errorf("%s: %q mode %v, want %q mode %v", p, b, fi.Mode(), w.data, w.mode)
		}
	}
}

func TestAddFilesRefuses(t *testing.T) {
	for _, f := range []File{
		{Path: "/etc/passwd"},
		{Path: "../outside"},
		{Path: "a/../../b"},
		{Path: "a//b"},
		{Path: "."},
		{Path: ""},
		{Path: "setuid", Mode: 0o4755},
	} {
		w := newCpioWriter(io.Discard)
		if err := addFiles(w, dirMaker(w), []File{f}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", f, err)
		}
	}
	// A path the image already has is an error, not an overwrite.
	w := newCpioWriter(io.Discard)
	w.File("init", 0o755, []byte("agent"))
	if err := addFiles(w, dirMaker(w), []File{{Path: "init", Data: []byte("other")}}); err != nil {
		t.Fatal(err)
	}
	if w.Close() == nil {
		t.Fatal("a file replacing init was accepted")
	}
}

// A Cached build takes a package from the cache without running apt-get;
// a pinned version, or a package not yet cached, still asks the archive.
func TestFetchCached(t *testing.T) {
	bin, cache := t.TempDir(), t.TempDir()
	asked := filepath.Join(t.TempDir(), "asked")
	// A stand-in apt-get that notes each call and downloads nothing.
	fake := "#!/bin/sh\necho \"$@\" >> " + asked + "\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "apt-get"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	if err := os.MkdirAll(filepath.Join(cache, "debs"), 0o755); err != nil {
		t.Fatal(err)
	}
	deb := filepath.Join(cache, "debs", "busybox-static_1.35_amd64.deb")
	if err := os.WriteFile(deb, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c := &debCache{dir: cache, progress: func(string) {}, cached: true}
	if p, err := c.fetch("busybox-static"); err != nil || p != deb {
		t.Fatalf("fetch: %q %v, want %q", p, err, deb)
	}
	if _, err := os.Stat(asked); !os.IsNotExist(err) {
		t.Fatalf("apt-get was run for a cached package (%v)", err)
	}
	c.fetch("busybox-static=1.36")
	c.fetch("linux-image-cloud-amd64")
	b, _ := os.ReadFile(asked)
	if got := strings.Count(string(b), "download"); got != 2 {
		t.Errorf("apt-get ran %d times for a pinned and an uncached package, want 2:\n%s", got, b)
	}
}

// A throwaway build (a test host's): packages from the cache, the
// initramfs not compressed, extra files in it. It needs apt-get and the
// Debian archive, or a warm cache.
func TestBuildCachedNoGzip(t *testing.T) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("needs apt-get to fetch the kernel package")
	}
	if testing.Short() {
		t.Skip("downloads a kernel package; skipped in -short")
	}
	agent := filepath.Join(t.TempDir(), "azote-agent")
	build := exec.Command("go", "build", "-o", agent, "github.com/azote/azote/cmd/azote-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v: %s", err, out)
	}
	cache := os.Getenv("AZOTE_CACHE_DIR")
	if cache == "" {
		cache = "/var/cache/azote"
	}
	a, err := Build(BuildOptions{
		AgentPath: agent, CacheDir: cache, Cached: true, NoGzip: true,
		Modules: []string{"kvm_amd"},
		Files:   []File{{Path: "srv/guest/initrd.img", Data: []byte("nested")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(a.Initrd, []byte("070701")) {
		t.Fatalf("initramfs starts with %q, want a newc header", a.Initrd[:6])
	}
	parent := t.TempDir()
	root, _, err := extractTo(t, parent, gzipBytes(a.Initrd))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "srv/guest/initrd.img")); err != nil || string(b) != "nested" {
		t.Errorf("extra file: %q %v", b, err)
	}
	// kvm_amd brings what it depends on, in order.
	var names []string
	for _, m := range a.Modules {
		names = append(names, strings.TrimSuffix(filepath.Base(m), ".ko"))
	}
	if got := strings.Join(names, " "); got != "irqbypass kvm kvm-amd" {
		t.Errorf("modules %q, want irqbypass kvm kvm-amd", got)
	}
}
