package xts

import (
	"errors"
	"math/bits"
	"unsafe"
)

// keySize is the length in bytes of an AES-256-XTS key: K1 (data) ‖ K2 (tweak).
const keySize = 64

// maxSectorSize is the largest accepted sector: IEEE 1619 limits a data unit
// to 2^20 blocks of 16 bytes.
const maxSectorSize = 1 << 24

// asmChunk bounds the bytes handed to one assembly call. Assembly functions
// cannot be preempted, so huge requests are split to keep scheduling and GC
// latency low; the per-call cost at this size is negligible.
const asmChunk = 256 << 10

var (
	errKeySize    = errors.New("xts: key must be 64 bytes (two AES-256 keys)")
	errEqualKeys  = errors.New("xts: data key and tweak key must differ (IEEE 1619 key check)")
	errWiped      = errors.New("xts: cipher has been wiped")
	errSectorSize = errors.New("xts: sector size must be a multiple of 16 between 16 and 16 MiB")
	errPartial    = errors.New("xts: input length is not a multiple of the sector size")
	errShortDst   = errors.New("xts: destination shorter than source")
	errOverlap    = errors.New("xts: destination and source overlap without being identical")
	errSectorWrap = errors.New("xts: sector numbers overflow 64 bits")
)

// ErrNoAESNI is returned by New and Available on a CPU without AES-NI (or
// a build without the assembly). The portable AES here is table-based:
// which cache lines it reads depends on the key and the data, so a tenant
// sharing the CPU could recover keys by timing its own cache misses. Rather
// than encrypt with it, azote refuses encrypted volumes on such a host.
var ErrNoAESNI = errors.New("xts: this CPU has no AES-NI, and the only other AES here is table-based (not constant-time): " +
	"a tenant sharing the CPU could learn volume keys through cache timing, so encryption is refused on this host")

// Available reports whether New can make a Cipher on this host: nil when
// the constant-time assembly can run, else ErrNoAESNI.
func Available() error {
	if !useAsm {
		return ErrNoAESNI
	}
	return nil
}

// Cipher encrypts whole sectors. Safe for concurrent use by multiple goroutines (no mutable state after New).
//
// Wipe is the one exception: it must not run concurrently with the other
// methods. After Wipe every method returns an error.
type Cipher struct {
	ek1   schedule // K1 encryption round keys
	dk1   schedule // K1 decryption round keys (equivalent inverse cipher)
	ek2   schedule // K2 encryption round keys (tweaks are only ever encrypted)
	wiped bool
}

// New returns a Cipher for a 64-byte key: the first 32 bytes are the AES-256
// data key K1, the last 32 bytes the AES-256 tweak key K2, as in dm-crypt's
// aes-xts-plain64 with a 512-bit key. Keys whose halves are equal are
// rejected, as IEEE 1619 and FIPS 140 require. The key slice is not retained.
// Without AES-NI it fails with ErrNoAESNI (see Available).
func New(key []byte) (*Cipher, error) {
	c := new(Cipher)
	if err := Init(c, key); err != nil {
		return nil, err
	}
	return c, nil
}

// Init is New for a Cipher the caller placed, in memory that is locked
// and left out of core dumps (internal/keymem): the round keys are
// written there and nowhere else. A Cipher holds no pointers.
func Init(c *Cipher, key []byte) error {
	if err := Available(); err != nil {
		return err
	}
	return initCipher(c, key)
}

// newCipher is New without the CPU check, for tests of the portable code.
func newCipher(key []byte) (*Cipher, error) {
	c := new(Cipher)
	if err := initCipher(c, key); err != nil {
		return nil, err
	}
	return c, nil
}

func initCipher(c *Cipher, key []byte) error {
	if len(key) != keySize {
		return errKeySize
	}
	var diff byte
	for i := 0; i < 32; i++ {
		diff |= key[i] ^ key[32+i]
	}
	if diff == 0 {
		return errEqualKeys
	}
	*c = Cipher{}
	expandKey256(&c.ek1, &c.dk1, key[:32])
	expandKey256(&c.ek2, nil, key[32:])
	return nil
}

// EncryptSectors encrypts src, which holds len(src)/sectorSize consecutive
// sectors numbered from firstSector, into dst. len(src) must be a multiple of
// sectorSize, which must be a multiple of 16 (512 and 4096 are usual); dst
// must be at least as long as src and may be src itself (in place), but must
// not otherwise overlap it. The sector numbers must not pass 2^64-1.
func (c *Cipher) EncryptSectors(dst, src []byte, firstSector uint64, sectorSize int) error {
	return c.crypt(dst, src, firstSector, sectorSize, false, defaultMode())
}

// DecryptSectors is the inverse of EncryptSectors, with the same rules.
func (c *Cipher) DecryptSectors(dst, src []byte, firstSector uint64, sectorSize int) error {
	return c.crypt(dst, src, firstSector, sectorSize, true, defaultMode())
}

// mode is an implementation of the package.
type mode uint8

const (
	modeGeneric mode = iota // portable Go
	modeAESNI               // assembly, AES-NI on XMM registers, 8 blocks in flight
	modeVAES                // assembly, VAES on YMM registers, 16 blocks in flight
)

func (m mode) String() string {
	switch m {
	case modeGeneric:
		return "generic"
	case modeAESNI:
		return "aesni"
	case modeVAES:
		return "vaes"
	}
	return "invalid"
}

// defaultMode picks the implementation from the package switches, which
// start as what the CPU supports.
func defaultMode() mode {
	switch {
	case useAsm && useVAES:
		return modeVAES
	case useAsm:
		return modeAESNI
	}
	return modeGeneric
}

