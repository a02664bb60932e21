package boot

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/azote/azote/internal/image"
)

// debianKernel is Debian's cloud kernel, the one azote's images boot,
// with the build configuration shipped next to it.
type debianKernel struct {
	path   string
	image  []byte
	config map[string]string // CONFIG_* = value, from boot/config-<version>
}

var (
	kernelOnce sync.Once
	kernel     *debianKernel
	kernelErr  error
)

// realKernel returns the Debian kernel from azote's package cache. When
// the cache has none, it builds an image as `azote image build` does,
// which downloads the kernel package with apt-get and unpacks it there:
// the test never skips for want of a kernel.
func realKernel(t testing.TB) *debianKernel {
	t.Helper()
	kernelOnce.Do(func() { kernel, kernelErr = findOrFetchKernel(t) })
	if kernelErr != nil {
		t.Fatal(kernelErr)
	}
	return kernel
}

// cacheDir is the azote CLI's package cache, so that one download serves
// the image builder, the kvmhost and these tests.
func cacheDir() string {
	if d := os.Getenv("AZOTE_CACHE_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/cache/azote"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "azote")
	}
	return filepath.Join(os.TempDir(), "azote-cache")
}

func findOrFetchKernel(t testing.TB) (*debianKernel, error) {
	dir := cacheDir()
	if k, err := cachedKernel(dir); k != nil || err != nil {
		return k, err
	}
	t.Logf("no Debian kernel under %s: building an image to fetch %s", dir, image.DefaultKernelPackage)
	tmp, err := os.MkdirTemp("", "azote-boot-test")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	agent := filepath.Join(tmp, "azote-agent")
	build := exec.Command("go", "build", "-o", agent, "github.com/azote/azote/cmd/azote-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building azote-agent for the image: %v: %s", err, out)
	}
	if _, err := image.Build(image.BuildOptions{AgentPath: agent, CacheDir: dir, Progress: func(s string) { t.Log(s) }}); err != nil {
		return nil, fmt.Errorf("fetching the Debian kernel: %w", err)
	}
	k, err := cachedKernel(dir)
	if k == nil && err == nil {
		err = fmt.Errorf("image.Build left no kernel under %s", dir)
	}
	return k, err
}

// cachedKernel finds the newest unpacked cloud kernel package in dir, or
// returns nil.
func cachedKernel(dir string) (*debianKernel, error) {
	paths, _ := filepath.Glob(filepath.Join(dir, "root", "linux-image-*-cloud-amd64_*", "boot", "vmlinuz-*"))
	if len(paths) == 0 {
		return nil, nil
	}
	sort.Strings(paths)
	p := paths[len(paths)-1]
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(filepath.Dir(p), "config-"+strings.TrimPrefix(filepath.Base(p), "vmlinuz-"))
	f, err := os.Open(cfg)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	k := &debianKernel{path: p, image: b, config: map[string]string{}}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if name, v, ok := strings.Cut(s.Text(), "="); ok && strings.HasPrefix(name, "CONFIG_") {
			k.config[name] = v
		}
	}
	return k, s.Err()
}

// configUint is a numeric CONFIG_ value.
func (k *debianKernel) configUint(t testing.TB, name string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(k.config[name], 0, 64)
	if err != nil {
		t.Fatalf("%s in the kernel's config: %v", name, err)
	}
	return v
}

// vmlinux is the kernel's uncompressed ELF, taken out of the bzImage's
// payload: what a PVH boot loads.
func (k *debianKernel) vmlinux(t testing.TB) []byte {
	t.Helper()
	bz, err := ParseBzImage(k.image)
	if err != nil {
		t.Fatal(err)
	}
	p := bz.Payload()
	if !bytes.HasPrefix(p, []byte{0x02, 0x21, 0x4c, 0x18}) {
		t.Fatalf("payload starts % x: not the LZ4 legacy frame CONFIG_KERNEL_LZ4=%s makes", p[:min(4, len(p))], k.config["CONFIG_KERNEL_LZ4"])
	}
	v, err := unlz4Legacy(p)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
