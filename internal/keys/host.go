package keys

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/azote/azote/internal/durable"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/keywrap"
)

// Host wraps under the host key: AES-256-GCM (internal/keywrap) under the
// 32-byte root key (OpenRoot). Every name azoted uses maps to
// that one key, with the caller's context authenticated, so what it wraps
// is byte for byte what azoted stored before names existed.
type Host struct{ w *keywrap.AESGCM }

// NewHost makes a Host from a 32-byte key; the caller may clear key
// after.
func NewHost(key []byte) (*Host, error) {
	w, err := keywrap.New(key)
	if err != nil {
		return nil, err
	}
	return &Host{w: w}, nil
}

func (h *Host) check(key Name) error {
	switch key {
	case Volumes, IAM, Network, KMS:
		return nil
	}
	return fmt.Errorf("%w: %q", ErrUnknownKey, key)
}

// Wrap seals plaintext under key with a fresh random nonce.
func (h *Host) Wrap(key Name, plaintext, context []byte) ([]byte, error) {
	if err := h.check(key); err != nil {
		return nil, err
	}
	return h.w.Wrap(plaintext, context)
}

// Unwrap opens what Wrap sealed under the same key and context.
func (h *Host) Unwrap(key Name, wrapped, context []byte) ([]byte, error) {
	return h.UnwrapTo(key, nil, wrapped, context)
}

// UnwrapTo is Unwrap writing into dst[:0] when it has the room.
func (h *Host) UnwrapTo(key Name, dst, wrapped, context []byte) ([]byte, error) {
	if err := h.check(key); err != nil {
		return nil, err
	}
	p, err := h.w.UnwrapTo(dst, wrapped, context)
	if errors.Is(err, keywrap.ErrUnwrap) {
		return nil, ErrUnwrap
	}
	return p, err
}

// OpenHost returns the wrapper of the host key in the file path, created
// on first start (mode 0400): the root key of SourceFile, which OpenRoot
// keeps in <state-dir>/host.key.
//
// It also returns the escrow key, derived from the host key (HKDF), from
// which the secret each instance-store card asks of whoever wants its key
// back is derived. The raw host key lives only in locked memory, and only
// here.
func OpenHost(path string) (*Host, *keymem.Buf, error) {
	key, err := readRootFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if key, err = randomKey(); err == nil {
			if err = durable.WriteFile(path, key.Bytes(), 0o400); err != nil {
				key.Free()
			}
		}
	}
	if err != nil {
		return nil, nil, err
	}
	defer key.Free()
	return hostFromKey(key.Bytes())
}

// hostFromKey is the wrapper and the escrow key of a 32-byte root key.
// The escrow key depends on those 32 bytes alone, never on the form they
// were kept in, since instance-store cards started before a migration
// must still answer the azoted that comes after it.
func hostFromKey(key []byte) (*Host, *keymem.Buf, error) {
	if len(key) != 32 {
		return nil, nil, fmt.Errorf("host key: %d bytes, want 32", len(key))
	}
	h, err := NewHost(key)
	if err != nil {
		return nil, nil, err
	}
	escrow, err := keymem.New(32)
	if err != nil {
		return nil, nil, err
	}
	prk := hmac.New(sha256.New, []byte("azote host key: card escrow"))
	prk.Write(key)
	if len(prk.Sum(escrow.Bytes()[:0])) != 32 {
		escrow.Free()
		return nil, nil, errors.New("escrow key derivation")
	}
	return h, escrow, nil
}

// readKeyFile reads path into buf, without a copy on the heap, and says
// how many bytes it read (len(buf) when the file is at least that long).
func readKeyFile(path string, buf []byte) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := io.ReadFull(f, buf)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}
