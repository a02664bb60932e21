package image

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCpioListsWithGNUCpio(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("needs GNU cpio to cross-check the archive format (apt-get install cpio)")
	}
	var buf bytes.Buffer
	w := newCpioWriter(&buf)
	w.Dir("bin")
	w.File("bin/hello", 0o755, []byte("hello world\n"))
	w.Symlink("bin/sh", "hello")
	w.CharDev("console", 0o600, 5, 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-idv", "--no-absolute-filenames", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "bin/hello")); err != nil || string(b) != "hello world\n" {
		t.Fatalf("file content: %q %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || l != "hello" {
		t.Fatalf("symlink: %q %v", l, err)
	}
	w2 := newCpioWriter(io.Discard)
	w2.File("a", 0o644, nil)
	w2.File("a", 0o644, nil)
	if w2.Close() == nil {
		t.Fatal("duplicate entry accepted")
	}
}

// TestBuildReal builds an image from Debian's kernel package, as users do.
// It needs apt-get and the Debian archive (or a warm cache).
func TestBuildReal(t *testing.T) {
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
	opts := BuildOptions{AgentPath: agent, CacheDir: cache, Progress: func(s string) { t.Log(s) }}
	a, err := Build(opts)
	if err != nil {
		t.Fatal(err)
	}
	// Reproducible: a second build gives the same bytes.
	b, err := Build(opts)
	if err != nil {
		t.Fatal(err)
	}
	if SHA384Hex(a.Initrd) != SHA384Hex(b.Initrd) {
		t.Fatal("two builds from the same inputs gave different initramfs digests")
	}
	// Dependencies come before the modules that need them.
	pos := map[string]int{}
	for i, m := range a.Modules {
		pos[strings.TrimSuffix(filepath.Base(m), ".ko")] = i
	}
	for _, pair := range [][2]string{{"virtio", "virtio_pci"}, {"virtio_ring", "virtio_blk"}, {"vsock", "vmw_vsock_virtio_transport"}, {"vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"}} {
		d, okd := pos[pair[0]]
		m, okm := pos[pair[1]]
		if !okd || !okm || d > m {
			t.Errorf("module order: %s (%d,%v) must precede %s (%d,%v): %v", pair[0], d, okd, pair[1], m, okm, a.Modules)
		}
	}
	zr, err := gzip.NewReader(bytes.NewReader(a.Initrd))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	for _, want := range []string{"init\x00", "bin/busybox\x00", "etc/azote/modules\x00", "dev/console\x00"} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("initramfs lacks %q", want)
		}
	}
	if !bytes.HasPrefix(a.Kernel[0x202:], []byte("HdrS")) {
		t.Error("kernel is not a bzImage (no HdrS boot protocol magic)")
	}
}
