package encap

import (
	"crypto/sha256"
	"encoding/binary"
)

// The key schedule (RFC 5869 HKDF with SHA-256):
//
//	PRK(epoch)   = HKDF-Extract(salt = kdfSalt, IKM = VPC key of the epoch)
//	session key  = HKDF-Expand(PRK(epoch), info, 32)
//	info         = kdfInfo ‖ VPC ‖ epoch ‖ source interface ‖ session id
//	               (big-endian, 4+4+4+8 bytes)
//
// HMAC is computed here over buffers the caller gives, rather than with
// crypto/hmac, because crypto/hmac keeps K⊕ipad and K⊕opad (which are the
// key, for anyone who finds them) in heap objects that are garbage, not
// wiped, once it returns. Here those blocks are built in the keyring's
// locked scratch memory and wiped by the caller. What remains outside it
// are the SHA-256 chaining values inside sha256.Sum256, on the goroutine
// stack for the duration of one call. A test holds this code to
// crypto/hkdf's answers.

const (
	kdfSalt = "azote encap v1 salt"
	kdfInfo = "azote encap v1 session key"
	// infoLen is the length of info; expand appends the block counter.
	infoLen = len(kdfInfo) + 4 + 4 + 4 + 8
	// hmacScratch is the scratch an hmac call needs for a message of up
	// to infoLen+1 bytes: the padded key block and the message, then the
	// padded key block and the inner digest.
	hmacScratch = sha256.BlockSize + max(infoLen+1, sha256.Size)
)

// hmacSHA256 writes HMAC-SHA256(key, msg) to out. key is at most one
// block; scratch holds at least BlockSize+max(len(msg), Size) bytes.
// Secrets pass only through scratch and out (and the stack of Sum256).
func hmacSHA256(out *[sha256.Size]byte, key, msg, scratch []byte) {
	const ipad, opad = 0x36, 0x5c
	in := scratch[:sha256.BlockSize+len(msg)]
	clear(in[:sha256.BlockSize])
	copy(in, key)
	for i := range sha256.BlockSize {
		in[i] ^= ipad
	}
	copy(in[sha256.BlockSize:], msg)
	*out = sha256.Sum256(in)
	o := scratch[:sha256.BlockSize+sha256.Size]
	clear(o[:sha256.BlockSize])
	copy(o, key)
	for i := range sha256.BlockSize {
		o[i] ^= opad
	}
	copy(o[sha256.BlockSize:], out[:])
	*out = sha256.Sum256(o)
	clear(scratch[:max(len(in), len(o))])
}

// extract is HKDF-Extract(kdfSalt, ikm) into prk.
func extract(prk *[sha256.Size]byte, ikm, scratch []byte) {
	hmacSHA256(prk, []byte(kdfSalt), ikm, scratch)
}

// sessionInfo writes the HKDF info of a session, followed by HKDF-Expand's
// first block counter, into b (infoLen+1 bytes).
func sessionInfo(b []byte, vpc, epoch, src uint32, session uint64) []byte {
	b = b[:infoLen+1]
	n := copy(b, kdfInfo)
	binary.BigEndian.PutUint32(b[n:], vpc)
	binary.BigEndian.PutUint32(b[n+4:], epoch)
	binary.BigEndian.PutUint32(b[n+8:], src)
	binary.BigEndian.PutUint64(b[n+12:], session)
	b[infoLen] = 1
	return b
}

// expand is HKDF-Expand(prk, info, 32): one HMAC block, since the key is
// exactly one SHA-256 output. msg is info followed by the byte 1.
func expand(key *[sha256.Size]byte, prk, msg, scratch []byte) {
	hmacSHA256(key, prk, msg, scratch)
}
