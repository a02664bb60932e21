package controller

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
)

// KeyWrapper protects data keys at rest: only wrapped keys are stored.
// Until the KMS lands, the host key wraps them; the KMS will implement the
// same interface with GenerateDataKey and Decrypt.
type KeyWrapper interface {
	Wrap(plaintext, context []byte) ([]byte, error)
	Unwrap(wrapped, context []byte) ([]byte, error)
}

// hostKeyWrapper wraps with AES-256-GCM under a 32-byte host key read from
// a root-only file (created on first start). The context (the volume id)
// is authenticated, so a wrapped key cannot be moved to another volume.
type hostKeyWrapper struct{ aead cipher.AEAD }

var errUnwrap = errors.New("controller: wrapped key does not authenticate")

func openHostKey(path string) (*hostKeyWrapper, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := writeFileSync(path, key, 0o400); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("host key %s: %d bytes, want 32", path, len(key))
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("host key %s is readable by others (mode %o)", path, st.Mode().Perm())
	}
	block, err := aes.NewCipher(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &hostKeyWrapper{aead: aead}, nil
}

func (w *hostKeyWrapper) Wrap(plaintext, context []byte) ([]byte, error) {
	nonce := make([]byte, w.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return w.aead.Seal(nonce, nonce, plaintext, context), nil
}

func (w *hostKeyWrapper) Unwrap(wrapped, context []byte) ([]byte, error) {
	n := w.aead.NonceSize()
	if len(wrapped) < n {
		return nil, errUnwrap
	}
	out, err := w.aead.Open(nil, wrapped[:n], wrapped[n:], context)
	if err != nil {
		return nil, errUnwrap
	}
	return out, nil
}
