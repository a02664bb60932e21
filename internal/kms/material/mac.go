package material

import (
	"crypto/hmac"
	"fmt"
)

// Mac is the HMAC (RFC 2104) of message under an HMAC key of spec s; alg
// must be the spec's one algorithm (HMAC_SHA_256 for HMAC_256, ...), and
// message at most 4096 bytes.
func Mac(s Spec, material []byte, alg string, message []byte) ([]byte, error) {
	info, err := lookup(s)
	if err != nil {
		return nil, err
	}
	if info.family != hmacKey || alg != hmacAlgorithm(info.hash) {
		return nil, fmt.Errorf("%w: %s with a %s key", ErrInvalidAlgorithm, alg, s)
	}
	if len(message) > maxMessage {
		return nil, fmt.Errorf("%w: a %d-byte message, at most %d", ErrTooLarge, len(message), maxMessage)
	}
	// Any non-empty key is a valid HMAC key; the length range AWS allows
	// is Validate's concern when material is imported.
	if len(material) == 0 {
		return nil, fmt.Errorf("%w: empty HMAC key", ErrInvalidMaterial)
	}
	m := hmac.New(info.hash.New, material)
	m.Write(message)
	return m.Sum(nil), nil
}

// VerifyMac reports whether mac is Mac of message, comparing in constant
// time so that a caller cannot learn a valid MAC byte by byte. A MAC that
// does not match, of any length, is false with a nil error.
func VerifyMac(s Spec, material []byte, alg string, message, mac []byte) (bool, error) {
	want, err := Mac(s, material, alg, message)
	if err != nil {
		return false, err
	}
	return hmac.Equal(want, mac), nil
}
