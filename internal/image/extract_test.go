package image

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// rawCpio builds newc archives entry by entry, with none of cpioWriter's
// care: duplicate names, any mode, any link count.
type rawCpio struct{ b bytes.Buffer }

func (c *rawCpio) entry(name string, mode, nlink uint32, data []byte) *rawCpio {
	return c.entrySize(name, mode, nlink, uint32(len(data)), data)
}

func (c *rawCpio) entrySize(name string, mode, nlink, size uint32, data []byte) *rawCpio {
	fmt.Fprintf(&c.b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		7, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	c.b.WriteString(name)
	c.b.WriteByte(0)
	c.pad()
	c.b.Write(data)
	c.pad()
	return c
}

func (c *rawCpio) pad() {
	for c.b.Len()%4 != 0 {
		c.b.WriteByte(0)
	}
}

func (c *rawCpio) dir(name string, perm uint32) *rawCpio {
	return c.entry(name, unix.S_IFDIR|perm, 2, nil)
}
func (c *rawCpio) file(name string, perm uint32, data string) *rawCpio {
	return c.entry(name, unix.S_IFREG|perm, 1, []byte(data))
}
func (c *rawCpio) symlink(name, target string) *rawCpio {
	return c.entry(name, unix.S_IFLNK|0o777, 1, []byte(target))
}

// raw ends the archive and returns it uncompressed.
func (c *rawCpio) raw() []byte {
	c.entry("TRAILER!!!", 0, 1, nil)
	return c.b.Bytes()
}

func (c *rawCpio) gz() []byte { return gzipBytes(c.raw()) }

func gzipBytes(b []byte) []byte {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(b)
	zw.Close()
	return gz.Bytes()
}

func gzipped(t testing.TB, build func(w *cpioWriter)) []byte {
	var raw bytes.Buffer
	w := newCpioWriter(&raw)
	build(w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return gzipBytes(raw.Bytes())
}

// extractTo extracts archive into a fresh directory "root" inside parent.
func extractTo(t testing.TB, parent string, archive []byte) (string, ExtractStats, error) {
	t.Helper()
	root := filepath.Join(parent, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	st, err := ExtractInitramfs(bytes.NewReader(archive), d)
	return root, st, err
}

func TestExtractInitramfs(t *testing.T) {
	p := gzipped(t, func(w *cpioWriter) {
		w.Dir("etc")
		w.File("etc/hello", 0o644, []byte("hi"))
		w.File("etc/secret", 0o000, []byte("s"))
		w.Symlink("sh", "busybox")
		w.File("init", 0o755, []byte("#!/bin/sh"))
		w.Dir("dev")
		w.CharDev("dev/console", 0o600, 5, 1)
		w.entry("ro", modeDir|0o555, 0, 0, nil)
		w.File("ro/f", 0o644, nil)
	})
	root, st, err := extractTo(t, t.TempDir(), p)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/hello")); string(b) != "hi" {
		t.Fatalf("etc/hello: %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(root, "sh")); l != "busybox" {
		t.Fatalf("symlink: %q", l)
	}
	modes := map[string]fs.FileMode{"init": 0o755, "etc/hello": 0o644, "etc/secret": 0o400, "ro": fs.ModeDir | 0o755, "etc": fs.ModeDir | 0o755}
	for name, want := range modes {
		fi, err := os.Lstat(filepath.Join(root, name))
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode(), err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "dev/console")); !os.IsNotExist(err) {
		t.Errorf("device node created: %v", err)
	}
	if st.SkippedDevices != 1 || st.Entries != 9 || st.Bytes != int64(len("hi")+len("s")+len("busybox")+len("#!/bin/sh")) {
		t.Errorf("stats %+v", st)
	}
}

// Hostile archives are refused, and nothing is written outside the tree:
// not beside it, not through a symlink to an absolute path (the attack of
// issue 10: a symlink to a host file, then a regular file of the same
// name).
func TestExtractHostile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(c *rawCpio, outside string)
		want  string
	}{
		{"symlink then file of the same name", func(c *rawCpio, o string) {
			c.symlink("x", filepath.Join(o, "victim")).file("x", 0o644, "pwned")
		}, "appears twice"},
		{"symlink then file in a directory", func(c *rawCpio, o string) {
			c.dir("etc", 0o755).symlink("etc/cron", filepath.Join(o, "victim")).file("etc/cron", 0o644, "pwned")
		}, "appears twice"},
		{"./-prefixed duplicate", func(c *rawCpio, o string) {
			c.symlink("x", filepath.Join(o, "victim")).file("./x", 0o644, "pwned")
		}, "appears twice"},
		{"symlink then directory of the same name", func(c *rawCpio, o string) {
			c.symlink("d", o).dir("d", 0o755).file("d/victim", 0o644, "pwned")
		}, "appears twice"},
		{"file through a symlinked parent", func(c *rawCpio, o string) {
			c.symlink("up", o).file("up/victim", 0o644, "pwned")
		}, "symlink"},
		{"directory through a symlinked parent", func(c *rawCpio, o string) {
			c.symlink("up", o).dir("up/victim", 0o755)
		}, "symlink"},
		{"symlink through a symlinked parent", func(c *rawCpio, o string) {
			c.symlink("up", o).symlink("up/victim", "/etc/passwd")
		}, "symlink"},
		{"symlink inside the tree as parent", func(c *rawCpio, o string) {
			c.dir("a", 0o755).symlink("b", "a").file("b/victim", 0o644, "pwned")
		}, "symlink"},
		{"dotdot", func(c *rawCpio, o string) { c.file("../victim", 0o644, "pwned") }, "unsafe name"},
		{"dotdot inside", func(c *rawCpio, o string) { c.dir("a", 0o755).file("a/../../victim", 0o644, "pwned") }, "unsafe name"},
		{"absolute", func(c *rawCpio, o string) { c.file(filepath.Join(o, "victim"), 0o644, "pwned") }, "unsafe name"},
		{"double slash", func(c *rawCpio, o string) { c.dir("a", 0o755).file("a//victim", 0o644, "pwned") }, "unsafe name"},
		{"duplicate directories", func(c *rawCpio, o string) { c.dir("a", 0o755).dir("a", 0o700) }, "appears twice"},
		{"file then directory", func(c *rawCpio, o string) { c.file("a", 0o644, "").dir("a", 0o755) }, "appears twice"},
		{"missing parent", func(c *rawCpio, o string) { c.file("nodir/victim", 0o644, "pwned") }, "did not create it"},
		{"file as parent", func(c *rawCpio, o string) { c.file("f", 0o644, "").file("f/victim", 0o644, "pwned") }, "not a directory"},
		{"setuid file", func(c *rawCpio, o string) { c.file("su", 0o4755, "x") }, "setuid"},
		{"setgid directory", func(c *rawCpio, o string) { c.dir("g", 0o2755) }, "setuid"},
		{"sticky directory", func(c *rawCpio, o string) { c.dir("tmp", 0o1777) }, "sticky"},
		{"fifo", func(c *rawCpio, o string) { c.entry("p", unix.S_IFIFO|0o644, 1, nil) }, "FIFO"},
		{"socket", func(c *rawCpio, o string) { c.entry("s", unix.S_IFSOCK|0o644, 1, nil) }, "FIFO or socket"},
		{"unknown type", func(c *rawCpio, o string) { c.entry("u", 0o170000|0o644, 1, nil) }, "unknown type"},
		{"hard link pair", func(c *rawCpio, o string) {
			c.entry("h1", unix.S_IFREG|0o644, 2, nil).entry("h2", unix.S_IFREG|0o644, 2, []byte("x"))
		}, "hard link"},
		{"device with data", func(c *rawCpio, o string) { c.entry("dev", unix.S_IFCHR|0o600, 1, []byte("x")) }, "has data"},
		{"NUL in name", func(c *rawCpio, o string) { c.file("a\x00/../../victim", 0o644, "pwned") }, "NUL-terminated"},
		{"NUL in symlink target", func(c *rawCpio, o string) { c.symlink("l", "a\x00b") }, "NUL"},
		{"root as a file", func(c *rawCpio, o string) { c.file(".", 0o644, "x") }, "root"},
		{"oversized member", func(c *rawCpio, o string) { c.entrySize("big", unix.S_IFREG|0o644, 1, maxEntry+1, nil) }, "limit"},
		{"truncated data", func(c *rawCpio, o string) { c.entrySize("short", unix.S_IFREG|0o644, 1, 100, []byte("x")) }, "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent, outside := t.TempDir(), t.TempDir()
			var c rawCpio
			tc.build(&c, outside)
			root, _, err := extractTo(t, parent, c.gz())
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Fatalf("written outside the tree: %v", ents)
			}
			if !errors.Is(err, ErrArchive) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an ErrArchive saying %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 1 {
				t.Fatalf("written beside the tree: %v", ents)
			}
			filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Name() == "victim" && d.Type().IsRegular() {
					t.Errorf("%s created", p)
				}
				return nil
			})
		})
	}
}

