package rootfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cardhost"
	"github.com/azote/azote/internal/testutil"
	"github.com/azote/azote/internal/xts"
)

// The test binary is its own helper: Run starts it as `rootfs.test rootfs
// …`, as azoted starts `azote-card rootfs …`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "rootfs" {
		os.Exit(Main(os.Args[2:]))
	}
	// `rootfs.test rootfs-probe DIR rootfs …`: the helper, which once
	// confined tries to reach the host's files (TestHelperSeesNoHostFiles).
	if len(os.Args) > 3 && os.Args[1] == "rootfs-probe" && os.Args[3] == "rootfs" {
		dir := os.Args[2]
		testHookConfined = func() error { return probeHost(dir) }
		os.Exit(Main(os.Args[4:]))
	}
	os.Exit(m.Run())
}

const testUID = cardhost.DefaultRootfsUID

// newc builds a gzip'd newc archive; entries may repeat on purpose.
type newc struct{ b bytes.Buffer }

func (c *newc) add(name string, mode uint32, data string) *newc {
	fmt.Fprintf(&c.b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	c.b.WriteString(name + "\x00")
	for c.b.Len()%4 != 0 {
		c.b.WriteByte(0)
	}
	c.b.WriteString(data)
	for c.b.Len()%4 != 0 {
		c.b.WriteByte(0)
	}
	return c
}

func (c *newc) file(t *testing.T) *os.File {
	c.add("TRAILER!!!", 0, "")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(c.b.Bytes())
	zw.Close()
	p := filepath.Join(t.TempDir(), "initrd")
	if err := os.WriteFile(p, gz.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// spec makes what azoted makes: a root-only work directory and a sized
// volume file beside it.
func spec(t *testing.T, archive *os.File) cardhost.RootfsSpec {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root may start the helper in a user namespace mapped to another uid")
	}
	testutil.RequiresCommand(t, "mke2fs", "e2fsprogs")
	mke2fs, _ := exec.LookPath("mke2fs")
	work := filepath.Join(t.TempDir(), "w")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(filepath.Join(filepath.Dir(work), "vol.img"), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	if err := out.Truncate(32 << 20); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return cardhost.RootfsSpec{Command: []string{self, "rootfs"}, Mke2fs: mke2fs, UID: testUID, Archive: archive, Out: out, WorkDir: work}
}

func debugfs(t *testing.T, img, req string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", req, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs %s: %v: %s", req, err, out)
	}
	return string(out)
}

// The helper builds the filesystem as an unprivileged uid with no
// capability; inside the filesystem the files are root's.
func TestRunUnprivileged(t *testing.T) {
	var c newc
	c.add("etc", unix.S_IFDIR|0o755, "").add("etc/hello", unix.S_IFREG|0o644, "hello from the image").
		add("init", unix.S_IFREG|0o755, "#!/bin/sh").add("sh", unix.S_IFLNK|0o777, "init").
		add("dev", unix.S_IFDIR|0o755, "").add("dev/console", unix.S_IFCHR|0o600, "")
	s := spec(t, c.file(t))
	res, err := cardhost.RunRootfs(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != 6 || res.SkippedDevices != 1 {
		t.Errorf("stats: %+v", res.ExtractStats)
	}
	// Seen from the host, everything the helper made is owned by its
	// uid, not root: the extraction ran as that uid.
	n := 0
	filepath.WalkDir(filepath.Join(s.WorkDir, "work"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Error(err)
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil || st.Uid != testUID || st.Gid != testUID {
			t.Errorf("%s: owner %d:%d (%v), want the helper's %d", p, st.Uid, st.Gid, err, testUID)
		}
		n++
		return nil
	})
	if n != 7 { // work, root, etc, etc/hello, init, sh, dev (dev/console skipped)
		t.Errorf("%d entries in the work directory, want 7", n)
	}
	// What the helper reported of itself, read from /proc after it
	// confined itself: no capability in any set, no groups.
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if res.Status[k] != "0000000000000000" {
			t.Errorf("helper %s = %q", k, res.Status[k])
		}
	}
	if res.Status["NoNewPrivs"] != "1" || res.Status["Groups"] != "" || res.UIDMap != fmt.Sprintf("0 %d 1", testUID) {
		t.Errorf("helper status %v, uid_map %q", res.Status, res.UIDMap)
	}
	// The volume file stays root's: the card writes it through the
	// descriptor it was handed, and never opens it by name (before the
	// card encrypted, the file it wrote was given to it).
	if fi, _ := s.Out.Stat(); fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("volume file owner %d, want root", fi.Sys().(*syscall.Stat_t).Uid)
	}
	testutil.RequiresCommand(t, "debugfs", "e2fsprogs")
	img := s.Out.Name()
	if got := debugfs(t, img, "cat /etc/hello"); !strings.Contains(got, "hello from the image") {
		t.Errorf("etc/hello in the filesystem: %q", got)
	}
	for _, p := range []string{"/init", "/etc", "/sh"} {
		if got := debugfs(t, img, "stat "+p); !strings.Contains(got, "User:     0   Group:     0") {
			t.Errorf("%s is not root's in the filesystem:\n%s", p, got)
		}
	}
	if got := debugfs(t, img, "stat /dev/console"); !strings.Contains(got, "File not found") {
		t.Errorf("device node in the filesystem:\n%s", got)
	}
}

