package mfa

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	// Digits is the length of a code; AWS virtual MFA devices use 6.
	Digits = 6
	// Period is the TOTP time step (RFC 6238 X).
	Period = 30 * time.Second
	// SecretSize is the length NewSecret returns: 160 bits, what RFC 4226
	// §4 recommends and what AWS virtual MFA seeds are.
	SecretSize = 20
	// MinSecretSize is the shortest secret a Device accepts (RFC 4226 §4 R6:
	// at least 128 bits).
	MinSecretSize = 16
)

// ErrBadSecret is returned for a secret that is empty, too short, or not
// canonical base32.
var ErrBadSecret = errors.New("mfa: malformed secret")

// HOTP returns the RFC 4226 code for counter: HMAC(secret, counter as 8
// big-endian bytes), dynamic truncation to 31 bits, then the low digits
// decimal digits, zero-padded. A nil h means SHA-1. digits must be 1..10
// (the truncated value has at most 10 decimal digits); anything else is a
// programming error and panics.
func HOTP(secret []byte, counter uint64, digits int, h func() hash.Hash) string {
	if digits < 1 || digits > 10 {
		panic("mfa: HOTP digits out of range 1..10")
	}
	if h == nil {
		h = sha1.New
	}
	mac := hmac.New(h, secret)
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	mac.Write(msg[:])
	sum := mac.Sum(nil)

	// RFC 6238 §1.2 keeps RFC 4226's rule for longer hashes: the offset
	// comes from the low nibble of the last byte, whatever the hash size.
	off := sum[len(sum)-1] & 0x0f
	v := uint64(binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff)

	mod := uint64(1)
	for range digits {
		mod *= 10
	}
	s := strconv.FormatUint(v%mod, 10)
	return strings.Repeat("0", digits-len(s)) + s
}

// Step is the RFC 6238 time step counter for t (T0 = 0). Times before the
// Unix epoch have no step of their own and map to 0, which a Device never
// accepts because LastCounter starts there.
func Step(t time.Time) uint64 {
	u := t.Unix()
	if u < 0 {
		return 0
	}
	return uint64(u) / uint64(Period/time.Second)
}

// TOTP returns the 6-digit HMAC-SHA-1 code for the 30 s step containing t.
func TOTP(secret []byte, t time.Time) string {
	return HOTP(secret, Step(t), Digits, sha1.New)
}

// NewSecret returns SecretSize bytes from crypto/rand.
func NewSecret() ([]byte, error) {
	b := make([]byte, SecretSize)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("mfa: new secret: %w", err)
	}
	return b, nil
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// EncodeSecret is the form authenticator apps and AWS's Base32StringSeed
// use: RFC 4648 base32, upper case, no padding.
func EncodeSecret(b []byte) string {
	return b32.EncodeToString(b)
}

// DecodeSecret accepts what a person copies or types: any ASCII white
// space, lower case, with or without trailing '=' padding. It refuses an
// empty secret and a non-canonical last character (unused low bits set), so
// one secret has exactly one spelling once normalised.
func DecodeSecret(s string) ([]byte, error) {
	norm := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
			continue
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		}
		norm = append(norm, c)
	}
	// Strip padding only at the end: '=' anywhere else is a typo, and the
	// decoder below rejects it as an illegal character.
	for len(norm) > 0 && norm[len(norm)-1] == '=' {
		norm = norm[:len(norm)-1]
	}
	if len(norm) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadSecret)
	}
	b := make([]byte, b32.DecodedLen(len(norm)))
	n, err := b32.Decode(b, norm)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSecret, err)
	}
	b = b[:n]
	// encoding/base32 ignores the unused bits of the last character; a
	// re-encode that differs means the input set them.
	if b32.EncodeToString(b) != string(norm) {
		return nil, fmt.Errorf("%w: not canonical base32", ErrBadSecret)
	}
	return b, nil
}

// URI is the Key Uri Format provisioning URI authenticator apps scan:
// otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30.
// Issuer and account are escaped separately, including ':' so that the one
// literal colon in the label is the separator. Spaces are written %20, never
// '+', because some apps show a '+' in the query literally. An empty issuer
// leaves the label as the account alone and omits the issuer parameter.
func URI(issuer, account string, secret []byte) string {
	var b strings.Builder
	b.WriteString("otpauth://totp/")
	if issuer != "" {
		b.WriteString(labelEscape(issuer))
		b.WriteByte(':')
	}
	b.WriteString(labelEscape(account))
	b.WriteString("?secret=")
	b.WriteString(EncodeSecret(secret))
	if issuer != "" {
		b.WriteString("&issuer=")
		b.WriteString(queryEscape(issuer))
	}
	b.WriteString("&algorithm=SHA1&digits=")
	b.WriteString(strconv.Itoa(Digits))
	b.WriteString("&period=")
	b.WriteString(strconv.Itoa(int(Period / time.Second)))
	return b.String()
}

// labelEscape is url.PathEscape plus ':', which a path segment may carry
// but which would split the label in the wrong place.
func labelEscape(s string) string {
	return strings.ReplaceAll(url.PathEscape(s), ":", "%3A")
}

// queryEscape is url.QueryEscape with spaces as %20. QueryEscape writes a
// literal '+' as %2B, so every '+' left is a space.
func queryEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}
