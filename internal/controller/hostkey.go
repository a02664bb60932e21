package controller

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"

	"github.com/azote/azote/internal/keywrap"
)

// KeyWrapper protects data keys at rest: only wrapped keys are stored.
// Until the KMS lands, the host key wraps them; the KMS will implement the
// same interface with GenerateDataKey and Decrypt.
type KeyWrapper interface {
	Wrap(plaintext, context []byte) ([]byte, error)
	Unwrap(wrapped, context []byte) ([]byte, error)
}

// openHostKey returns the wrapper of the host key: AES-256-GCM
// (internal/keywrap) under a 32-byte key read from a root-only file,
// created on first start. The context (the volume id) is authenticated, so
// a wrapped key cannot be moved to another volume.
func openHostKey(path string) (*keywrap.AESGCM, error) {
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
	defer clear(key)
	return keywrap.New(key)
}
