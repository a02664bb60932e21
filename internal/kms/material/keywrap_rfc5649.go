package material

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
)

// AES Key Wrap with Padding, RFC 5649: what `openssl enc
// -id-aes256-wrap-pad` makes, and the second half of AWS's
// RSA_AES_KEY_WRAP_* import format. It is RFC 3394's key wrap of the
// material padded with zeros to a multiple of 8 bytes, under an
// alternative initial value that carries the material's length.

// aivPrefix is the first half of RFC 5649's alternative initial value;
// the second half is the material's length, big-endian.
var aivPrefix = [4]byte{0xa6, 0x59, 0x59, 0xa6}

var errUnwrap = errors.New("material: AES key unwrap failed")

// wrapPad wraps p (at least one byte) under kek, an AES key of 16, 24 or
// 32 bytes.
func wrapPad(kek, p []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(p) == 0 || uint64(len(p)) > 1<<32-1 {
		return nil, errors.New("material: key wrap of an empty or over-4-GiB input")
	}
	var aiv [8]byte
	copy(aiv[:], aivPrefix[:])
	binary.BigEndian.PutUint32(aiv[4:], uint32(len(p)))
	padded := make([]byte, (len(p)+7)/8*8)
	copy(padded, p)
	return wrapWithIV(block, aiv, padded), nil
}

// wrapWithIV is the wrapping of RFC 5649 section 4.1 given the initial
// value: one AES block when the padded input is 8 bytes, else RFC 3394's
// W. len(padded) is a non-zero multiple of 8.
func wrapWithIV(block cipher.Block, aiv [8]byte, padded []byte) []byte {
	out := make([]byte, 8+len(padded))
	copy(out, aiv[:])
	copy(out[8:], padded)
	if len(padded) == 8 {
		block.Encrypt(out, out)
		return out
	}
	n := len(padded) / 8
	var b [16]byte
	a := out[:8]
	for j := 0; j < 6; j++ {
		for i := 1; i <= n; i++ {
			r := out[8*i : 8*i+8]
			copy(b[:8], a)
			copy(b[8:], r)
			block.Encrypt(b[:], b[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(a, binary.BigEndian.Uint64(b[:8])^t)
			copy(r, b[8:])
		}
	}
	return out
}

// unwrapPad undoes wrapPad under kek. Every failure is the same errUnwrap,
// decided only after all the checks ran, so neither the error nor the
// time says which check failed.
func unwrapPad(kek, c []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(c) < 16 || len(c)%8 != 0 {
		return nil, errUnwrap
	}
	out := make([]byte, len(c))
	copy(out, c)
	if len(c) == 16 {
		block.Decrypt(out, out)
	} else {
		n := len(c)/8 - 1
		var b [16]byte
		a := out[:8]
		for j := 5; j >= 0; j-- {
			for i := n; i >= 1; i-- {
				r := out[8*i : 8*i+8]
				t := uint64(n*j + i)
				binary.BigEndian.PutUint64(b[:8], binary.BigEndian.Uint64(a)^t)
				copy(b[8:], r)
				block.Decrypt(b[:], b[:])
				copy(a, b[:8])
				copy(r, b[8:])
			}
		}
	}

	// RFC 5649 section 3: the prefix must match, the length must fall in
	// the last 8-byte block (8(n-1) < MLI <= 8n), and the padding after
	// it must be zeros.
	p := out[8:]
	ok := subtle.ConstantTimeCompare(out[:4], aivPrefix[:])
	mli := binary.BigEndian.Uint32(out[4:8])
	// In int64, where neither a 32-bit mli nor any slice length can
	// overflow the comparisons.
	lo, hi := int64(len(p)-8), int64(len(p))
	m := int64(mli)
	ok &= ltMask(lo, m) & ltMask(m, hi+1)
	// Padding: byte i of the last block must be zero where its position
	// is at or past mli.
	last := p[len(p)-8:]
	var nonzeroPad byte
	for i, v := range last {
		pos := lo + int64(i)
		isPad := byte(ltMask(pos, m) ^ 1) // 1 when pos >= m
		nonzeroPad |= v & -isPad          // v when padding, 0 otherwise
	}
	ok &= subtle.ConstantTimeByteEq(nonzeroPad, 0)
	if ok != 1 {
		clear(out)
		return nil, errUnwrap
	}
	res := p[:mli]
	return res[:len(res):len(res)], nil
}

// ltMask is 1 when a < b and 0 otherwise, without a branch on either;
// both lie in [-2^62, 2^62], so a-b does not overflow.
func ltMask(a, b int64) int {
	return int(uint64(a-b) >> 63)
}
