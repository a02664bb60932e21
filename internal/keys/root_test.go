package keys

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// opened is what OpenRoot gave: the escrow key (which depends on the root
// key alone) and a value wrapped under the root key, to compare keys.
type opened struct {
	src     Source
	escrow  []byte
	wrapped []byte
	host    *Host
}

func openRoot(t *testing.T, cfg RootConfig) opened {
	t.Helper()
	h, esc, src, err := OpenRoot(cfg)
	if err != nil {
		t.Fatalf("OpenRoot(%s): %v", cfg.Source, err)
	}
	defer esc.Free()
	w, err := h.Wrap(Volumes, []byte("a data key"), []byte("vol-1"))
	if err != nil {
		t.Fatal(err)
	}
	return opened{src: src, escrow: bytes.Clone(esc.Bytes()), wrapped: w, host: h}
}

// sameKey fails t unless a and b hold the same root key: the same escrow
// key, and each opens what the other wrapped.
func sameKey(t *testing.T, a, b opened) {
	t.Helper()
	if !bytes.Equal(a.escrow, b.escrow) {
		t.Fatal("the escrow keys differ: not the same root key")
	}
	for _, x := range [][2]opened{{a, b}, {b, a}} {
		if got, err := x[0].host.Unwrap(Volumes, x[1].wrapped, []byte("vol-1")); err != nil || string(got) != "a data key" {
			t.Fatalf("does not open what the other wrapped: %v", err)
		}
	}
}

// escrowOf is the escrow key of a raw root key, as hostFromKey derives
// it; written out here so a change of the derivation is seen.
func escrowOf(key []byte) []byte {
	m := hmac.New(sha256.New, []byte("azote host key: card escrow"))
	m.Write(key)
	return m.Sum(nil)
}