// The attack of issue 10 (a symlink to a host path, then a file of the
// same name) is refused with a clear error, and the host path untouched.
func TestRunRefusesHostile(t *testing.T) {
	victim := filepath.Join(t.TempDir(), "victim")
	var c newc
	c.add("x", unix.S_IFLNK|0o777, victim).add("x", unix.S_IFREG|0o644, "* * * * * root evil\n")
	s := spec(t, c.file(t))
	_, err := cardhost.RunRootfs(context.Background(), s)
	if !errors.Is(err, cardhost.ErrRefused) || !strings.Contains(err.Error(), `"x" appears twice`) {
		t.Fatalf("got %v, want a refusal naming the duplicate", err)
	}
	if _, err := os.Lstat(victim); !os.IsNotExist(err) {
		t.Fatalf("host path written: %v", err)
	}
}

// Seen from the host while it waits for the archive (a pipe the test
// holds), the helper that reads it is uid and gid testUID, with no
// capability and no_new_privs: what the kernel says, not what the helper
// reports of itself.
func TestRunSeenFromHost(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	s := spec(t, pr)
	done := make(chan error, 1)
	go func() { _, err := cardhost.RunRootfs(context.Background(), s); done <- err }()
	var st map[string]string
	deadline := time.Now().Add(30 * time.Second)
	for st == nil {
		if time.Now().After(deadline) {
			t.Fatal("no helper reading the archive within 30 s")
		}
		select {
		case err := <-done:
			t.Fatalf("helper ended before the archive was written: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pst, err := readStatus("/proc/" + e.Name() + "/status")
			cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err != nil || pst["PPid"] != fmt.Sprint(os.Getpid()) || !bytes.Contains(cmd, []byte("\x00--confined\x00")) {
				continue
			}
			// The confined image: wait until one of its threads blocks on
			// the pipe.
			ws, _ := filepath.Glob("/proc/" + e.Name() + "/task/*/wchan")
			for _, wf := range ws {
				if w, _ := os.ReadFile(wf); strings.Contains(string(w), "pipe") {
					st = pst
				}
			}
		}
	}
	want := fmt.Sprintf("%d %d %d %d", testUID, testUID, testUID, testUID)
	if st["Uid"] != want || st["Gid"] != want || st["Groups"] != "" {
		t.Errorf("helper seen from the host: Uid %q Gid %q Groups %q, want %q and none", st["Uid"], st["Gid"], st["Groups"], want)
	}
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if st[k] != "0000000000000000" {
			t.Errorf("helper seen from the host: %s = %q", k, st[k])
		}
	}
	if st["NoNewPrivs"] != "1" {
		t.Errorf("helper seen from the host: NoNewPrivs %q", st["NoNewPrivs"])
	}
	var c newc
	arch := c.add("etc", unix.S_IFDIR|0o755, "").file(t)
	b, _ := os.ReadFile(arch.Name())
	pw.Write(b)
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A helper started other than by Run (no user namespace mapping its root
// to the expected uid) refuses to do anything.
func TestConfineRefusesOutsideItsNamespace(t *testing.T) {
	if err := confine(testUID, "/sbin/mke2fs", nil); err == nil || !strings.Contains(err.Error(), "user namespace") {
		t.Fatalf("confine in the test's own namespace: %v", err)
	}
	if _, err := cardhost.RunRootfs(context.Background(), cardhost.RootfsSpec{Command: []string{"/bin/true"}, Mke2fs: "/sbin/mke2fs", UID: 0}); err == nil {
		t.Fatal("Run accepted uid 0")
	}
}

// probeHost is what a hostile archive could make the helper do, were the
// extractor or mke2fs subverted: write the host's world-writable
// directories, read its world-readable files.
func probeHost(dir string) error {
	os.WriteFile(filepath.Join(dir, "escaped"), []byte("from the helper"), 0o644)
	os.WriteFile(filepath.Join("/dev/shm", filepath.Base(dir)), []byte("from the helper"), 0o644)
	if b, err := os.ReadFile(filepath.Join(dir, "secret")); err == nil {
		return fmt.Errorf("read a host file: %q", b)
	}
	return nil
}

// TestHelperSeesNoHostFiles: the helper has a mount namespace of its own
// with only programs and libraries in it: it cannot create a file in the
// host's /tmp or /dev/shm, nor read a world-readable file there. Before,
// as uid 65533, it could do all three.
func TestHelperSeesNoHostFiles(t *testing.T) {
	var c newc
	c.add("etc", unix.S_IFDIR|0o755, "").add("etc/hello", unix.S_IFREG|0o644, "hello")
	s := spec(t, c.file(t))
	dir, err := os.MkdirTemp("/tmp", "azote-rootfs-probe-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	shm := filepath.Join("/dev/shm", filepath.Base(dir))
	t.Cleanup(func() { os.Remove(shm) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("host secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Command = []string{s.Command[0], "rootfs-probe", dir, "rootfs"}
	if _, err := cardhost.RunRootfs(context.Background(), s); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "escaped")); err == nil {
		t.Error("the helper created a file in the host's /tmp")
	}
	if _, err := os.Lstat(shm); err == nil {
		t.Error("the helper created a file in the host's /dev/shm")
	}
	// It still built the filesystem.
	testutil.RequiresCommand(t, "debugfs", "e2fsprogs")
	if got := debugfs(t, s.Out.Name(), "cat /etc/hello"); !strings.Contains(got, "hello") {
		t.Errorf("etc/hello in the filesystem: %q", got)
	}
}

// TestRunEncrypts: given a key, the card writes the volume encrypted
// (aes-xts-plain64, 512-byte sectors, as the blk card reads it): no
// sector of the file shows the filesystem, decrypted with internal/xts
// it is the image's ext4, and no plaintext copy is left anywhere under
// the work directory (regression: azoted read a plaintext file the card
// left under its state directory and encrypted it itself).
func TestRunEncrypts(t *testing.T) {
	var c newc
	c.add("etc", unix.S_IFDIR|0o755, "").add("etc/hello", unix.S_IFREG|0o644, "hello from the image")
	s := spec(t, c.file(t))
	key := make([]byte, 64)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	s.Key = key
	res, err := cardhost.RunRootfs(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Encrypted {
		t.Error("the card did not report an encrypted volume")
	}
	ct, err := os.ReadFile(s.Out.Name())
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) != 32<<20 {
		t.Fatalf("volume of %d bytes, want %d", len(ct), 32<<20)
	}
	// The ext4 superblock sits at 1024; its magic at 1024+56.
	if bytes.Contains(ct, []byte("hello from the image")) || bytes.Contains(ct, []byte("azote-root")) ||
		(ct[1080] == 0x53 && ct[1081] == 0xef) {
		t.Error("the volume file holds plaintext")
	}
	x, err := xts.New(key)
	if err != nil {
		t.Skipf("no cipher to check with: %v", err)
	}
	pt := make([]byte, len(ct))
	if err := x.DecryptSectors(pt, ct, 0, 512); err != nil {
		t.Fatal(err)
	}
	// Sector 2 holds the superblock: decrypted, it is ext4's.
	if pt[1080] != 0x53 || pt[1081] != 0xef {
		t.Fatalf("decrypted sector 2: no ext4 magic (%x)", pt[1080:1082])
	}
	testutil.RequiresCommand(t, "debugfs", "e2fsprogs")
	img := filepath.Join(t.TempDir(), "decrypted.img")
	if err := os.WriteFile(img, pt, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := debugfs(t, img, "cat /etc/hello"); !strings.Contains(got, "hello from the image") {
		t.Errorf("etc/hello in the decrypted filesystem: %q", got)
	}
	// Nothing but the extracted tree under the work directory: the
	// filesystem's plaintext had no name.
	filepath.WalkDir(s.WorkDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, _ := d.Info(); fi != nil && fi.Size() >= 1<<20 {
				t.Errorf("a file of %d bytes left at %s", fi.Size(), p)
			}
		}
		return nil
	})
}
