package image

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"
)

func archive(t *testing.T, build func(w *cpioWriter)) string {
	var raw bytes.Buffer
	w := newCpioWriter(&raw)
	build(w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	p := filepath.Join(t.TempDir(), "initrd")
	os.WriteFile(p, gz.Bytes(), 0o600)
	return p
}

func TestExtractInitramfs(t *testing.T) {
	p := archive(t, func(w *cpioWriter) {
		w.Dir("etc")
		w.File("etc/hello", 0o644, []byte("hi"))
		w.Symlink("sh", "busybox")
		w.File("init", 0o755, []byte("#!/bin/sh"))
	})
	dir := t.TempDir()
	if err := ExtractInitramfs(p, dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "etc/hello")); string(b) != "hi" {
		t.Fatalf("etc/hello: %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "sh")); l != "busybox" {
		t.Fatalf("symlink: %q", l)
	}
	for name, build := range map[string]func(w *cpioWriter){
		"dotdot":       func(w *cpioWriter) { w.File("../evil", 0o644, []byte("x")) },
		"through link": func(w *cpioWriter) { w.Symlink("up", "/tmp"); w.File("up/evil", 0o644, []byte("x")) },
	} {
		if err := ExtractInitramfs(archive(t, build), t.TempDir()); err == nil {
			t.Errorf("%s: extracted", name)
		}
	}
}
