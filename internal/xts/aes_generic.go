package xts

import (
	"crypto/subtle"
	"encoding/binary"
)

// This file holds a portable AES-256 implementation (FIPS 197): the key
// schedule on every platform, which is table-free, and block functions that
// are the classic 32-bit T-table construction, a reference for tests only
// (New refuses a CPU without AES-NI rather than use them). The tables are
// derived at init time from the definition of the S-box rather than typed
// in.

const (
	rounds    = 14                // AES-256
	schedSize = 16 * (rounds + 1) // bytes of expanded key: 15 round keys
)

// schedule holds 15 AES round keys, each 16 bytes in the byte order that
// AESENC/AESDEC expect (words of FIPS 197 stored big-endian, in order).
type schedule [schedSize]byte

var (
	sbox, invSbox      [256]byte
	te0, te1, te2, te3 [256]uint32
	td0, td1, td2, td3 [256]uint32
)

// gmul multiplies in GF(2^8) modulo x^8+x^4+x^3+x+1.
func gmul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		hi := a & 0x80
		a <<= 1
		if hi != 0 {
			a ^= 0x1b
		}
		b >>= 1
	}
	return p
}

func init() {
	// Multiplicative inverses via exponentiation: x^254 = x^-1 (0 maps to 0).
	for i := 0; i < 256; i++ {
		x := byte(i)
		inv := byte(0)
		if x != 0 {
			// x^254 = x^(2+4+8+16+32+64+128)
			inv = 1
			sq := x
			for e := 1; e < 8; e++ {
				sq = gmul(sq, sq) // x^(2^e)
				inv = gmul(inv, sq)
			}
		}
		// Affine transform: s = inv ^ rotl(inv,1) ^ rotl(inv,2) ^ rotl(inv,3) ^ rotl(inv,4) ^ 0x63
		s := inv ^ rotl8(inv, 1) ^ rotl8(inv, 2) ^ rotl8(inv, 3) ^ rotl8(inv, 4) ^ 0x63
		sbox[i] = s
		invSbox[s] = byte(i)
	}
	for i := 0; i < 256; i++ {
		s := sbox[i]
		w := uint32(gmul(s, 2))<<24 | uint32(s)<<16 | uint32(s)<<8 | uint32(gmul(s, 3))
		te0[i], te1[i], te2[i], te3[i] = w, ror32(w, 8), ror32(w, 16), ror32(w, 24)
		si := invSbox[i]
		w = uint32(gmul(si, 14))<<24 | uint32(gmul(si, 9))<<16 | uint32(gmul(si, 13))<<8 | uint32(gmul(si, 11))
		td0[i], td1[i], td2[i], td3[i] = w, ror32(w, 8), ror32(w, 16), ror32(w, 24)
	}
}

func rotl8(x byte, n uint) byte     { return x<<n | x>>(8-n) }
func ror32(x uint32, n uint) uint32 { return x>>n | x<<(32-n) }

// The key schedule runs in Go on every CPU, on the key: it reads no table
// at a key-dependent index (a co-resident tenant could time which cache
// lines were touched). sboxCT reads the whole S-box and keeps one entry by
// mask; InvMixColumns is computed rather than looked up.

// sboxCT is sbox[x], reading every entry whatever x is.
func sboxCT(x byte) byte {
	var r byte
	for i := 0; i < 256; i++ {
		r |= sbox[i] & byte(-subtle.ConstantTimeByteEq(byte(i), x))
	}
	return r
}

func subWord(w uint32) uint32 {
	return uint32(sboxCT(byte(w>>24)))<<24 | uint32(sboxCT(byte(w>>16)))<<16 | uint32(sboxCT(byte(w>>8)))<<8 | uint32(sboxCT(byte(w)))
}

// xtime multiplies by x in GF(2^8) without a branch on a.
func xtime(a byte) byte { return a<<1 ^ 0x1b&-(a>>7) }

// invMixColumn is InvMixColumns on one column (a big-endian word).
func invMixColumn(w uint32) uint32 {
	var out uint32
	a := [4]byte{byte(w >> 24), byte(w >> 16), byte(w >> 8), byte(w)}
	var m9, m11, m13, m14 [4]byte
	for i, v := range a {
		x2 := xtime(v)
		x4 := xtime(x2)
		x8 := xtime(x4)
		m9[i], m11[i], m13[i], m14[i] = x8^v, x8^x2^v, x8^x4^v, x8^x4^x2
	}
	for i := 0; i < 4; i++ {
		b := m14[i] ^ m11[(i+1)%4] ^ m13[(i+2)%4] ^ m9[(i+3)%4]
		out |= uint32(b) << (24 - 8*i)
	}
	return out
}

// expandKey256 fills enc with the AES-256 encryption round keys of key
// (len 32) and, if dec is not nil, dec with the round keys of the equivalent
// inverse cipher (reversed order, InvMixColumns applied to rounds 1..13),
// which is what AESDEC expects. It works in place in enc and dec so that no
// copy of the key material is left elsewhere than in those arrays.
func expandKey256(enc, dec *schedule, key []byte) {
	copy(enc[:32], key)
	rcon := uint32(1)
	for i := 8; i < 4*(rounds+1); i++ {
		t := binary.BigEndian.Uint32(enc[4*(i-1):])
		switch i % 8 {
		case 0:
			t = subWord(t<<8|t>>24) ^ rcon<<24
			rcon = uint32(gmul(byte(rcon), 2))
		case 4:
			t = subWord(t)
		}
		binary.BigEndian.PutUint32(enc[4*i:], binary.BigEndian.Uint32(enc[4*(i-8):])^t)
	}
	if dec == nil {
		return
	}
	for r := 0; r <= rounds; r++ {
		src := enc[16*(rounds-r) : 16*(rounds-r)+16]
		dst := dec[16*r : 16*r+16]
		for j := 0; j < 16; j += 4 {
			w := binary.BigEndian.Uint32(src[j:])
			if r > 0 && r < rounds {
				w = invMixColumn(w)
			}
			binary.BigEndian.PutUint32(dst[j:], w)
		}
	}
}

