package durable

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// entries lists the names in dir, so a test can see a temporary file left
// behind.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestWriteFile(t *testing.T) {
	// A umask that would strip the group and other bits must not change
	// the mode asked for: a certificate is written 0644 on purpose.
	old := syscall.Umask(0o077)
	t.Cleanup(func() { syscall.Umask(old) })

	for _, tc := range []struct {
		name   string
		old    []byte // nil: no file before
		data   []byte
		mode   os.FileMode
		linked bool // path is a symbolic link to another file
	}{
		{name: "create", data: []byte("key"), mode: 0o400},
		{name: "create empty", data: []byte{}, mode: 0o600},
		{name: "umask does not apply", data: []byte("cert"), mode: 0o644},
		{name: "replace", old: []byte("a longer old content"), data: []byte("new"), mode: 0o644},
		{name: "replace read-only", old: []byte("old"), data: []byte("new"), mode: 0o400},
		{name: "replace link, not its target", old: []byte("target"), data: []byte("new"), mode: 0o600, linked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			target := filepath.Join(dir, "target")
			if tc.old != nil {
				p := path
				if tc.linked {
					p = target
					if err := os.Symlink(target, path); err != nil {
						t.Fatal(err)
					}
				}
				if err := os.WriteFile(p, tc.old, 0o400); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFile(path, tc.data, tc.mode); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(tc.data) {
				t.Errorf("content %q, want %q", got, tc.data)
			}
			st, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if !st.Mode().IsRegular() || st.Mode().Perm() != tc.mode {
				t.Errorf("mode %v, want regular %v", st.Mode(), tc.mode)
			}
			if tc.linked {
				if b, err := os.ReadFile(target); err != nil || string(b) != string(tc.old) {
					t.Errorf("link target now %q (%v), want it untouched %q", b, err, tc.old)
				}
			}
			want := 1
			if tc.linked {
				want = 2
			}
			if names := entries(t, dir); len(names) != want {
				t.Errorf("directory holds %q, want only the file (no temporary left)", names)
			}
		})
	}
}

func TestWriteFileFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()

	// A directory where the file should go: the rename fails after the
	// temporary file was written, which must then be removed.
	path := filepath.Join(dir, "f")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("x"), 0o600); err == nil {
		t.Fatal("WriteFile over a directory succeeded")
	}
	if names := entries(t, dir); len(names) != 1 || names[0] != "f" {
		t.Errorf("directory holds %q after a failed write, want only f", names)
	}

	if err := WriteFile(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteFile in a missing directory: %v, want fs.ErrNotExist", err)
	}
}

func TestWriteFileRelative(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := WriteFile("f", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile("f"); err != nil || string(b) != "x" {
		t.Fatalf("read back %q, %v", b, err)
	}
}