// The entry count is bounded even for entries that create nothing.
func TestExtractEntryLimit(t *testing.T) {
	var c rawCpio
	for i := 0; i <= maxEntries; i++ {
		c.entry(fmt.Sprintf("d%d", i), unix.S_IFCHR|0o600, 1, nil)
	}
	_, _, err := extractTo(t, t.TempDir(), c.gz())
	if !errors.Is(err, ErrArchive) || !strings.Contains(err.Error(), "entries") {
		t.Fatalf("got %v", err)
	}
}

// FuzzExtractInitramfs feeds arbitrary newc bytes (gzipped here) to the
// extractor: it must not panic, and nothing may appear beside the tree.
func FuzzExtractInitramfs(f *testing.F) {
	var c rawCpio
	f.Add(c.dir("a", 0o755).file("a/b", 0o644, "x").symlink("l", "/etc").raw())
	var d rawCpio
	f.Add(d.symlink("x", "/tmp/victim").file("x", 0o644, "x").raw())
	f.Fuzz(func(t *testing.T, raw []byte) {
		parent := t.TempDir()
		extractTo(t, parent, gzipBytes(raw))
		if ents, _ := os.ReadDir(parent); len(ents) != 1 {
			t.Fatalf("written beside the tree: %v", ents)
		}
	})
}
