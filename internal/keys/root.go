package keys

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"

	"github.com/azote/azote/internal/durable"
	"github.com/azote/azote/internal/keymem"
)

// Source is where the host root key is kept at rest. Whatever the source,
// the key is the same 32 bytes once opened, so everything wrapped under
// it, and the escrow key derived from it, is unchanged by a migration.
type Source string

// The root key sources (azoted --root-key).
const (
	// SourceAuto opens the form the state directory already holds; on a
	// first start it seals in the TPM when its device exists, else it
	// writes a key file.
	SourceAuto Source = "auto"
	// SourceFile is the 32 raw bytes in host.key, readable by root only:
	// whoever reads the file holds the key.
	SourceFile Source = "file"
	// SourceTPM is the key sealed by this machine's TPM 2.0 in
	// host.key.tpm: the file opens nowhere else.
	SourceTPM Source = "tpm"
	// SourcePassphrase is the key wrapped under a key derived from a
	// passphrase with argon2id in host.key.argon2: no key on disk.
	SourcePassphrase Source = "passphrase"
)

// DefaultTPMDevice is the kernel's TPM resource manager, which flushes
// what a process leaves loaded in the TPM when it exits.
const DefaultTPMDevice = "/dev/tpmrm0"

// The root key's files in the state directory, one per source; a state
// directory holds exactly one of them once azoted has started.
const (
	rootFileName       = "host.key"
	rootTPMName        = "host.key.tpm"
	rootPassphraseName = "host.key.argon2"
)

// The sources that keep a file, in the order they are reported.
var rootSources = []Source{SourceFile, SourceTPM, SourcePassphrase}

// ErrRootKeyForm is returned when the root key is kept in another form
// than the one asked for: the operator migrates it, never azoted on its
// own.
var ErrRootKeyForm = errors.New("keys: the root key is kept in another form")

// ErrRootKeyForms is returned when the state directory holds more than
// one form of the root key, which only an interrupted migration leaves.
var ErrRootKeyForms = errors.New("keys: more than one form of the root key")

// ErrNoRootKey is returned by MigrateRoot when there is no root key.
var ErrNoRootKey = errors.New("keys: no root key")

// ErrWrongPassphrase is returned when the passphrase does not open the
// root key. A new key is never made in its place.
var ErrWrongPassphrase = errors.New("keys: the passphrase does not open the root key")

// ErrSealedElsewhere is returned when host.key.tpm was sealed under
// another storage root key than this TPM's: another machine's TPM, or
// this one after its owner hierarchy was cleared.
var ErrSealedElsewhere = errors.New("keys: the root key was sealed by another TPM")

// ErrCorruptRootKey is returned for a root key file that does not parse
// (truncated, changed, or not azote's).
var ErrCorruptRootKey = errors.New("keys: the root key file is corrupt")

// RootConfig says where the root key is and how to open it.
type RootConfig struct {
	// StateDir holds the root key's file.
	StateDir string
	// Source is the form asked for ("" is SourceAuto).
	Source Source
	// TPMDevice is the TPM's device ("" is DefaultTPMDevice); with
	// SourceAuto, the TPM is used for a new key when it exists.
	TPMDevice string
	// OpenTPM opens TPMDevice; nil opens a character device
	// (linuxtpm.Open). Tests give swtpm's socket.
	OpenTPM func(path string) (transport.TPMCloser, error)
	// PassphraseFile holds the passphrase of SourcePassphrase: a file
	// owned by the user azoted runs as (root), mode 0400 or 0600, or "-"
	// for one line of Stdin.
	PassphraseFile string
	// Stdin is read for PassphraseFile "-" (nil is os.Stdin).
	Stdin io.Reader
}

// rootOpen is one OpenRoot or MigrateRoot: the passphrase is read once
// for it, since standard input gives it once, though the passphrase form
// may be both written and read back.
type rootOpen struct {
	RootConfig
	pass *keymem.Buf
}

func (o *rootOpen) passphrase() (*keymem.Buf, error) {
	if o.pass == nil {
		p, err := readPassphrase(o.RootConfig)
		if err != nil {
			return nil, err
		}
		o.pass = p
	}
	return o.pass, nil
}

func (o *rootOpen) free() { o.pass.Free() }

func (c RootConfig) path(s Source) string {
	switch s {
	case SourceTPM:
		return filepath.Join(c.StateDir, rootTPMName)
	case SourcePassphrase:
		return filepath.Join(c.StateDir, rootPassphraseName)
	}
	return filepath.Join(c.StateDir, rootFileName)
}

func (c RootConfig) device() string {
	if c.TPMDevice == "" {
		return DefaultTPMDevice
	}
	return c.TPMDevice
}

