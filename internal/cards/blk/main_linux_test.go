package blk

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStartupLogIO: the start-up line names the page cache and says that
// the path is chosen by measurement, rather than naming one path as if
// every transfer took it; O_DIRECT and an unmappable file are fixed and
// say so.
func TestStartupLogIO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "vol.img")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := New(Config{File: f, Queues: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.IOPath() != "mapped" {
		t.Fatalf("a page-cache device on a regular file has io path %q, want mapped", d.IOPath())
	}
	for _, tc := range []struct {
		ioPath string
		want   []string
		not    []string
	}{
		{ioPath: d.IOPath(), want: []string{"io=page-cache", "measures cheaper", "starts mapped"}, not: []string{"io=mapped"}},
		{ioPath: "direct", want: []string{"io=direct"}, not: []string{"transfers="}},
		{ioPath: "pread", want: []string{"io=page-cache", "could not be mapped"}, not: []string{"measure"}},
	} {
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("serving", ioLogAttrs(tc.ioPath)...)
		line := buf.String()
		for _, w := range tc.want {
			if !strings.Contains(line, w) {
				t.Errorf("%s: %q lacks %q", tc.ioPath, line, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(line, n) {
				t.Errorf("%s: %q holds %q", tc.ioPath, line, n)
			}
		}
	}
}
