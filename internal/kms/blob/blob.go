// Package blob is the CiphertextBlob that the KMS returns from Encrypt and
// GenerateDataKey for a symmetric key: azote's own versioned format (AWS's
// is undocumented and SDKs treat it as opaque), laid out as
//
//	offset  size  field
//	0       1     format version = 0x01
//	1       1     kind = 0x01 (AES-256-GCM under a symmetric KMS key)
//	2       36    key id: the KMS key's UUID as lower-case text
//	38      4     key material version, big-endian (0 = original, then one per rotation)
//	42      12    GCM nonce (random)
//	54      n+16  AES-256-GCM ciphertext of the plaintext, then the 16-byte tag
//
// with AAD = the 54 header bytes || EncodeContext(encryption context). The
// header is in the clear so that Decrypt without a KeyId can find the key
// and the material version; binding it as AAD means an attacker who edits
// the key id or version gets ErrInvalid, never a decryption under other
// material.
//
// The package never sees the key store, never chooses which key to use
// and never logs; a key it is given is used for one call and not kept.
package blob

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Version1 is the only format version.
const Version1 = 1

// kindAES256GCM is the only kind: AES-256-GCM under a symmetric KMS key.
const kindAES256GCM = 1

const (
	keyIDLen = 36
	nonceLen = 12
	tagLen   = 16

	offKind    = 1
	offKeyID   = 2
	offVersion = offKeyID + keyIDLen // 38
	offNonce   = offVersion + 4      // 42; the ciphertext starts at HeaderLen

	maxField = 1<<16 - 1 // the largest length a uint16 can say
	keyLen   = 32        // AES-256
)

// HeaderLen is the length of the clear header, nonce included.
const HeaderLen = offNonce + nonceLen // 54

// Overhead is how much longer a blob is than its plaintext.
const Overhead = HeaderLen + tagLen

// Header is what a blob says in the clear: which key and which version of
// its material sealed it.
type Header struct {
	KeyID   string // the KMS key's UUID, lower case
	Version uint32 // key material version: 0 original, 1.. each rotation
}

// ErrInvalid is wrapped by every failure to parse or authenticate a blob:
// a bad version, kind or key id, a short blob, or one that does not open
// under the key and encryption context it is given.
var ErrInvalid = errors.New("blob: invalid ciphertext")

// EncodeContext is the encryption context as it is authenticated: a
// uint16 big-endian count, then for each pair in bytewise order of key a
// uint16 big-endian length and the key, a uint16 big-endian length and
// the value. An empty or nil map is 0x00 0x00. Sorting makes the encoding
// independent of the map's order, and the length prefixes make it
// injective, so two different contexts never authenticate as each other.
//
// A context that cannot be said in this form (more than 65535 pairs, or a
// key or value longer than 65535 bytes) encodes to nil, which no valid
// encoding is; Seal refuses it and Open reports ErrInvalid for it. (AWS's
// own limit on a context is far smaller, and the service enforces that.)
func EncodeContext(ctx map[string]string) []byte {
	if len(ctx) > maxField {
		return nil
	}
	n := 2
	for k, v := range ctx {
		if len(k) > maxField || len(v) > maxField {
			return nil
		}
		n += 4 + len(k) + len(v)
	}
	keys := make([]string, 0, len(ctx))
	for k := range ctx {
		keys = append(keys, k)
	}
	slices.Sort(keys) // Go compares strings bytewise
	out := make([]byte, 0, n)
	out = binary.BigEndian.AppendUint16(out, uint16(len(keys)))
	for _, k := range keys {
		out = binary.BigEndian.AppendUint16(out, uint16(len(k)))
		out = append(out, k...)
		out = binary.BigEndian.AppendUint16(out, uint16(len(ctx[k])))
		out = append(out, ctx[k]...)
	}
	return out
}

// Seal encrypts plaintext under a 32-byte key for the key and material
// version h names, binding the encryption context ctx.
func Seal(key []byte, h Header, plaintext []byte, ctx map[string]string) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return SealAEAD(aead, h, plaintext, ctx)
}

// Open decrypts a blob that Seal made under key with the same encryption
// context. A blob that was altered, sealed under another key or opened
// with another context gives ErrInvalid. The caller has already found the
// key from ParseHeader; Open checks the header again itself.
func Open(key []byte, b []byte, ctx map[string]string) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return OpenAEAD(aead, b, ctx)
}