func (c RootConfig) openTPM() (transport.TPMCloser, error) {
	open := c.OpenTPM
	if open == nil {
		open = linuxtpm.Open
	}
	t, err := open(c.device())
	if err != nil {
		return nil, fmt.Errorf("root key: opening the TPM %s: %w", c.device(), err)
	}
	return t, nil
}

// ParseSource reads a --root-key value.
func ParseSource(s string) (Source, error) {
	switch src := Source(s); src {
	case SourceAuto, SourceFile, SourceTPM, SourcePassphrase:
		return src, nil
	case "":
		return SourceAuto, nil
	}
	return "", fmt.Errorf("--root-key %q: want auto, file, tpm or passphrase", s)
}

// present lists the forms of the root key the state directory holds.
func (c RootConfig) present() ([]Source, error) {
	var found []Source
	for _, s := range rootSources {
		_, err := os.Lstat(c.path(s))
		if err == nil {
			found = append(found, s)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("root key: %w", err)
		}
	}
	return found, nil
}

func (c RootConfig) describe(forms []Source) string {
	var names []string
	for _, s := range forms {
		names = append(names, filepath.Base(c.path(s)))
	}
	return strings.Join(names, " and ")
}

// OpenRoot opens the host root key in the form cfg asks for, making a new
// random one on the first start (no form present), and returns its
// wrapper, the escrow key derived from it (as OpenHost) and the source
// it came from. It never changes the form of an existing key and never
// replaces one it cannot open: that is MigrateRoot's, run by the
// operator.
func OpenRoot(cfg RootConfig) (*Host, *keymem.Buf, Source, error) {
	src, err := ParseSource(string(cfg.Source))
	if err != nil {
		return nil, nil, "", err
	}
	forms, err := cfg.present()
	if err != nil {
		return nil, nil, "", err
	}
	if len(forms) > 1 {
		return nil, nil, "", fmt.Errorf("%w: %s holds %s, as an interrupted migration leaves them: run `azoted root-key migrate --to FORM --state-dir %s` again with the form you meant; it finishes once both open to the same key",
			ErrRootKeyForms, cfg.StateDir, cfg.describe(forms), cfg.StateDir)
	}
	switch {
	case len(forms) == 1 && src == SourceAuto:
		src = forms[0]
	case len(forms) == 1 && src != forms[0]:
		return nil, nil, "", fmt.Errorf("%w: --root-key %s, but %s holds the root key as %s (%s); to move it, stop azoted and run: azoted root-key migrate --to %s --state-dir %s",
			ErrRootKeyForm, src, cfg.StateDir, forms[0], cfg.describe(forms), src, cfg.StateDir)
	case len(forms) == 0 && src == SourceAuto:
		src = SourceFile
		if _, err := os.Stat(cfg.device()); err == nil {
			src = SourceTPM
		}
	}
	o := &rootOpen{RootConfig: cfg}
	defer o.free()
	var key *keymem.Buf
	if len(forms) == 0 {
		key, err = createRoot(o, src)
	} else {
		key, err = readRoot(o, src)
	}
	if err != nil {
		return nil, nil, "", err
	}
	defer key.Free()
	h, escrow, err := hostFromKey(key.Bytes())
	if err != nil {
		return nil, nil, "", err
	}
	return h, escrow, src, nil
}

// createRoot makes a new random root key and keeps it as src, read back
// before it is returned, so nothing is wrapped under a key whose sealed
// form does not open.
func createRoot(o *rootOpen, src Source) (*keymem.Buf, error) {
	key, err := randomKey()
	if err != nil {
		return nil, err
	}
	defer key.Free()
	return writeRoot(o, src, key.Bytes())
}

// randomKey is a new 32-byte key in locked memory.
func randomKey() (*keymem.Buf, error) {
	key, err := keymem.New(32)
	if err != nil {
		return nil, err
	}
	if _, err := rand.Read(key.Bytes()); err != nil {
		key.Free()
		return nil, err
	}
	return key, nil
}

// writeRoot keeps key as src (durably) and returns it read back from
// there, after checking it is the same key.
func writeRoot(o *rootOpen, src Source, key []byte) (*keymem.Buf, error) {
	var err error
	switch src {
	case SourceFile:
		err = durable.WriteFile(o.path(src), key, 0o400)
	case SourceTPM:
		err = sealTPMFile(o.RootConfig, key)
	case SourcePassphrase:
		err = sealPassphraseFile(o, key)
	default:
		err = fmt.Errorf("root key: no form %q", src)
	}
	if err != nil {
		return nil, err
	}
	back, err := readRoot(o, src)
	if err != nil {
		return nil, fmt.Errorf("root key: reading back the %s form just written: %w", src, err)
	}
	if !bytes.Equal(back.Bytes(), key) {
		back.Free()
		return nil, fmt.Errorf("root key: the %s form just written opens to another key", src)
	}
	return back, nil
}

