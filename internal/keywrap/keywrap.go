// Package keywrap seals keys at rest with AES-256-GCM under a 32-byte
// wrapping key. The caller's context (the owner's id) is authenticated,
// so a wrapped key cannot be moved to another owner.
package keywrap

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// ErrUnwrap is returned for wrapped data that does not authenticate under
// the key and context.
var ErrUnwrap = errors.New("keywrap: wrapped data does not authenticate")

// AESGCM wraps and unwraps under one key.
type AESGCM struct{ aead cipher.AEAD }

// New makes a wrapper for a 32-byte key; the caller may clear key after.
func New(key []byte) (*AESGCM, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("keywrap: %d-byte key, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &AESGCM{aead: aead}, nil
}

// Wrap seals plaintext with a fresh random nonce, which it prepends.
func (w *AESGCM) Wrap(plaintext, context []byte) ([]byte, error) {
	nonce := make([]byte, w.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return w.aead.Seal(nonce, nonce, plaintext, context), nil
}

// Unwrap opens what Wrap sealed under the same context.
func (w *AESGCM) Unwrap(wrapped, context []byte) ([]byte, error) {
	return w.UnwrapTo(nil, wrapped, context)
}

// UnwrapTo is Unwrap writing the plaintext into dst[:0] when it has the
// room (a locked key buffer), so that the key is never copied elsewhere.
func (w *AESGCM) UnwrapTo(dst, wrapped, context []byte) ([]byte, error) {
	n := w.aead.NonceSize()
	if len(wrapped) < n {
		return nil, ErrUnwrap
	}
	out, err := w.aead.Open(dst[:0], wrapped[:n], wrapped[n:], context)
	if err != nil {
		return nil, ErrUnwrap
	}
	return out, nil
}