func rk(k *schedule, i int) uint32 { return binary.BigEndian.Uint32(k[4*i:]) }

// encryptBlockGeneric encrypts one block given as four big-endian words.
func encryptBlockGeneric(k *schedule, s0, s1, s2, s3 uint32) (uint32, uint32, uint32, uint32) {
	s0 ^= rk(k, 0)
	s1 ^= rk(k, 1)
	s2 ^= rk(k, 2)
	s3 ^= rk(k, 3)
	i := 4
	for r := 1; r < rounds; r++ {
		t0 := rk(k, i+0) ^ te0[s0>>24] ^ te1[s1>>16&0xff] ^ te2[s2>>8&0xff] ^ te3[s3&0xff]
		t1 := rk(k, i+1) ^ te0[s1>>24] ^ te1[s2>>16&0xff] ^ te2[s3>>8&0xff] ^ te3[s0&0xff]
		t2 := rk(k, i+2) ^ te0[s2>>24] ^ te1[s3>>16&0xff] ^ te2[s0>>8&0xff] ^ te3[s1&0xff]
		t3 := rk(k, i+3) ^ te0[s3>>24] ^ te1[s0>>16&0xff] ^ te2[s1>>8&0xff] ^ te3[s2&0xff]
		s0, s1, s2, s3 = t0, t1, t2, t3
		i += 4
	}
	t0 := uint32(sbox[s0>>24])<<24 | uint32(sbox[s1>>16&0xff])<<16 | uint32(sbox[s2>>8&0xff])<<8 | uint32(sbox[s3&0xff])
	t1 := uint32(sbox[s1>>24])<<24 | uint32(sbox[s2>>16&0xff])<<16 | uint32(sbox[s3>>8&0xff])<<8 | uint32(sbox[s0&0xff])
	t2 := uint32(sbox[s2>>24])<<24 | uint32(sbox[s3>>16&0xff])<<16 | uint32(sbox[s0>>8&0xff])<<8 | uint32(sbox[s1&0xff])
	t3 := uint32(sbox[s3>>24])<<24 | uint32(sbox[s0>>16&0xff])<<16 | uint32(sbox[s1>>8&0xff])<<8 | uint32(sbox[s2&0xff])
	return t0 ^ rk(k, i), t1 ^ rk(k, i+1), t2 ^ rk(k, i+2), t3 ^ rk(k, i+3)
}

// decryptBlockGeneric decrypts one block with the equivalent-inverse-cipher
// schedule produced by expandKey256.
func decryptBlockGeneric(k *schedule, s0, s1, s2, s3 uint32) (uint32, uint32, uint32, uint32) {
	s0 ^= rk(k, 0)
	s1 ^= rk(k, 1)
	s2 ^= rk(k, 2)
	s3 ^= rk(k, 3)
	i := 4
	for r := 1; r < rounds; r++ {
		t0 := rk(k, i+0) ^ td0[s0>>24] ^ td1[s3>>16&0xff] ^ td2[s2>>8&0xff] ^ td3[s1&0xff]
		t1 := rk(k, i+1) ^ td0[s1>>24] ^ td1[s0>>16&0xff] ^ td2[s3>>8&0xff] ^ td3[s2&0xff]
		t2 := rk(k, i+2) ^ td0[s2>>24] ^ td1[s1>>16&0xff] ^ td2[s0>>8&0xff] ^ td3[s3&0xff]
		t3 := rk(k, i+3) ^ td0[s3>>24] ^ td1[s2>>16&0xff] ^ td2[s1>>8&0xff] ^ td3[s0&0xff]
		s0, s1, s2, s3 = t0, t1, t2, t3
		i += 4
	}
	t0 := uint32(invSbox[s0>>24])<<24 | uint32(invSbox[s3>>16&0xff])<<16 | uint32(invSbox[s2>>8&0xff])<<8 | uint32(invSbox[s1&0xff])
	t1 := uint32(invSbox[s1>>24])<<24 | uint32(invSbox[s0>>16&0xff])<<16 | uint32(invSbox[s3>>8&0xff])<<8 | uint32(invSbox[s2&0xff])
	t2 := uint32(invSbox[s2>>24])<<24 | uint32(invSbox[s1>>16&0xff])<<16 | uint32(invSbox[s0>>8&0xff])<<8 | uint32(invSbox[s3&0xff])
	t3 := uint32(invSbox[s3>>24])<<24 | uint32(invSbox[s2>>16&0xff])<<16 | uint32(invSbox[s1>>8&0xff])<<8 | uint32(invSbox[s0&0xff])
	return t0 ^ rk(k, i), t1 ^ rk(k, i+1), t2 ^ rk(k, i+2), t3 ^ rk(k, i+3)
}
