package keys

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"

	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/keywrap"
)

// Fleet wraps under the fleet key, which the hosts sharing VPCs all hold:
// AES-256-GCM (internal/keywrap) under a 32-byte key read from a
// root-only file that the operator gives every azoted of the fleet. It
// stands behind Network alone: the VPC traffic keys, which every host
// running a VPC's cards must open, are kept in the fleet's shared store
// wrapped under it. Every other name stays with each host's own key.
type Fleet struct{ w *keywrap.AESGCM }

// CreateFleetKey writes a new random fleet key to path (mode 0400), which
// must not exist: a fleet has one key, made once and copied to each of
// its hosts.
func CreateFleetKey(path string) error {
	k, err := keymem.New(32)
	if err != nil {
		return err
	}
	defer k.Free()
	if _, err := rand.Read(k.Bytes()); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return fmt.Errorf("fleet key: %w", err)
	}
	_, err = f.Write(k.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("fleet key %s: %w", path, err)
	}
	return nil
}

// OpenFleet reads the fleet key in path: 32 bytes, readable by its owner
// alone. Unlike the host key it is never made here: a key made on one
// host alone would wrap VPC keys no other host can open.
func OpenFleet(path string) (*Fleet, error) {
	buf, err := keymem.New(33) // one byte more, to see a file that is too long
	if err != nil {
		return nil, err
	}
	defer buf.Free()
	n, err := readKeyFile(path, buf.Bytes())
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("fleet key %s does not exist: make it once for the fleet (azoted fleet-key create FILE) and copy it to every host", path)
	}
	if err != nil {
		return nil, err
	}
	if n != 32 {
		return nil, fmt.Errorf("fleet key %s: %d bytes or more, want 32", path, n)
	}
	if st, err := os.Stat(path); err != nil {
		return nil, err
	} else if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("fleet key %s is readable by others (mode %o): chmod 400 it", path, st.Mode().Perm())
	}
	w, err := keywrap.New(buf.Bytes()[:32])
	if err != nil {
		return nil, err
	}
	return &Fleet{w: w}, nil
}

func (f *Fleet) check(key Name) error {
	if key != Network {
		return fmt.Errorf("%w: %q (the fleet key wraps %q only)", ErrUnknownKey, key, Network)
	}
	return nil
}

// Wrap seals plaintext under the fleet key with a fresh random nonce.
func (f *Fleet) Wrap(key Name, plaintext, context []byte) ([]byte, error) {
	if err := f.check(key); err != nil {
		return nil, err
	}
	return f.w.Wrap(plaintext, context)
}

// Unwrap opens what Wrap sealed under the same key and context.
func (f *Fleet) Unwrap(key Name, wrapped, context []byte) ([]byte, error) {
	return f.UnwrapTo(key, nil, wrapped, context)
}

// UnwrapTo is Unwrap writing into dst[:0] when it has the room.
func (f *Fleet) UnwrapTo(key Name, dst, wrapped, context []byte) ([]byte, error) {
	if err := f.check(key); err != nil {
		return nil, err
	}
	p, err := f.w.UnwrapTo(dst, wrapped, context)
	if errors.Is(err, keywrap.ErrUnwrap) {
		return nil, ErrUnwrap
	}
	return p, err
}