// readRoot opens the root key kept as src into locked memory.
func readRoot(o *rootOpen, src Source) (*keymem.Buf, error) {
	switch src {
	case SourceFile:
		return readRootFile(o.path(src))
	case SourceTPM:
		return unsealTPMFile(o.RootConfig)
	case SourcePassphrase:
		return unsealPassphraseFile(o)
	}
	return nil, fmt.Errorf("root key: no form %q", src)
}

// readRootFile reads the 32 raw bytes of host.key, refusing a file others
// may read.
func readRootFile(path string) (*keymem.Buf, error) {
	buf, err := keymem.New(33) // one byte more, to see a file that is too long
	if err != nil {
		return nil, err
	}
	n, err := readKeyFile(path, buf.Bytes())
	if err != nil {
		buf.Free()
		return nil, err
	}
	if n != 32 {
		buf.Free()
		return nil, fmt.Errorf("host key %s: %d bytes or more, want 32", path, n)
	}
	if st, err := os.Stat(path); err != nil {
		buf.Free()
		return nil, err
	} else if st.Mode().Perm()&0o077 != 0 {
		buf.Free()
		return nil, fmt.Errorf("host key %s is readable by others (mode %o)", path, st.Mode().Perm())
	}
	key, err := keymem.Copy(buf.Bytes()[:32])
	buf.Free()
	return key, err
}

// MigrateRoot keeps the root key as to instead of the form it is in: the
// same 32 bytes, so nothing wrapped under it changes. The new form is
// written durably and read back before the old one is destroyed (a key
// file overwritten with zeros, synced and unlinked), so a crash leaves
// the old form, or both, which OpenRoot refuses and MigrateRoot run again
// finishes. azoted must not be running.
func MigrateRoot(cfg RootConfig, to Source) error {
	switch to {
	case SourceFile, SourceTPM, SourcePassphrase:
	default:
		return fmt.Errorf("root key: migrate --to %q: want tpm, passphrase or file", to)
	}
	forms, err := cfg.present()
	if err != nil {
		return err
	}
	o := &rootOpen{RootConfig: cfg}
	defer o.free()
	var from Source
	switch {
	case len(forms) == 0:
		return fmt.Errorf("%w in %s: nothing to migrate (azoted makes one on its first start)", ErrNoRootKey, cfg.StateDir)
	case len(forms) == 1 && forms[0] == to:
		return fmt.Errorf("root key: %s already holds it as %s", cfg.StateDir, to)
	case len(forms) == 1:
		from = forms[0]
	case len(forms) == 2 && (forms[0] == to || forms[1] == to):
		// An interrupted migration: finish it if both open to the same
		// key; if not, neither is destroyed.
		from = forms[0]
		if from == to {
			from = forms[1]
		}
		old, err := readRoot(o, from)
		if err != nil {
			return err
		}
		defer old.Free()
		dst, err := readRoot(o, to)
		if err != nil {
			return fmt.Errorf("root key: %s also holds %s, which does not open: %w", cfg.StateDir, filepath.Base(cfg.path(to)), err)
		}
		defer dst.Free()
		if !bytes.Equal(old.Bytes(), dst.Bytes()) {
			return fmt.Errorf("%w: %s holds %s, which open to different keys; neither is removed: keep the one the state was wrapped under and move the other away", ErrRootKeyForms, cfg.StateDir, cfg.describe(forms))
		}
		return destroy(cfg.path(from))
	default:
		return fmt.Errorf("%w: %s holds %s; move away the ones not meant", ErrRootKeyForms, cfg.StateDir, cfg.describe(forms))
	}
	key, err := readRoot(o, from)
	if err != nil {
		return err
	}
	defer key.Free()
	back, err := writeRoot(o, to, key.Bytes())
	if err != nil {
		return err
	}
	back.Free()
	return destroy(cfg.path(from))
}

// destroy overwrites path with zeros, syncs it, then unlinks it and syncs
// its directory. On a copy-on-write or flash file system the old blocks
// may survive the overwrite; it is still the most a file can do.
func destroy(path string) error {
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("root key: %s is not a regular file", path)
	}
	// Root overrides the mode, but a test runs as its owner.
	if err := os.Chmod(path, 0o600); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(make([]byte, st.Size()))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("root key: overwriting %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(path))
}