// crypt does either direction with the implementation m (which tests set
// explicitly; an assembly mode must only be used when the CPU has it).
func (c *Cipher) crypt(dst, src []byte, firstSector uint64, sectorSize int, decrypt bool, m mode) error {
	if err := c.check(dst, src, firstSector, sectorSize); err != nil {
		return err
	}
	if len(src) == 0 {
		return nil
	}
	if m == modeGeneric {
		xtsGeneric(c, dst, src, firstSector, sectorSize, decrypt)
		return nil
	}
	chunk := chunkSize(sectorSize)
	for len(src) > 0 {
		n := min(chunk, len(src))
		sectors, blocks := n/sectorSize, sectorSize/16
		switch {
		case m == modeVAES && decrypt:
			decryptSectorsVAES(&c.dk1, &c.ek2, &dst[0], &src[0], sectors, blocks, firstSector)
		case m == modeVAES:
			encryptSectorsVAES(&c.ek1, &c.ek2, &dst[0], &src[0], sectors, blocks, firstSector)
		case decrypt:
			decryptSectorsAsm(&c.dk1, &c.ek2, &dst[0], &src[0], sectors, blocks, firstSector)
		default:
			encryptSectorsAsm(&c.ek1, &c.ek2, &dst[0], &src[0], sectors, blocks, firstSector)
		}
		firstSector += uint64(n / sectorSize)
		dst, src = dst[n:], src[n:]
	}
	return nil
}

// Wipe zeroes all key material and round keys held by c. Any later call to
// EncryptSectors or DecryptSectors returns an error. Wipe must not be called
// while another goroutine is using c. Calling it twice is harmless.
func (c *Cipher) Wipe() {
	if c == nil {
		return
	}
	clear(c.ek1[:])
	clear(c.dk1[:])
	clear(c.ek2[:])
	c.wiped = true
}

func (c *Cipher) check(dst, src []byte, firstSector uint64, sectorSize int) error {
	if c == nil || c.wiped {
		return errWiped
	}
	if sectorSize < 16 || sectorSize%16 != 0 || sectorSize > maxSectorSize {
		return errSectorSize
	}
	if len(src)%sectorSize != 0 {
		return errPartial
	}
	if len(dst) < len(src) {
		return errShortDst
	}
	if inexactOverlap(dst[:len(src)], src) {
		return errOverlap
	}
	if n := uint64(len(src) / sectorSize); n > 0 && firstSector > ^uint64(0)-(n-1) {
		return errSectorWrap
	}
	return nil
}

func chunkSize(sectorSize int) int {
	if sectorSize >= asmChunk {
		return sectorSize
	}
	return asmChunk / sectorSize * sectorSize
}

// inexactOverlap reports whether x and y share memory without starting at
// the same address.
func inexactOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 || &x[0] == &y[0] {
		return false
	}
	x0 := uintptr(unsafe.Pointer(&x[0]))
	y0 := uintptr(unsafe.Pointer(&y[0]))
	return x0 <= y0+uintptr(len(y)-1) && y0 <= x0+uintptr(len(x)-1)
}

// xtsGeneric is the portable implementation of both directions.
func xtsGeneric(c *Cipher, dst, src []byte, sector uint64, sectorSize int, decrypt bool) {
	for len(src) > 0 {
		// T = E_K2(sector as 128-bit little-endian). Words are big-endian
		// views of the bytes, so the little-endian sector number is byte-swapped.
		t0, t1, t2, t3 := encryptBlockGeneric(&c.ek2, bits.ReverseBytes32(uint32(sector)), bits.ReverseBytes32(uint32(sector>>32)), 0, 0)
		// Tweak as a little-endian 128-bit integer lo + hi<<64.
		lo := uint64(bits.ReverseBytes32(t0)) | uint64(bits.ReverseBytes32(t1))<<32
		hi := uint64(bits.ReverseBytes32(t2)) | uint64(bits.ReverseBytes32(t3))<<32
		for off := 0; off < sectorSize; off += 16 {
			w0 := bits.ReverseBytes32(uint32(lo))
			w1 := bits.ReverseBytes32(uint32(lo >> 32))
			w2 := bits.ReverseBytes32(uint32(hi))
			w3 := bits.ReverseBytes32(uint32(hi >> 32))
			s := src[off : off+16 : off+16]
			s0 := be32(s[0:]) ^ w0
			s1 := be32(s[4:]) ^ w1
			s2 := be32(s[8:]) ^ w2
			s3 := be32(s[12:]) ^ w3
			if decrypt {
				s0, s1, s2, s3 = decryptBlockGeneric(&c.dk1, s0, s1, s2, s3)
			} else {
				s0, s1, s2, s3 = encryptBlockGeneric(&c.ek1, s0, s1, s2, s3)
			}
			d := dst[off : off+16 : off+16]
			putBE32(d[0:], s0^w0)
			putBE32(d[4:], s1^w1)
			putBE32(d[8:], s2^w2)
			putBE32(d[12:], s3^w3)
			// T *= α in GF(2^128), constant time.
			carry := hi >> 63
			hi = hi<<1 | lo>>63
			lo = lo<<1 ^ (-carry & 0x87)
		}
		sector++
		src = src[sectorSize:]
		dst = dst[sectorSize:]
	}
}

func be32(b []byte) uint32 {
	_ = b[3]
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func putBE32(b []byte, v uint32) {
	_ = b[3]
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}
