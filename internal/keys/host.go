package keys

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/azote/azote/internal/durable"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/keywrap"
)

// Host wraps under the host key: AES-256-GCM (internal/keywrap) under a
// 32-byte key read from a root-only file. Every name azoted uses maps to
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

// OpenHost returns the wrapper of the host key in path, created on first
// start (mode 0400).
//
// It also returns the escrow key, derived from the host key (HKDF), from
// which the secret each instance-store card asks of whoever wants its key
// back is derived. The raw host key lives only in locked memory, and only
// here.
func OpenHost(path string) (*Host, *keymem.Buf, error) {
	buf, err := keymem.New(33) // one byte more, to see a file that is too long
	if err != nil {
		return nil, nil, err
	}
	defer buf.Free()
	key := buf.Bytes()
	n, err := readKeyFile(path, key)
	if errors.Is(err, os.ErrNotExist) {
		n = 32
		if _, err := rand.Read(key[:n]); err != nil {
			return nil, nil, err
		}
		if err := durable.WriteFile(path, key[:n], 0o400); err != nil {
			return nil, nil, err
		}
	} else if err != nil {
		return nil, nil, err
	}
	if n != 32 {
		return nil, nil, fmt.Errorf("host key %s: %d bytes or more, want 32", path, n)
	}
	key = key[:n]
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, nil, fmt.Errorf("host key %s is readable by others (mode %o)", path, st.Mode().Perm())
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
