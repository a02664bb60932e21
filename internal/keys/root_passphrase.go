package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/crypto/argon2"

	"github.com/azote/azote/internal/durable"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/keywrap"
)

// host.key.argon2 is the root key wrapped (AES-256-GCM, internal/keywrap)
// under a key derived from the operator's passphrase with argon2id. The
// derivation's parameters are stored with it, so a later azoted may
// choose stronger ones for new files and still open old ones:
//
//	magic    "AZARGRK1"      8 bytes
//	time     uint32 BE       argon2id passes
//	memory   uint32 BE       KiB
//	threads  uint8
//	saltLen  uint8           then the salt
//	wrapLen  uint16 BE       then the wrapped key: nonce, ciphertext, tag
//
// Everything before wrapLen is the header, authenticated as the wrap's
// context, so a changed parameter is refused like a changed ciphertext.
const argon2Magic = "AZARGRK1"

// argon2Params are the argon2id parameters of a wrapped root key.
type argon2Params struct {
	Time, MemoryKiB uint32
	Threads         uint8
}

// newArgon2Params are those of the files written now: the cost RFC 9106
// suggests for memory-constrained uses (64 MiB), three passes, and two
// lanes, which a two-core host runs at once.
var newArgon2Params = argon2Params{Time: 3, MemoryKiB: 64 << 10, Threads: 2}

// Bounds of what a file may ask for, so a corrupt file cannot make azoted
// allocate without end (4 GiB) or spin for minutes.
const (
	maxArgon2Time      = 64
	maxArgon2MemoryKiB = 4 << 20
	minSalt, maxSalt   = 16, 64
	// wrappedRootLen is keywrap's output for a 32-byte key: a 12-byte
	// nonce, the ciphertext and a 16-byte tag.
	wrappedRootLen = 12 + 32 + 16
	// maxPassphrase bounds what is read as a passphrase.
	maxPassphrase = 1024
)

type argon2Blob struct {
	params  argon2Params
	salt    []byte
	wrapped []byte
}

func (b argon2Blob) header() []byte {
	h := []byte(argon2Magic)
	h = binary.BigEndian.AppendUint32(h, b.params.Time)
	h = binary.BigEndian.AppendUint32(h, b.params.MemoryKiB)
	h = append(h, b.params.Threads, byte(len(b.salt)))
	return append(h, b.salt...)
}

func (b argon2Blob) marshal() []byte {
	out := b.header()
	out = binary.BigEndian.AppendUint16(out, uint16(len(b.wrapped)))
	return append(out, b.wrapped...)
}

// wrapContext is what the wrap authenticates besides the key: the
// header, under a label that keeps it apart from every other wrap.
func (b argon2Blob) wrapContext() []byte {
	return append([]byte("azote root key: passphrase\x00"), b.header()...)
}

// parseArgon2Blob reads host.key.argon2, strictly: every length and
// parameter checked, nothing after the wrapped key.
func parseArgon2Blob(data []byte) (argon2Blob, error) {
	var b argon2Blob
	r := reader{data: data}
	if string(r.next(len(argon2Magic))) != argon2Magic {
		return b, fmt.Errorf("%w: not a passphrase-wrapped root key", ErrCorruptRootKey)
	}
	b.params.Time = r.u32()
	b.params.MemoryKiB = r.u32()
	b.params.Threads = r.u8()
	b.salt = r.next(int(r.u8()))
	b.wrapped = r.next(int(r.u16()))
	if r.err != nil {
		return b, fmt.Errorf("%w: truncated", ErrCorruptRootKey)
	}
	if len(r.data) != 0 {
		return b, fmt.Errorf("%w: %d bytes after the wrapped key", ErrCorruptRootKey, len(r.data))
	}
	p := b.params
	switch {
	case p.Time < 1 || p.Time > maxArgon2Time:
		return b, fmt.Errorf("%w: argon2id time %d, want 1 to %d", ErrCorruptRootKey, p.Time, maxArgon2Time)
	case p.Threads < 1:
		return b, fmt.Errorf("%w: argon2id with no thread", ErrCorruptRootKey)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxArgon2MemoryKiB:
		return b, fmt.Errorf("%w: argon2id memory %d KiB, want 8 per thread to %d", ErrCorruptRootKey, p.MemoryKiB, maxArgon2MemoryKiB)
	case len(b.salt) < minSalt || len(b.salt) > maxSalt:
		return b, fmt.Errorf("%w: %d-byte salt, want %d to %d", ErrCorruptRootKey, len(b.salt), minSalt, maxSalt)
	case len(b.wrapped) != wrappedRootLen:
		return b, fmt.Errorf("%w: %d-byte wrapped key, want %d", ErrCorruptRootKey, len(b.wrapped), wrappedRootLen)
	}
	return b, nil
}

// passphraseKey derives the wrapping key of b from pass into locked
// memory. argon2's own working memory (MemoryKiB) is on the Go heap and
// is left to the collector; it holds no more than the key it derives.
func (b argon2Blob) passphraseKey(pass []byte) (*keywrap.AESGCM, error) {
	k := argon2.IDKey(pass, b.salt, b.params.Time, b.params.MemoryKiB, b.params.Threads, 32)
	defer clear(k)
	return keywrap.New(k)
}

// sealPassphraseFile wraps key under the passphrase into host.key.argon2
// (durably, mode 0400), with a new salt and newArgon2Params.
func sealPassphraseFile(o *rootOpen, key []byte) error {
	pass, err := o.passphrase()
	if err != nil {
		return err
	}
	b := argon2Blob{params: newArgon2Params, salt: make([]byte, minSalt)}
	if _, err := rand.Read(b.salt); err != nil {
		return err
	}
	w, err := b.passphraseKey(pass.Bytes())
	if err != nil {
		return err
	}
	if b.wrapped, err = w.Wrap(key, b.wrapContext()); err != nil {
		return err
	}
	return durable.WriteFile(o.path(SourcePassphrase), b.marshal(), 0o400)
}