// names lists the files of dir.
func names(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

func writePassphrase(t *testing.T, pass string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(p, []byte(pass), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func noTPM(t *testing.T) string { return filepath.Join(t.TempDir(), "no-tpmrm0") }

// TestRootFile: without a TPM, auto keeps today's host.key: 32 raw bytes,
// mode 0400, the same bytes OpenHost reads, the escrow key derived from
// them as before; a file others may read, or of another size, is refused.
func TestRootFile(t *testing.T) {
	dir := t.TempDir()
	cfg := RootConfig{StateDir: dir, TPMDevice: noTPM(t)}
	first := openRoot(t, cfg)
	if first.src != SourceFile {
		t.Fatalf("auto without a TPM chose %s", first.src)
	}
	if got := names(t, dir); len(got) != 1 || got[0] != "host.key" {
		t.Fatalf("state dir holds %q, want host.key alone", got)
	}
	path := filepath.Join(dir, "host.key")
	raw, err := os.ReadFile(path)
	if err != nil || len(raw) != 32 {
		t.Fatalf("host.key: %d bytes, %v", len(raw), err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o400 {
		t.Errorf("host.key mode %o, want 400", st.Mode().Perm())
	}
	if !bytes.Equal(first.escrow, escrowOf(raw)) {
		t.Error("the escrow key is not derived from host.key as before")
	}
	h, esc, err := OpenHost(path)
	if err != nil {
		t.Fatal(err)
	}
	sameKey(t, first, opened{escrow: bytes.Clone(esc.Bytes()), host: h, wrapped: mustWrap(t, h)})
	esc.Free()
	cfg.Source = SourceFile
	sameKey(t, first, openRoot(t, cfg))

	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := OpenRoot(cfg); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("a host.key its group may read: %v", err)
	}
	os.Chmod(path, 0o400)
	os.Remove(path)
	if err := os.WriteFile(path, raw[:31], 0o400); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := OpenRoot(cfg); err == nil {
		t.Error("a 31-byte host.key was accepted")
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, raw[:31]) {
		t.Error("a refused host.key was changed")
	}
}

func mustWrap(t *testing.T, h *Host) []byte {
	t.Helper()
	w, err := h.Wrap(Volumes, []byte("a data key"), []byte("vol-1"))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestRootPassphrase: the passphrase form opens with its passphrase alone;
// a wrong one is ErrWrongPassphrase and leaves everything as it was (no
// new key); the passphrase file must be the owner's alone; standard input
// works; the argon2id parameters are read from the file.
func TestRootPassphrase(t *testing.T) {
	dir := t.TempDir()
	pass := writePassphrase(t, "correct horse battery staple\n", 0o400)
	cfg := RootConfig{StateDir: dir, Source: SourcePassphrase, PassphraseFile: pass, TPMDevice: noTPM(t)}
	first := openRoot(t, cfg)
	if got := names(t, dir); len(got) != 1 || got[0] != "host.key.argon2" {
		t.Fatalf("state dir holds %q, want host.key.argon2 alone", got)
	}
	path := filepath.Join(dir, "host.key.argon2")
	sealed, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o400 {
		t.Errorf("host.key.argon2 mode %o, want 400", st.Mode().Perm())
	}
	b, err := parseArgon2Blob(sealed)
	if err != nil {
		t.Fatal(err)
	}
	if b.params != (argon2Params{Time: 3, MemoryKiB: 64 << 10, Threads: 2}) || len(b.salt) != 16 {
		t.Errorf("argon2id parameters %+v, %d-byte salt; want time 3, 64 MiB, 2 threads, 16 bytes", b.params, len(b.salt))
	}

	// Auto opens the form present; the same passphrase from standard
	// input, as one line, opens it too.
	auto := cfg
	auto.Source = SourceAuto
	sameKey(t, first, openRoot(t, auto))
	stdin := cfg
	stdin.PassphraseFile, stdin.Stdin = "-", strings.NewReader("correct horse battery staple\nnot read")
	sameKey(t, first, openRoot(t, stdin))
	// Standard input gives the passphrase once, though a first start both
	// writes the form and reads it back.
	stdin.StateDir, stdin.Stdin = t.TempDir(), strings.NewReader("another\n")
	openRoot(t, stdin)

	for _, tc := range []struct {
		name string
		cfg  func(RootConfig) RootConfig
		want error  // nil: any error
		text string // in the error
	}{
		{"wrong passphrase", func(c RootConfig) RootConfig {
			c.PassphraseFile = writePassphrase(t, "correct horse battery stapler\n", 0o400)
			return c
		}, ErrWrongPassphrase, "does not open"},
		{"wrong passphrase on stdin", func(c RootConfig) RootConfig {
			c.PassphraseFile, c.Stdin = "-", strings.NewReader("Correct horse battery staple\n")
			return c
		}, ErrWrongPassphrase, ""},
		{"no passphrase file", func(c RootConfig) RootConfig { c.PassphraseFile = ""; return c }, nil, "--root-key-passphrase-file"},
		{"passphrase file others read", func(c RootConfig) RootConfig {
			c.PassphraseFile = writePassphrase(t, "correct horse battery staple\n", 0o644)
			return c
		}, nil, "chmod 400"},
		{"passphrase file its group reads", func(c RootConfig) RootConfig {
			c.PassphraseFile = writePassphrase(t, "correct horse battery staple\n", 0o640)
			return c
		}, nil, "mode 640"},
		{"passphrase file is a symbolic link", func(c RootConfig) RootConfig {
			l := filepath.Join(t.TempDir(), "link")
			os.Symlink(pass, l)
			c.PassphraseFile = l
			return c
		}, nil, ""},
		{"passphrase file missing", func(c RootConfig) RootConfig {
			c.PassphraseFile = filepath.Join(t.TempDir(), "none")
			return c
		}, os.ErrNotExist, ""},
		{"empty passphrase", func(c RootConfig) RootConfig {
			c.PassphraseFile = writePassphrase(t, "\n", 0o400)
			return c
		}, nil, "empty"},
		{"passphrase too long", func(c RootConfig) RootConfig {
			c.PassphraseFile = writePassphrase(t, strings.Repeat("x", maxPassphrase+1), 0o400)
			return c
		}, nil, "longer than"},
		{"sealed file others may read", func(c RootConfig) RootConfig {
			os.Chmod(path, 0o644)
			return c
		}, nil, "chmod 400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer os.Chmod(path, 0o400)
			_, _, _, err := OpenRoot(tc.cfg(cfg))
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %v with %q", err, tc.want, tc.text)
			}
			if got := names(t, dir); len(got) != 1 {
				t.Errorf("state dir holds %q after a refusal", got)
			}
			if now, _ := os.ReadFile(path); !bytes.Equal(now, sealed) {
				t.Error("a refusal changed host.key.argon2")
			}
		})
	}
	if os.Geteuid() == 0 {
		other := writePassphrase(t, "correct horse battery staple\n", 0o400)
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		c := cfg
		c.PassphraseFile = other
		if _, _, _, err := OpenRoot(c); err == nil || !strings.Contains(err.Error(), "not owned by uid 0") {
			t.Errorf("a passphrase file owned by another user: %v", err)
		}
	}

	// Parameters other than today's, as a later azoted may write: they
	// are read from the file.
	key := make([]byte, 32)
	copy(key, "a root key of thirty-two bytes!!")
	old := argon2Blob{params: argon2Params{Time: 1, MemoryKiB: 8 << 10, Threads: 1}, salt: bytes.Repeat([]byte{7}, 24)}
	w, err := old.passphraseKey([]byte("correct horse battery staple"))
	if err != nil {
		t.Fatal(err)
	}
	if old.wrapped, err = w.Wrap(key, old.wrapContext()); err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	if err := os.WriteFile(path, old.marshal(), 0o400); err != nil {
		t.Fatal(err)
	}
	if got := openRoot(t, cfg); !bytes.Equal(got.escrow, escrowOf(key)) {
		t.Error("a file with other argon2id parameters opens to another key")
	}
}

// TestRootPassphraseCorrupt: a truncated or changed host.key.argon2 is
// refused before any derivation (ErrCorruptRootKey) or, for a changed
// parameter or ciphertext, by the wrap's authentication; never replaced.
func TestRootPassphraseCorrupt(t *testing.T) {
	dir := t.TempDir()
	cfg := RootConfig{StateDir: dir, Source: SourcePassphrase, PassphraseFile: writePassphrase(t, "pw\n", 0o600)}
	openRoot(t, cfg)
	path := filepath.Join(dir, "host.key.argon2")
	good, _ := os.ReadFile(path)
	put := func(data []byte) {
		os.Remove(path)
		if err := os.WriteFile(path, data, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	for n := 0; n < len(good); n++ {
		put(good[:n])
		if _, _, _, err := OpenRoot(cfg); !errors.Is(err, ErrCorruptRootKey) {
			t.Fatalf("truncated to %d bytes: %v, want ErrCorruptRootKey", n, err)
		}
	}
	withTime := func(v uint32) []byte {
		b := bytes.Clone(good)
		b[8], b[9], b[10], b[11] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
		return b
	}
	withMem := func(v uint32) []byte {
		b := bytes.Clone(good)
		b[12], b[13], b[14], b[15] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
		return b
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"one byte more", append(bytes.Clone(good), 0), ErrCorruptRootKey},
		{"another magic", append([]byte("AZTPMRK1"), good[8:]...), ErrCorruptRootKey},
		{"no pass", withTime(0), ErrCorruptRootKey},
		{"a thousand passes", withTime(1000), ErrCorruptRootKey},
		{"64 GiB of memory", withMem(64 << 20), ErrCorruptRootKey},
		{"no thread", func() []byte { b := bytes.Clone(good); b[16] = 0; return b }(), ErrCorruptRootKey},
		{"another pass count", withTime(2), ErrWrongPassphrase},
		{"a changed ciphertext", func() []byte { b := bytes.Clone(good); b[len(b)-20] ^= 1; return b }(), ErrWrongPassphrase},
		{"a changed salt", func() []byte { b := bytes.Clone(good); b[18] ^= 1; return b }(), ErrWrongPassphrase},
	} {
		put(tc.data)
		if _, _, _, err := OpenRoot(cfg); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if now, _ := os.ReadFile(path); !bytes.Equal(now, tc.data) {
			t.Errorf("%s: the refused file was changed", tc.name)
		}
	}
}

// TestRootForms: azoted never changes a key's form on its own: another
// form asked for than the one present, or more than one form present, is
// refused with what to run, and nothing is made or changed.
func TestRootForms(t *testing.T) {
	pass := writePassphrase(t, "pw\n", 0o400)
	key := []byte("a root key of thirty-two bytes!!")
	for _, tc := range []struct {
		name    string
		present []string
		source  Source
		want    error
		text    string
	}{
		{"tpm asked, host.key present", []string{"host.key"}, SourceTPM, ErrRootKeyForm, "azoted root-key migrate --to tpm"},
		{"passphrase asked, host.key present", []string{"host.key"}, SourcePassphrase, ErrRootKeyForm, "azoted root-key migrate --to passphrase"},
		{"file asked, tpm present", []string{"host.key.tpm"}, SourceFile, ErrRootKeyForm, "as tpm (host.key.tpm)"},
		{"tpm asked, passphrase present", []string{"host.key.argon2"}, SourceTPM, ErrRootKeyForm, "migrate --to tpm"},
		{"two forms, auto", []string{"host.key", "host.key.tpm"}, SourceAuto, ErrRootKeyForms, "host.key and host.key.tpm"},
		{"two forms, one asked", []string{"host.key", "host.key.argon2"}, SourceFile, ErrRootKeyForms, "interrupted migration"},
		{"three forms", []string{"host.key", "host.key.tpm", "host.key.argon2"}, SourcePassphrase, ErrRootKeyForms, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, n := range tc.present {
				if err := os.WriteFile(filepath.Join(dir, n), key, 0o400); err != nil {
					t.Fatal(err)
				}
			}
			cfg := RootConfig{StateDir: dir, Source: tc.source, PassphraseFile: pass, TPMDevice: noTPM(t)}
			_, _, _, err := OpenRoot(cfg)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %v with %q", err, tc.want, tc.text)
			}
			if got := names(t, dir); len(got) != len(tc.present) {
				t.Errorf("state dir holds %q after a refusal", got)
			}
		})
	}
	if _, err := ParseSource("tmp"); err == nil {
		t.Error("--root-key tmp accepted")
	}
	if s, err := ParseSource(""); err != nil || s != SourceAuto {
		t.Errorf("no --root-key: %s, %v", s, err)
	}
}

// TestMigrateFilePassphrase: a host.key migrated to the passphrase form
// and back is the same 32 bytes; the old form is overwritten with zeros
// before it is unlinked; an interrupted migration is refused at start and
// finished by running it again, unless the two forms hold different keys.
func TestMigrateFilePassphrase(t *testing.T) {
	dir := t.TempDir()
	pass := writePassphrase(t, "pw\n", 0o400)
	cfg := RootConfig{StateDir: dir, PassphraseFile: pass, TPMDevice: noTPM(t)}
	first := openRoot(t, cfg)
	hostKey := filepath.Join(dir, "host.key")
	raw, _ := os.ReadFile(hostKey)
	// A second name of the old file shows what migration left in it.
	peek := filepath.Join(t.TempDir(), "peek")
	if err := os.Link(hostKey, peek); err != nil {
		t.Fatal(err)
	}

	if err := MigrateRoot(cfg, SourcePassphrase); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); len(got) != 1 || got[0] != "host.key.argon2" {
		t.Fatalf("after migrate --to passphrase the state dir holds %q", got)
	}
	if left, _ := os.ReadFile(peek); len(left) != 32 || !bytes.Equal(left, make([]byte, 32)) {
		t.Errorf("the old host.key was not overwritten with zeros: %x", left)
	}
	sealed, _ := os.ReadFile(filepath.Join(dir, "host.key.argon2"))
	if bytes.Contains(sealed, raw) {
		t.Error("host.key.argon2 holds the key in clear")
	}
	cfg.Source = SourcePassphrase
	sameKey(t, first, openRoot(t, cfg))
	cfg.Source = SourceFile
	if _, _, _, err := OpenRoot(cfg); !errors.Is(err, ErrRootKeyForm) {
		t.Errorf("--root-key file after migrating away from it: %v", err)
	}

	wrong := cfg
	wrong.PassphraseFile = writePassphrase(t, "pw2\n", 0o400)
	if err := MigrateRoot(wrong, SourceFile); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("migrating with a wrong passphrase: %v", err)
	}
	if got := names(t, dir); len(got) != 1 {
		t.Errorf("a refused migration left %q", got)
	}
	if err := MigrateRoot(cfg, SourcePassphrase); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("migrating to the form present: %v", err)
	}
	if err := MigrateRoot(cfg, SourceAuto); err == nil {
		t.Error("migrate --to auto accepted")
	}

	if err := MigrateRoot(cfg, SourceFile); err != nil {
		t.Fatal(err)
	}
	if back, _ := os.ReadFile(hostKey); !bytes.Equal(back, raw) {
		t.Fatal("host.key after a round trip is not the original bytes")
	}
	if st, _ := os.Stat(hostKey); st.Mode().Perm() != 0o400 {
		t.Errorf("host.key mode %o after migration", st.Mode().Perm())
	}
	if got := names(t, dir); len(got) != 1 {
		t.Errorf("state dir holds %q", got)
	}

	// Interrupted: the new form written, the old one still there.
	if err := sealPassphraseFile(&rootOpen{RootConfig: cfg}, raw); err != nil {
		t.Fatal(err)
	}
	cfg.Source = SourceAuto
	if _, _, _, err := OpenRoot(cfg); !errors.Is(err, ErrRootKeyForms) {
		t.Fatalf("start after an interrupted migration: %v", err)
	}
	if err := MigrateRoot(cfg, SourcePassphrase); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); len(got) != 1 || got[0] != "host.key.argon2" {
		t.Fatalf("the finished migration left %q", got)
	}
	sameKey(t, first, openRoot(t, cfg))

	// Two forms of two keys: neither is destroyed.
	if err := os.WriteFile(hostKey, bytes.Repeat([]byte{1}, 32), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := MigrateRoot(cfg, SourceFile); !errors.Is(err, ErrRootKeyForms) || !strings.Contains(err.Error(), "different keys") {
		t.Errorf("two forms of two keys: %v", err)
	}
	if got := names(t, dir); len(got) != 2 {
		t.Errorf("a refused migration left %q", got)
	}
	if err := MigrateRoot(RootConfig{StateDir: t.TempDir()}, SourceTPM); !errors.Is(err, ErrNoRootKey) {
		t.Errorf("migrating nothing: %v", err)
	}
}
