package keys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRootTPM runs against swtpm: the root key sealed by one TPM opens
// again after that TPM restarts, and auto picks it; the file is refused
// by another TPM (ErrSealedElsewhere) and, changed or truncated, by this
// one; the key never crosses the bus in clear.
func TestRootTPM(t *testing.T) {
	tpmState := t.TempDir()
	sw := startSWTPM(t, tpmState)
	dir := t.TempDir()
	cfg := sw.config(dir)
	var tap bus
	cfg.OpenTPM = tap.open

	first := openRoot(t, cfg)
	if first.src != SourceTPM {
		t.Fatalf("source %s", first.src)
	}
	if got := names(t, dir); len(got) != 1 || got[0] != "host.key.tpm" {
		t.Fatalf("state dir holds %q, want host.key.tpm alone", got)
	}
	path := filepath.Join(dir, "host.key.tpm")
	sealed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o400 {
		t.Errorf("host.key.tpm mode %o, want 400", st.Mode().Perm())
	}
	if tap.len() == 0 {
		t.Fatal("nothing crossed the tapped transport")
	}

	// The same TPM after a restart (its state directory kept): auto
	// opens the form present and gets the same key.
	sw.stop()
	sw = startSWTPM(t, tpmState)
	auto := sw.config(dir)
	auto.Source = SourceAuto
	again := openRoot(t, auto)
	if again.src != SourceTPM {
		t.Fatalf("auto on a sealed key chose %s", again.src)
	}
	sameKey(t, first, again)
	cfg = sw.config(dir)

	// A first start with auto where the device exists seals in the TPM.
	fresh := sw.config(t.TempDir())
	fresh.Source = SourceAuto
	if o := openRoot(t, fresh); o.src != SourceTPM || bytes.Equal(o.escrow, first.escrow) {
		t.Errorf("auto with a TPM device: %s (a new key: %v)", o.src, !bytes.Equal(o.escrow, first.escrow))
	}

	put := func(data []byte) {
		os.Remove(path)
		if err := os.WriteFile(path, data, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	b, _, err := parseTPMBlob(sealed)
	if err != nil {
		t.Fatal(err)
	}
	changed := func(f func(*tpmBlob)) []byte {
		c := tpmBlob{srk: b.srk, srkName: bytes.Clone(b.srkName), public: bytes.Clone(b.public), private: bytes.Clone(b.private)}
		f(&c)
		return c.marshal()
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
		text string
	}{
		{"a changed private part", changed(func(c *tpmBlob) { c.private[len(c.private)/2] ^= 1 }), ErrCorruptRootKey, "does not load"},
		{"a changed private tail", changed(func(c *tpmBlob) { c.private[len(c.private)-1] ^= 0x80 }), ErrCorruptRootKey, ""},
		// The object's attributes (4 bytes after type and name algorithm):
		// still a sealed object, but not the one the private part is bound to.
		{"changed attributes", changed(func(c *tpmBlob) { c.public[7] ^= 0x40 }), ErrCorruptRootKey, ""},
		{"another object type", changed(func(c *tpmBlob) { c.public[1] = 0x01 }), ErrCorruptRootKey, ""},
		{"a changed SRK name", changed(func(c *tpmBlob) { c.srkName[5] ^= 1 }), ErrSealedElsewhere, "another machine's TPM"},
		{"another SRK template", changed(func(c *tpmBlob) { c.srk = 2 }), ErrCorruptRootKey, "template"},
		{"one byte more", append(bytes.Clone(sealed), 0), ErrCorruptRootKey, "after the sealed object"},
	} {
		put(tc.data)
		_, _, _, err := OpenRoot(cfg)
		t.Logf("%s: %v", tc.name, err)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: %v, want %v with %q", tc.name, err, tc.want, tc.text)
		}
	}
	for n := 0; n < len(sealed); n++ {
		put(sealed[:n])
		if _, _, _, err := OpenRoot(cfg); !errors.Is(err, ErrCorruptRootKey) {
			t.Fatalf("truncated to %d bytes: %v, want ErrCorruptRootKey", n, err)
		}
	}
	put(sealed)
	os.Chmod(path, 0o644)
	if _, _, _, err := OpenRoot(cfg); err == nil || !strings.Contains(err.Error(), "chmod 400") {
		t.Errorf("a host.key.tpm others may read: %v", err)
	}
	os.Chmod(path, 0o400)
	sameKey(t, first, openRoot(t, cfg))

	// Another TPM (a fresh state directory: another owner seed).
	other := startSWTPM(t, t.TempDir())
	_, _, _, err = OpenRoot(other.config(dir))
	t.Logf("another TPM: %v", err)
	if !errors.Is(err, ErrSealedElsewhere) {
		t.Fatalf("another TPM: %v, want ErrSealedElsewhere", err)
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, sealed) {
		t.Error("a refusal changed host.key.tpm")
	}
	if got := names(t, dir); len(got) != 1 {
		t.Errorf("state dir holds %q after a refusal", got)
	}
	// Sealed by the other TPM, with this TPM's SRK name written over its
	// own: the name check passes, and this TPM refuses the object itself.
	otherDir := t.TempDir()
	openRoot(t, other.config(otherDir))
	foreign, _ := os.ReadFile(filepath.Join(otherDir, "host.key.tpm"))
	fb, _, err := parseTPMBlob(foreign)
	if err != nil {
		t.Fatal(err)
	}
	fb.srkName = b.srkName
	put(fb.marshal())
	_, _, _, err = OpenRoot(cfg)
	t.Logf("another TPM's object under this TPM's SRK name: %v", err)
	if !errors.Is(err, ErrCorruptRootKey) || !strings.Contains(err.Error(), "does not load") {
		t.Errorf("another TPM's object under this TPM's SRK name: %v, want ErrCorruptRootKey", err)
	}
	put(sealed)

	// A TPM that cannot be reached is an error, not a new key.
	gone := sw.config(dir)
	gone.TPMDevice = filepath.Join(t.TempDir(), "none")
	if _, _, _, err := OpenRoot(gone); err == nil || !strings.Contains(err.Error(), "opening the TPM") {
		t.Errorf("no TPM: %v", err)
	}
}

// TestMigrateTPM: a host.key sealed into the TPM and migrated back is the
// same 32 bytes, which never crossed the bus in clear, neither when
// sealed nor when unsealed; the passphrase form moves to the TPM too.
func TestMigrateTPM(t *testing.T) {
	sw := startSWTPM(t, t.TempDir())
	dir := t.TempDir()
	cfg := sw.config(dir)
	var tap bus
	cfg.OpenTPM = tap.open
	cfg.Source = SourceFile
	first := openRoot(t, cfg)
	hostKey := filepath.Join(dir, "host.key")
	raw, _ := os.ReadFile(hostKey)

	if err := MigrateRoot(cfg, SourceTPM); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); len(got) != 1 || got[0] != "host.key.tpm" {
		t.Fatalf("after migrate --to tpm the state dir holds %q", got)
	}
	sealed, _ := os.ReadFile(filepath.Join(dir, "host.key.tpm"))
	if bytes.Contains(sealed, raw) {
		t.Error("host.key.tpm holds the key in clear")
	}
	cfg.Source = SourceTPM
	sameKey(t, first, openRoot(t, cfg))
	if tap.len() < 1000 || tap.contains(raw) || tap.contains(raw[:16]) || tap.contains(raw[16:]) {
		t.Errorf("the root key crossed the TPM bus in clear (%d bytes seen)", tap.len())
	}
	cfg.Source = SourceFile
	if _, _, _, err := OpenRoot(cfg); !errors.Is(err, ErrRootKeyForm) || !strings.Contains(err.Error(), "migrate --to file") {
		t.Errorf("--root-key file after migrating to the TPM: %v", err)
	}

	if err := MigrateRoot(cfg, SourceFile); err != nil {
		t.Fatal(err)
	}
	if back, _ := os.ReadFile(hostKey); !bytes.Equal(back, raw) {
		t.Fatal("host.key after a round trip through the TPM is not the original bytes")
	}

	cfg.PassphraseFile = writePassphrase(t, "pw\n", 0o400)
	if err := MigrateRoot(cfg, SourcePassphrase); err != nil {
		t.Fatal(err)
	}
	if err := MigrateRoot(cfg, SourceTPM); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); len(got) != 1 || got[0] != "host.key.tpm" {
		t.Fatalf("after passphrase → tpm the state dir holds %q", got)
	}
	cfg.Source = SourceAuto
	o := openRoot(t, cfg)
	sameKey(t, first, o)
	if !bytes.Equal(o.escrow, escrowOf(raw)) {
		t.Error("the escrow key from the TPM differs from the one host.key gave")
	}
}
