// Package xts implements AES-256-XTS (IEEE 1619) on whole disk sectors,
// byte-for-byte compatible with dm-crypt's "aes-xts-plain64" on-disk format:
// a 64-byte key is split into the data key K1 (first 32 bytes) and the tweak
// key K2 (last 32 bytes); the tweak of a sector is its 64-bit sector number in
// little-endian order, zero-padded to 16 bytes and encrypted with K2; the
// tweak of each following 16-byte block is multiplied by α in GF(2^128)
// (little-endian convention, reduction polynomial x^128+x^7+x^2+x+1).
//
// Sectors are multiples of 16 bytes, so ciphertext stealing is never needed
// and not implemented. On amd64 the work is done by assembly chosen at start
// from the CPU: VAES on 256-bit registers with sixteen blocks in flight where
// the CPU and OS offer AVX-512 with VAES (Ice Lake, Zen 4 and later), else
// AES-NI with eight blocks in flight. Elsewhere, with the purego build tag,
// or on a CPU without AES-NI, New refuses with ErrNoAESNI: the portable Go
// implementation's AES is table-based and therefore not constant-time with
// respect to cache timing, so it is only a test reference. The key schedule
// (computed in Go on every CPU) reads no table at a key-dependent index. The
// assembly zeroes the vector registers and stack it used before returning.
//
// XTS gives confidentiality only: it does not detect tampering, and a change
// to one ciphertext block randomises the whole 16-byte plaintext block.
//
// It never logs or stores keys; Wipe zeroes them.
package xts