// unsealPassphraseFile opens host.key.argon2 with the passphrase.
func unsealPassphraseFile(o *rootOpen) (*keymem.Buf, error) {
	path := o.path(SourcePassphrase)
	data, err := readSealedFile(path)
	if err != nil {
		return nil, err
	}
	b, err := parseArgon2Blob(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pass, err := o.passphrase()
	if err != nil {
		return nil, err
	}
	w, err := b.passphraseKey(pass.Bytes())
	if err != nil {
		return nil, err
	}
	key, err := keymem.New(32)
	if err != nil {
		return nil, err
	}
	if _, err := w.UnwrapTo(key.Bytes(), b.wrapped, b.wrapContext()); err != nil {
		key.Free()
		if errors.Is(err, keywrap.ErrUnwrap) {
			return nil, fmt.Errorf("%w in %s (or the file was changed); nothing was changed", ErrWrongPassphrase, path)
		}
		return nil, err
	}
	return key, nil
}

// readPassphrase reads the passphrase into locked memory: the whole of
// PassphraseFile less one final newline, or one line of Stdin for "-".
// The file must be owned by the user azoted runs as (root) and readable
// by it alone: a passphrase others can read protects nothing.
func readPassphrase(cfg RootConfig) (*keymem.Buf, error) {
	buf, err := keymem.New(maxPassphrase + 1) // one byte more, to see one too long
	if err != nil {
		return nil, err
	}
	n, err := readPassphraseInto(cfg, buf.Bytes())
	if err != nil {
		buf.Free()
		return nil, err
	}
	p := buf.Bytes()[:n]
	p = bytes.TrimSuffix(p, []byte("\n"))
	p = bytes.TrimSuffix(p, []byte("\r"))
	if len(p) == 0 {
		buf.Free()
		return nil, fmt.Errorf("root key: the passphrase in %s is empty", passphraseFrom(cfg))
	}
	out, err := keymem.Copy(p)
	buf.Free()
	return out, err
}

func passphraseFrom(cfg RootConfig) string {
	if cfg.PassphraseFile == "-" {
		return "standard input"
	}
	return cfg.PassphraseFile
}

func readPassphraseInto(cfg RootConfig, buf []byte) (int, error) {
	switch cfg.PassphraseFile {
	case "":
		return 0, errors.New("root key: the passphrase form needs --root-key-passphrase-file FILE (mode 0400 or 0600, owned by root), or - to read it from standard input")
	case "-":
		in := cfg.Stdin
		if in == nil {
			in = os.Stdin
		}
		// One byte at a time, so nothing past the line is consumed and
		// no copy of the passphrase is left in a reader's buffer.
		n := 0
		for n < len(buf) {
			if _, err := io.ReadFull(in, buf[n:n+1]); err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					break
				}
				return 0, fmt.Errorf("root key: reading the passphrase from standard input: %w", err)
			}
			n++
			if buf[n-1] == '\n' {
				break
			}
		}
		if n == len(buf) {
			return 0, fmt.Errorf("root key: the passphrase on standard input is longer than %d bytes", maxPassphrase)
		}
		return n, nil
	}
	path := cfg.PassphraseFile
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return 0, fmt.Errorf("root key: passphrase file: %w", err)
	}
	defer f.Close()
	// The file opened, not a name looked up again.
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.Mode().IsRegular():
		return 0, fmt.Errorf("root key: passphrase file %s is not a regular file", path)
	case st.Mode().Perm()&^0o600 != 0:
		return 0, fmt.Errorf("root key: passphrase file %s has mode %o: chmod 400 it (others must not read it)", path, st.Mode().Perm())
	case sys == nil || int(sys.Uid) != os.Geteuid():
		return 0, fmt.Errorf("root key: passphrase file %s is not owned by uid %d, the user azoted runs as", path, os.Geteuid())
	}
	n, err := io.ReadFull(f, buf)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	if err != nil {
		return 0, fmt.Errorf("root key: passphrase file %s: %w", path, err)
	}
	if n == len(buf) {
		return 0, fmt.Errorf("root key: passphrase file %s is longer than %d bytes", path, maxPassphrase)
	}
	return n, nil
}

// readSealedFile reads a sealed root key file (small, and no secret on
// its own), refusing one others may read or write: it is the key's only
// copy, and a file others could replace could hand azoted a key of their
// choosing.
func readSealedFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("root key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("root key: %s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("root key: %s may be read or written by others (mode %o): chmod 400 it", path, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSealedFile+1))
	if err != nil {
		return nil, fmt.Errorf("root key: %w", err)
	}
	if len(data) > maxSealedFile {
		return nil, fmt.Errorf("%w: %s is longer than %d bytes", ErrCorruptRootKey, path, maxSealedFile)
	}
	return data, nil
}

// maxSealedFile bounds what is read of a sealed root key file; both forms
// are a few hundred bytes.
const maxSealedFile = 16 << 10

// reader takes fields off the front of data; the first short read sets
// err and every later one returns nothing.
type reader struct {
	data []byte
	err  error
}

func (r *reader) next(n int) []byte {
	if r.err != nil || n > len(r.data) {
		r.err = io.ErrUnexpectedEOF
		return nil
	}
	b := r.data[:n:n]
	r.data = r.data[n:]
	return b
}

func (r *reader) u8() uint8 {
	if b := r.next(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if b := r.next(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.next(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}
