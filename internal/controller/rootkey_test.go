package controller

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/azote/azote/internal/engine/enginetest"
	"github.com/azote/azote/internal/hostinfo"
)

// TestRootKeyWiring: azoted opens the root key in the form --root-key
// names, refuses another form than the one present with the command that
// moves it, and `azoted root-key migrate` moves it (the same bytes) but
// not while an azoted holds the state directory.
func TestRootKeyWiring(t *testing.T) {
	dir := t.TempDir()
	noTPM := filepath.Join(t.TempDir(), "tpmrm0")
	start := func(cfg Config) (*Controller, error) {
		cfg.StateDir, cfg.TPMDevice = dir, noTPM
		return newController(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), enginetest.New(), hostinfo.Info{Cores: 4})
	}
	c, err := start(Config{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	raw, err := os.ReadFile(filepath.Join(dir, "host.key"))
	if err != nil || len(raw) != 32 {
		t.Fatalf("a first start without a TPM: host.key %d bytes, %v", len(raw), err)
	}
	if _, err := start(Config{RootKey: "tmp"}); err == nil || !strings.Contains(err.Error(), "want auto, file, tpm or passphrase") {
		t.Errorf("--root-key tmp: %v", err)
	}
	if _, err := start(Config{RootKey: "tpm"}); err == nil || !strings.Contains(err.Error(), "azoted root-key migrate --to tpm --state-dir "+dir) {
		t.Errorf("--root-key tpm over a host.key: %v", err)
	}

	run := func(stdin string, args ...string) (int, string) {
		var out bytes.Buffer
		code := rootKeyMain(args, strings.NewReader(stdin), &out)
		return code, out.String()
	}
	for _, args := range [][]string{nil, {"rotate"}, {"migrate"}, {"migrate", "--to", "tpm", "extra"}, {"migrate", "--root-key", "tpm"}} {
		if code, _ := run("", args...); code != 2 {
			t.Errorf("root-key %q: exit %d, want 2 (usage)", args, code)
		}
	}
	if code, out := run("pw\n", "migrate", "--to", "passphrase", "--state-dir", dir, "--tpm-device", noTPM, "--root-key-passphrase-file", "-"); code != 0 {
		t.Fatalf("migrate --to passphrase: exit %d: %s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "host.key")); !os.IsNotExist(err) {
		t.Errorf("host.key after migrating away from it: %v", err)
	}

	pass := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(pass, []byte("pw\n"), 0o400)
	if _, err := start(Config{}); err == nil || !strings.Contains(err.Error(), "--root-key-passphrase-file") {
		t.Errorf("auto on a passphrase form without a passphrase: %v", err)
	}
	c, err = start(Config{RootKeyPassphraseFile: pass})
	if err != nil {
		t.Fatal(err)
	}
	code, out := run("pw\n", "migrate", "--to", "file", "--state-dir", dir, "--root-key-passphrase-file", "-")
	if code != 1 || !strings.Contains(out, "is azoted running") {
		t.Errorf("migrating under a running azoted: exit %d: %s", code, out)
	}
	c.Close()
	if code, out := run("", "migrate", "--to", "file", "--state-dir", dir, "--root-key-passphrase-file", pass); code != 0 {
		t.Fatalf("migrate --to file: exit %d: %s", code, out)
	}
	if back, _ := os.ReadFile(filepath.Join(dir, "host.key")); !bytes.Equal(back, raw) {
		t.Error("host.key after a round trip is not the original bytes")
	}
	c, err = start(Config{RootKey: "file"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
