package controller

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/keywrap"
)

// KeyWrapper protects data keys at rest: only wrapped keys are stored.
// Until the KMS lands, the host key wraps them; the KMS will implement the
// same interface with GenerateDataKey and Decrypt.
type KeyWrapper interface {
	Wrap(plaintext, context []byte) ([]byte, error)
	Unwrap(wrapped, context []byte) ([]byte, error)
	// UnwrapTo writes the plaintext into dst[:0] (a locked key buffer).
	UnwrapTo(dst, wrapped, context []byte) ([]byte, error)
}

// openHostKey returns the wrapper of the host key: AES-256-GCM
// (internal/keywrap) under a 32-byte key read from a root-only file,
// created on first start. The context (the volume id) is authenticated, so
// a wrapped key cannot be moved to another volume.
//
// It also returns the escrow key, derived from the host key (HKDF), from
// which the secret each instance-store card asks of whoever wants its key
// back is derived (escrowSecret). The raw host key lives only in locked
// memory, and only here.
func openHostKey(path string) (*keywrap.AESGCM, *keymem.Buf, error) {
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
		if err := writeFileSync(path, key[:n], 0o400); err != nil {
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
	w, err := keywrap.New(key)
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
	return w, escrow, nil
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

// escrowSecret is what azoted proves it is azoted with to the
// instance-store card of volID in instID: a MAC under the escrow key, so
// that nothing is stored and a restarted azoted knows it again. It is
// written into a locked buffer the caller frees.
func (c *Controller) escrowSecret(instID, volID string) (*keymem.Buf, error) {
	b, err := keymem.New(cardproto.EscrowSecretBytes)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, c.escrowKey.Bytes())
	m.Write([]byte("instance-store key escrow\x00" + instID + "\x00" + volID))
	m.Sum(b.Bytes()[:0])
	return b, nil
}
