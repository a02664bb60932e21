package keywrap

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

func TestWrapUnwrap(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	w, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("data key")
	wrapped, err := w.Wrap(secret, []byte("vol-1"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := w.Unwrap(wrapped, []byte("vol-1")); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("round trip: %q %v", got, err)
	}
	if _, err := w.Unwrap(wrapped, []byte("vol-2")); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("another context unwrapped: %v", err)
	}
	wrapped[len(wrapped)-1] ^= 1
	if _, err := w.Unwrap(wrapped, []byte("vol-1")); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("a changed byte unwrapped: %v", err)
	}
	if _, err := w.Unwrap(wrapped[:5], []byte("vol-1")); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("a short blob: %v", err)
	}
	if _, err := New(key[:16]); err == nil {
		t.Fatal("a 16-byte key accepted")
	}
}