// SealAEAD is Seal with an AES-256-GCM AEAD the caller keeps (built once
// per key material, so a busy key does not redo its key schedule per
// request). It must be cipher.NewGCM of an AES-256 block: the format says
// AES-256 and nothing here can check the key size behind an AEAD.
func SealAEAD(aead cipher.AEAD, h Header, plaintext []byte, ctx map[string]string) ([]byte, error) {
	if err := checkAEAD(aead); err != nil {
		return nil, err
	}
	var nonce [nonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	return seal(aead, h, nonce, plaintext, ctx)
}

// OpenAEAD is Open with a kept AEAD, as SealAEAD.
func OpenAEAD(aead cipher.AEAD, b []byte, ctx map[string]string) ([]byte, error) {
	if err := checkAEAD(aead); err != nil {
		return nil, err
	}
	if _, err := ParseHeader(b); err != nil {
		return nil, err
	}
	ec := EncodeContext(ctx)
	if ec == nil {
		// No blob can have been sealed with it.
		return nil, fmt.Errorf("%w: encryption context cannot be encoded", ErrInvalid)
	}
	aad := append(b[:HeaderLen:HeaderLen], ec...)
	pt, err := aead.Open(nil, b[offNonce:HeaderLen], b[HeaderLen:], aad)
	if err != nil {
		return nil, fmt.Errorf("%w: does not authenticate under this key and encryption context", ErrInvalid)
	}
	return pt, nil
}

// seal is SealAEAD with the nonce given, so that a golden test can fix it.
func seal(aead cipher.AEAD, h Header, nonce [nonceLen]byte, plaintext []byte, ctx map[string]string) ([]byte, error) {
	if !validKeyID(h.KeyID) {
		return nil, fmt.Errorf("blob: key id %q is not a lower-case UUID", h.KeyID)
	}
	ec := EncodeContext(ctx)
	if ec == nil {
		return nil, errors.New("blob: encryption context too large to encode")
	}
	out := make([]byte, HeaderLen, HeaderLen+len(plaintext)+tagLen)
	out[0] = Version1
	out[offKind] = kindAES256GCM
	copy(out[offKeyID:], h.KeyID)
	binary.BigEndian.PutUint32(out[offVersion:], h.Version)
	copy(out[offNonce:], nonce[:])
	aad := append(out[:HeaderLen:HeaderLen], ec...)
	return aead.Seal(out, out[offNonce:HeaderLen], plaintext, aad), nil
}

// ParseHeader reads the clear header of b: the version and kind must be
// known, the key id a lower-case UUID, and b long enough to hold a header
// and a tag. It says nothing about whether b authenticates.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < Overhead {
		return Header{}, fmt.Errorf("%w: %d bytes, shorter than the %d-byte minimum", ErrInvalid, len(b), Overhead)
	}
	if b[0] != Version1 {
		return Header{}, fmt.Errorf("%w: format version %d", ErrInvalid, b[0])
	}
	if b[offKind] != kindAES256GCM {
		return Header{}, fmt.Errorf("%w: kind %d", ErrInvalid, b[offKind])
	}
	id := string(b[offKeyID:offVersion])
	if !validKeyID(id) {
		// Not %q of id: it is attacker-chosen bytes headed for a log.
		return Header{}, fmt.Errorf("%w: key id is not a lower-case UUID", ErrInvalid)
	}
	return Header{KeyID: id, Version: binary.BigEndian.Uint32(b[offVersion:offNonce])}, nil
}

// validKeyID reports whether s is a UUID in the canonical lower-case text
// form the KMS gives its keys. Upper case is refused so that one key has
// exactly one header, and a blob can be matched to its key by plain
// string comparison.
func validKeyID(s string) bool {
	if len(s) != keyIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != keyLen {
		return nil, fmt.Errorf("blob: %d-byte key, want %d", len(key), keyLen)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// checkAEAD refuses an AEAD whose nonce or tag would not fit the layout.
func checkAEAD(aead cipher.AEAD) error {
	if aead.NonceSize() != nonceLen || aead.Overhead() != tagLen {
		return fmt.Errorf("blob: AEAD with a %d-byte nonce and %d-byte tag, want AES-GCM's %d and %d",
			aead.NonceSize(), aead.Overhead(), nonceLen, tagLen)
	}
	return nil
}
