package xts

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	xxts "golang.org/x/crypto/xts"
)

// impl is one implementation of the package: the assembly paths the CPU and
// the build have, and always the portable Go code.
type impl struct {
	name string
	mode mode
}

func impls() []impl {
	var l []impl
	if hasVAES {
		l = append(l, impl{"vaes", modeVAES})
	}
	if hasAsm {
		l = append(l, impl{"aesni", modeAESNI})
	}
	return append(l, impl{"generic", modeGeneric})
}

func (im impl) encrypt(c *Cipher, dst, src []byte, first uint64, ss int) error {
	return c.crypt(dst, src, first, ss, false, im.mode)
}

func (im impl) decrypt(c *Cipher, dst, src []byte, first uint64, ss int) error {
	return c.crypt(dst, src, first, ss, true, im.mode)
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func randKey(r *rand.Rand) []byte {
	k := randBytes(r, 64)
	if bytes.Equal(k[:32], k[32:]) {
		k[0] ^= 1
	}
	return k
}

// iterations scales a loop count down under -short and -race.
func iterations(n int) int {
	if raceEnabled || testing.Short() {
		return max(1, n/8)
	}
	return n
}

func mustNew(t testing.TB, key []byte) *Cipher {
	t.Helper()
	c, err := newCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// reference runs golang.org/x/crypto/xts sector by sector; its tweak is the
// sector number as 128-bit little-endian, as in plain64.
func reference(t testing.TB, key, src []byte, first uint64, ss int, decrypt bool) []byte {
	t.Helper()
	ref, err := xxts.NewCipher(aes.NewCipher, key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(src))
	for i := 0; i*ss < len(src); i++ {
		s, d := src[i*ss:(i+1)*ss], out[i*ss:(i+1)*ss]
		if decrypt {
			ref.Decrypt(d, s, first+uint64(i))
		} else {
			ref.Encrypt(d, s, first+uint64(i))
		}
	}
	return out
}

func blockBytes(s0, s1, s2, s3 uint32) []byte {
	b := make([]byte, 16)
	putBE32(b, s0)
	putBE32(b[4:], s1)
	putBE32(b[8:], s2)
	putBE32(b[12:], s3)
	return b
}

func TestGenericAESMatchesStdlib(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		key := randBytes(r, 32)
		var enc, dec schedule
		expandKey256(&enc, &dec, key)
		blk, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		pt := randBytes(r, 16)
		want := make([]byte, 16)
		blk.Encrypt(want, pt)
		got := blockBytes(encryptBlockGeneric(&enc, be32(pt), be32(pt[4:]), be32(pt[8:]), be32(pt[12:])))
		if !bytes.Equal(got, want) {
			t.Fatalf("encrypt: got %x want %x", got, want)
		}
		back := blockBytes(decryptBlockGeneric(&dec, be32(got), be32(got[4:]), be32(got[8:]), be32(got[12:])))
		if !bytes.Equal(back, pt) {
			t.Fatalf("decrypt: got %x want %x", back, pt)
		}
	}
}

// FIPS 197 Appendix C.3 (AES-256) known answer.
func TestGenericAESFIPS197(t *testing.T) {
	key, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	pt, _ := hex.DecodeString("00112233445566778899aabbccddeeff")
	const want = "8ea2b7ca516745bfeafc49904b496089"
	var enc, dec schedule
	expandKey256(&enc, &dec, key)
	got := blockBytes(encryptBlockGeneric(&enc, be32(pt), be32(pt[4:]), be32(pt[8:]), be32(pt[12:])))
	if hex.EncodeToString(got) != want {
		t.Fatalf("got %x want %s", got, want)
	}
	back := blockBytes(decryptBlockGeneric(&dec, be32(got), be32(got[4:]), be32(got[8:]), be32(got[12:])))
	if !bytes.Equal(back, pt) {
		t.Fatalf("decrypt: got %x", back)
	}
}

// firstSectorFor picks a first sector number for n sectors, often close to
// the 2^64 limit (so that the 64-bit sector arithmetic is exercised).
func firstSectorFor(r *rand.Rand, iter, n int) uint64 {
	switch iter % 5 {
	case 0: // ends within n of 2^64-1
		return math.MaxUint64 - uint64(n) + 1 - uint64(r.IntN(n+1))
	case 1:
		return uint64(r.IntN(1000))
	case 2: // last sector is exactly 2^64-1
		return math.MaxUint64 - uint64(n) + 1
	case 3: // crosses 2^32
		return 1<<32 - uint64(r.IntN(n+1))
	}
	return r.Uint64() >> 1
}

func TestMatchesXCrypto(t *testing.T) {
	for _, im := range impls() {
		t.Run(im.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 4))
			for iter := range iterations(400) {
				key := randKey(r)
				c := mustNew(t, key)
				ss := []int{512, 4096}[r.IntN(2)]
				if iter%8 == 7 {
					ss = 16 * (1 + r.IntN(40)) // other sizes exercise the <8-block tail
				}
				n := 1 + r.IntN(64)
				first := firstSectorFor(r, iter, n)
				pt := randBytes(r, n*ss)
				want := reference(t, key, pt, first, ss, false)
				inPlace := iter%2 == 0
				desc := fmt.Sprintf("iter %d sectorSize %d sectors %d first %#x inPlace %v", iter, ss, n, first, inPlace)

				var ct []byte
				if inPlace {
					ct = append([]byte(nil), pt...)
					if err := im.encrypt(c, ct, ct, first, ss); err != nil {
						t.Fatalf("%s: %v", desc, err)
					}
				} else {
					dst := make([]byte, len(pt)+16*r.IntN(3)) // dst may be longer
					if err := im.encrypt(c, dst, pt, first, ss); err != nil {
						t.Fatalf("%s: %v", desc, err)
					}
					ct = dst[:len(pt)]
				}
				if !bytes.Equal(ct, want) {
					t.Fatalf("%s: encryption differs from x/crypto/xts", desc)
				}
				var back []byte
				if inPlace {
					back = append([]byte(nil), ct...)
					if err := im.decrypt(c, back, back, first, ss); err != nil {
						t.Fatalf("%s: %v", desc, err)
					}
				} else {
					back = make([]byte, len(ct))
					if err := im.decrypt(c, back, ct, first, ss); err != nil {
						t.Fatalf("%s: %v", desc, err)
					}
				}
				if !bytes.Equal(back, pt) {
					t.Fatalf("%s: decryption does not give the plaintext back", desc)
				}
			}
		})
	}
}

// TestPublicAPIUsesSwitch checks EncryptSectors/DecryptSectors through the
// package switch useAsm in both positions.
func TestPublicAPIUsesSwitch(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	key := randKey(r)
	c := mustNew(t, key)
	pt := randBytes(r, 8*4096)
	want := reference(t, key, pt, 77, 4096, false)
	oldAsm, oldVAES := useAsm, useVAES
	defer func() { useAsm, useVAES = oldAsm, oldVAES }()
	for _, im := range impls() {
		useAsm, useVAES = im.mode != modeGeneric, im.mode == modeVAES
		if defaultMode() != im.mode {
			t.Fatalf("%s: switches select mode %d", im.name, defaultMode())
		}
		ct := make([]byte, len(pt))
		if err := c.EncryptSectors(ct, pt, 77, 4096); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ct, want) {
			t.Fatalf("%s: EncryptSectors differs", im.name)
		}
		if err := c.DecryptSectors(ct, ct, 77, 4096); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ct, pt) {
			t.Fatalf("%s: DecryptSectors differs", im.name)
		}
	}
}

// TestShapes walks every sector size from 1 to 40 blocks and sector counts
// around the 8-sector tweak batch, comparing asm and generic with x/crypto.
func TestShapes(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	key := randKey(r)
	c := mustNew(t, key)
	for blocks := 1; blocks <= 40; blocks++ {
		ss := 16 * blocks
		for _, n := range []int{1, 2, 7, 8, 9, 15, 16, 17, 25} {
			pt := randBytes(r, n*ss)
			first := r.Uint64() >> 8
			want := reference(t, key, pt, first, ss, false)
			for _, im := range impls() {
				ct := make([]byte, len(pt))
				if err := im.encrypt(c, ct, pt, first, ss); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(ct, want) {
					t.Fatalf("%s: blocks %d sectors %d: encryption differs", im.name, blocks, n)
				}
				if err := im.decrypt(c, ct, ct, first, ss); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(ct, pt) {
					t.Fatalf("%s: blocks %d sectors %d: decryption differs", im.name, blocks, n)
				}
			}
		}
	}
}

// TestLargeBuffers crosses the internal 256 KiB chunking of assembly calls,
// including a sector size that does not divide the chunk.
func TestLargeBuffers(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	key := randKey(r)
	c := mustNew(t, key)
	cases := []struct{ ss, n int }{{512, 2049}, {4096, 300}, {768, 700}, {1 << 20, 2}, {maxSectorSize, 1}}
	if raceEnabled || testing.Short() {
		cases = []struct{ ss, n int }{{512, 520}, {768, 350}}
	}
	for _, tc := range cases {
		pt := randBytes(r, tc.ss*tc.n)
		first := uint64(1) << 40
		want := reference(t, key, pt, first, tc.ss, false)
		for _, im := range impls() {
			ct := append([]byte(nil), pt...)
			if err := im.encrypt(c, ct, ct, first, tc.ss); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ct, want) {
				t.Fatalf("%s: sectorSize %d × %d: encryption differs", im.name, tc.ss, tc.n)
			}
			if err := im.decrypt(c, ct, ct, first, tc.ss); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ct, pt) {
				t.Fatalf("%s: sectorSize %d × %d: decryption differs", im.name, tc.ss, tc.n)
			}
		}
	}
}

// TestSectorsAreIndependent checks that encrypting a run of sectors equals
// encrypting each sector alone with its own number (what dm-crypt does).
func TestSectorsAreIndependent(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	c := mustNew(t, randKey(r))
	pt := randBytes(r, 20*512)
	for _, im := range impls() {
		all := make([]byte, len(pt))
		if err := im.encrypt(c, all, pt, 1000, 512); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			one := make([]byte, 512)
			if err := im.encrypt(c, one, pt[i*512:(i+1)*512], 1000+uint64(i), 512); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(one, all[i*512:(i+1)*512]) {
				t.Fatalf("%s: sector %d differs", im.name, i)
			}
		}
	}
}

// IEEE 1619-2007 Annex B, vector 10: XTS-AES-256, data unit 0xff, 512 bytes.
func TestIEEE1619Vector10(t *testing.T) {
	key, _ := hex.DecodeString(
		"2718281828459045235360287471352662497757247093699959574966967627" +
			"3141592653589793238462643383279502884197169399375105820974944592")
	pt := make([]byte, 512)
	for i := range pt {
		pt[i] = byte(i)
	}
	want, _ := hex.DecodeString("" +
		"1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b" +
		"5d31e276f8fe4a8d66b317f9ac683f44680a86ac35adfc3345befecb4bb188fd" +
		"5776926c49a3095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0" +
		"c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca" +
		"2a3e7a7d7df7b10355165c8b9a6d0a7de8b062c4500dc4cd120c0f7418dae3d0" +
		"b5781c34803fa75421c790dfe1de1834f280d7667b327f6c8cd7557e12ac3a0f" +
		"93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c50841473d1a8cc81ec" +
		"583e9645e07b8d9670655ba5bbcfecc6dc3966380ad8fecb17b6ba02469a020a" +
		"84e18e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1" +
		"505eb309326d68378f8374595c849d84f4c333ec4423885143cb47bd71c5edae" +
		"9be69a2ffeceb1bec9de244fbe15992b11b77c040f12bd8f6a975a44a0f90c29" +
		"a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac" +
		"6e333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f" +
		"645e8b7e9bfdef33943054ff84011493c27b3429eaedb4ed5376441a77ed4385" +
		"1ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa" +
		"773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151")
	if len(want) != 512 {
		t.Fatalf("vector has %d bytes", len(want))
	}
	c := mustNew(t, key)
	for _, im := range impls() {
		ct := make([]byte, 512)
		if err := im.encrypt(c, ct, pt, 0xff, 512); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ct, want) {
			t.Fatalf("%s: got\n%x\nwant\n%x", im.name, ct, want)
		}
		if err := im.decrypt(c, ct, ct, 0xff, 512); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ct, pt) {
			t.Fatalf("%s: decryption of vector 10 differs", im.name)
		}
	}
}

// plain64IV is the 16-byte IV dm-crypt's plain64 gives a sector, as hex.
func plain64IV(sector uint64) string {
	var iv [16]byte
	binary.LittleEndian.PutUint64(iv[:8], sector)
	return hex.EncodeToString(iv[:])
}

// TestOpenSSLEnc runs the openssl command line: `openssl enc -aes-256-xts -K
// <key> -iv <plain64 IV> -nopad` (and -d). OpenSSL 3.x refuses XTS in enc
// ("enc XTS ciphers not supported"); then the test skips and
// TestOpenSSLLibcrypto does the cross-check through libcrypto.
func TestOpenSSLEnc(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not on PATH")
	}
	r := rand.New(rand.NewPCG(13, 14))
	key := randKey(r)
	c := mustNew(t, key)
	for i := range 4 {
		ss := []int{512, 4096}[i%2]
		sector := firstSectorFor(r, i, 1)
		pt := randBytes(r, ss)
		for _, dec := range []bool{false, true} {
			args := []string{"enc", "-aes-256-xts", "-K", hex.EncodeToString(key), "-iv", plain64IV(sector), "-nopad"}
			if dec {
				args = append(args, "-d")
			}
			cmd := exec.Command(openssl, args...)
			cmd.Stdin = bytes.NewReader(pt)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				if strings.Contains(stderr.String(), "XTS ciphers not supported") {
					t.Skipf("this openssl's enc command refuses XTS (%q); see TestOpenSSLLibcrypto", strings.TrimSpace(strings.Split(stderr.String(), "\n")[0]))
				}
				t.Fatalf("openssl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
			}
			for _, im := range impls() {
				got := make([]byte, ss)
				if dec {
					err = im.decrypt(c, got, pt, sector, ss)
				} else {
					err = im.encrypt(c, got, pt, sector, ss)
				}
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, out) {
					t.Fatalf("%s: decrypt=%v sector %#x: differs from openssl enc", im.name, dec, sector)
				}
			}
		}
	}
}

// opensslHelper drives OpenSSL's EVP aes-256-xts through Python's
// cryptography package (a thin binding of libcrypto). Each input line is
// "e|d KEYHEX IVHEX DATAHEX"; each output line is the result in hex. The
// first output line is the OpenSSL version in use.
const opensslHelper = `
import sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
try:
    from cryptography.hazmat.backends.openssl.backend import backend
    print(backend.openssl_version_text())
except Exception:
    print("OpenSSL (version unknown)")
sys.stdout.flush()
for line in sys.stdin:
    op, key, iv, data = line.split()
    c = Cipher(algorithms.AES(bytes.fromhex(key)), modes.XTS(bytes.fromhex(iv)))
    ctx = c.encryptor() if op == "e" else c.decryptor()
    print((ctx.update(bytes.fromhex(data)) + ctx.finalize()).hex())
    sys.stdout.flush()
`

// TestOpenSSLLibcrypto compares random sectors with OpenSSL's own
// aes-256-xts (the EVP cipher behind "openssl speed -evp aes-256-xts"),
// reached through every python3 with the cryptography package that is found
// (the system one links the system libcrypto). Skips if there is none.
func TestOpenSSLLibcrypto(t *testing.T) {
	var pythons []string
	seen := map[string]bool{}
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		if real, err := filepath.EvalSymlinks(path); err == nil && !seen[real] {
			seen[real] = true
			pythons = append(pythons, path)
		}
	}
	ran := 0
	for _, py := range pythons {
		if exec.Command(py, "-c", "import cryptography.hazmat.primitives.ciphers").Run() != nil {
			t.Logf("%s: no cryptography package, skipped", py)
			continue
		}
		ran++
		t.Run(py, func(t *testing.T) { crossCheckOpenSSL(t, py) })
	}
	if ran == 0 {
		t.Skip("no python3 with the cryptography package (OpenSSL binding) found; `openssl enc` cannot do XTS, so there is no other way to reach OpenSSL's XTS without cgo")
	}
}

func crossCheckOpenSSL(t *testing.T, python string) {
	cmd := exec.Command(python, "-c", opensslHelper)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	if !sc.Scan() {
		t.Fatalf("helper failed: %s", stderr.String())
	}
	t.Logf("%s: %s", python, sc.Text())
	call := func(op string, key []byte, sector uint64, data []byte) []byte {
		fmt.Fprintf(stdin, "%s %x %s %x\n", op, key, plain64IV(sector), data)
		if !sc.Scan() {
			t.Fatalf("helper failed: %s", stderr.String())
		}
		out, err := hex.DecodeString(sc.Text())
		if err != nil {
			t.Fatalf("helper output: %v", err)
		}
		return out
	}
	r := rand.New(rand.NewPCG(15, 16))
	for i := range 24 {
		key := randKey(r)
		c := mustNew(t, key)
		ss := []int{512, 4096}[i%2]
		sector := firstSectorFor(r, i, 1)
		pt := randBytes(r, ss)
		wantCT := call("e", key, sector, pt)
		wantPT := call("d", key, sector, pt) // decrypting random data is as good a check
		for _, im := range impls() {
			got := make([]byte, ss)
			if err := im.encrypt(c, got, pt, sector, ss); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, wantCT) {
				t.Fatalf("%s: encrypt sector %#x (%d B) differs from OpenSSL", im.name, sector, ss)
			}
			if err := im.decrypt(c, got, pt, sector, ss); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, wantPT) {
				t.Fatalf("%s: decrypt sector %#x (%d B) differs from OpenSSL", im.name, sector, ss)
			}
		}
	}
}

func TestNewErrors(t *testing.T) {
	for _, n := range []int{0, 16, 32, 63, 65, 128} {
		if _, err := newCipher(make([]byte, n)); !errors.Is(err, errKeySize) {
			t.Errorf("key of %d bytes: err = %v, want %v", n, err, errKeySize)
		}
	}
	key := make([]byte, 64)
	for i := range 32 {
		key[i], key[32+i] = byte(i*13), byte(i*13)
	}
	if _, err := newCipher(key); !errors.Is(err, errEqualKeys) {
		t.Errorf("equal halves: err = %v", err)
	}
	key[63] ^= 0x80
	if _, err := newCipher(key); err != nil {
		t.Errorf("halves differing in one bit: %v", err)
	}
	if _, err := newCipher(make([]byte, 64)); !errors.Is(err, errEqualKeys) {
		t.Errorf("all-zero key: err = %v", err)
	}
}

// TestNoAESNIRefused: without AES-NI, New refuses rather than encrypt with
// the table-based AES, whose cache accesses depend on the key and the data.
// The CPU's lack of AES-NI is simulated by the switch the CPU check sets
// (TestCPUFallback checks the same with the feature really switched off).
func TestNoAESNIRefused(t *testing.T) {
	old := useAsm
	defer func() { useAsm = old }()
	useAsm = false
	key := randKey(rand.New(rand.NewPCG(41, 42)))
	if c, err := New(key); !errors.Is(err, ErrNoAESNI) || c != nil {
		t.Fatalf("New without AES-NI: cipher %v, err %v; want ErrNoAESNI", c != nil, err)
	}
	if err := Available(); !errors.Is(err, ErrNoAESNI) {
		t.Fatalf("Available without AES-NI: %v", err)
	}
	if !hasAsm {
		return
	}
	useAsm = true
	if _, err := New(key); err != nil {
		t.Fatalf("New with AES-NI: %v", err)
	}
	if err := Available(); err != nil {
		t.Fatalf("Available with AES-NI: %v", err)
	}
}

// TestKeyScheduleTableFree: the key schedule, which runs in Go on every
// CPU, gives the round keys of the table-based construction it replaced
// (S-box and InvMixColumns by table lookups at key-dependent indexes).
func TestKeyScheduleTableFree(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	for i := 0; i < 200; i++ {
		key := randKey(r)[:32]
		var enc, dec, wantEnc, wantDec schedule
		expandKey256(&enc, &dec, key)
		expandKeyTables(&wantEnc, &wantDec, key)
		if enc != wantEnc || dec != wantDec {
			t.Fatalf("key %x: schedule differs from the table-based one", key)
		}
	}
	for x := 0; x < 256; x++ {
		if got := sboxCT(byte(x)); got != sbox[x] {
			t.Fatalf("sboxCT(%#x) = %#x, want %#x", x, got, sbox[x])
		}
	}
}

// expandKeyTables is the table-based key schedule expandKey256 replaced.
func expandKeyTables(enc, dec *schedule, key []byte) {
	subWord := func(w uint32) uint32 {
		return uint32(sbox[w>>24])<<24 | uint32(sbox[w>>16&0xff])<<16 | uint32(sbox[w>>8&0xff])<<8 | uint32(sbox[w&0xff])
	}
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
	for r := 0; r <= rounds; r++ {
		src := enc[16*(rounds-r) : 16*(rounds-r)+16]
		dst := dec[16*r : 16*r+16]
		for j := 0; j < 16; j += 4 {
			w := binary.BigEndian.Uint32(src[j:])
			if r > 0 && r < rounds {
				w = td0[sbox[w>>24]] ^ td1[sbox[w>>16&0xff]] ^ td2[sbox[w>>8&0xff]] ^ td3[sbox[w&0xff]]
			}
			binary.BigEndian.PutUint32(dst[j:], w)
		}
	}
}

func TestSectorErrors(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	c := mustNew(t, randKey(r))
	buf := make([]byte, 8192)
	cases := []struct {
		name     string
		dst, src []byte
		first    uint64
		ss       int
		want     error
	}{
		{"sector size 0", buf, buf, 0, 0, errSectorSize},
		{"sector size negative", buf, buf, 0, -512, errSectorSize},
		{"sector size 8", buf, buf, 0, 8, errSectorSize},
		{"sector size 520", buf[:1040], buf[:1040], 0, 520, errSectorSize},
		{"sector size 2^24+16", buf, buf, 0, maxSectorSize + 16, errSectorSize},
		{"partial sector", buf[:1000], buf[:1000], 0, 512, errPartial},
		{"half a 4K sector", buf[:2048], buf[:2048], 0, 4096, errPartial},
		{"dst too short", make([]byte, 511), make([]byte, 512), 0, 512, errShortDst},
		{"dst nil", nil, make([]byte, 512), 0, 512, errShortDst},
		{"inexact overlap ahead", buf[16:1040], buf[:1024], 0, 512, errOverlap},
		{"inexact overlap behind", buf[:1024], buf[16:1040], 0, 512, errOverlap},
		{"sector overflow", buf[:1024], buf[:1024], math.MaxUint64, 512, errSectorWrap},
		{"sector overflow 2", buf, buf, math.MaxUint64 - 6, 512, errSectorWrap},
	}
	for _, tc := range cases {
		for _, im := range impls() {
			if err := im.encrypt(c, tc.dst, tc.src, tc.first, tc.ss); !errors.Is(err, tc.want) {
				t.Errorf("%s %s encrypt: err = %v, want %v", im.name, tc.name, err, tc.want)
			}
			if err := im.decrypt(c, tc.dst, tc.src, tc.first, tc.ss); !errors.Is(err, tc.want) {
				t.Errorf("%s %s decrypt: err = %v, want %v", im.name, tc.name, err, tc.want)
			}
		}
	}
	// Accepted edge cases.
	ok := []struct {
		name     string
		dst, src []byte
		first    uint64
		ss       int
	}{
		{"empty", nil, nil, 0, 512},
		{"empty at max sector", buf[:0], buf[:0], math.MaxUint64, 4096},
		{"last sector 2^64-1", buf[:1024], buf[:1024], math.MaxUint64 - 1, 512},
		{"16-byte sectors", buf[:64], buf[:64], 5, 16},
		{"disjoint neighbours", buf[512:1024], buf[:512], 0, 512},
		{"dst longer", buf, buf[:512], 0, 512},
	}
	for _, tc := range ok {
		for _, im := range impls() {
			if err := im.encrypt(c, tc.dst, tc.src, tc.first, tc.ss); err != nil {
				t.Errorf("%s %s: %v", im.name, tc.name, err)
			}
		}
	}
}

func TestWipe(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	c := mustNew(t, randKey(r))
	buf := make([]byte, 4096)
	if err := c.EncryptSectors(buf, buf, 0, 4096); err != nil {
		t.Fatal(err)
	}
	c.Wipe()
	var zero schedule
	if c.ek1 != zero || c.dk1 != zero || c.ek2 != zero {
		t.Fatal("round keys not zeroed")
	}
	for _, im := range impls() {
		if err := im.encrypt(c, buf, buf, 0, 4096); !errors.Is(err, errWiped) {
			t.Errorf("%s encrypt after Wipe: err = %v", im.name, err)
		}
		if err := im.decrypt(c, buf, buf, 0, 4096); !errors.Is(err, errWiped) {
			t.Errorf("%s decrypt after Wipe: err = %v", im.name, err)
		}
		if err := im.encrypt(c, nil, nil, 0, 4096); !errors.Is(err, errWiped) {
			t.Errorf("%s empty encrypt after Wipe: err = %v", im.name, err)
		}
	}
	c.Wipe() // twice is harmless
	var nilC *Cipher
	nilC.Wipe()
	if err := nilC.EncryptSectors(buf, buf, 0, 4096); !errors.Is(err, errWiped) {
		t.Errorf("nil cipher: err = %v", err)
	}
}

// TestNewDoesNotKeepKey checks that New copies the key: changing the caller's
// slice afterwards does not change the cipher.
func TestNewDoesNotKeepKey(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	key := randKey(r)
	orig := append([]byte(nil), key...)
	c := mustNew(t, key)
	clear(key)
	pt := randBytes(r, 512)
	ct := make([]byte, 512)
	if err := c.EncryptSectors(ct, pt, 3, 512); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ct, reference(t, orig, pt, 3, 512, false)) {
		t.Fatal("cipher depends on the caller's key slice after New")
	}
}

func TestNoAllocations(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	c := mustNew(t, randKey(r))
	buf := make([]byte, iterations(64)*1024)
	out := make([]byte, len(buf))
	for _, im := range impls() {
		for _, ss := range []int{512, 4096, 48} {
			n := len(buf) / ss * ss
			if a := testing.AllocsPerRun(50, func() { _ = im.encrypt(c, out[:n], buf[:n], 9, ss) }); a != 0 {
				t.Errorf("%s encrypt %d: %v allocs per run", im.name, ss, a)
			}
			if a := testing.AllocsPerRun(50, func() { _ = im.decrypt(c, buf[:n], buf[:n], 9, ss) }); a != 0 {
				t.Errorf("%s decrypt %d: %v allocs per run", im.name, ss, a)
			}
		}
	}
	// And through the public methods with the default implementation.
	if a := testing.AllocsPerRun(50, func() { _ = c.EncryptSectors(out, buf, 1, 4096) }); a != 0 {
		t.Errorf("EncryptSectors: %v allocs per run", a)
	}
	if a := testing.AllocsPerRun(50, func() { _ = c.DecryptSectors(buf, buf, 1, 4096) }); a != 0 {
		t.Errorf("DecryptSectors: %v allocs per run", a)
	}
}

// TestConcurrent shares one Cipher between goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	key := randKey(r)
	c := mustNew(t, key)
	pt := randBytes(r, 16*4096)
	want := reference(t, key, pt, 500, 4096, false)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			im := impls()[g%len(impls())]
			buf := make([]byte, len(pt))
			for range 20 {
				if err := im.encrypt(c, buf, pt, 500, 4096); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(buf, want) {
					errs <- fmt.Errorf("%s: concurrent encryption differs", im.name)
					return
				}
				if err := im.decrypt(c, buf, buf, 500, 4096); err != nil || !bytes.Equal(buf, pt) {
					errs <- fmt.Errorf("%s: concurrent decryption differs (%v)", im.name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Benchmarks: 16 sectors (64 KiB for 4 KiB sectors) per operation, in place.

const benchSectors = 16

func benchKey() []byte {
	key := make([]byte, 64)
	for i := range key {
		key[i] = byte(i*7 + 1)
	}
	return key
}

func benchOurs(b *testing.B, im impl, decrypt bool, ss int) {
	c := mustNew(b, benchKey())
	buf := make([]byte, benchSectors*ss)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for i := uint64(0); b.Loop(); i++ {
		var err error
		if decrypt {
			err = im.decrypt(c, buf, buf, i*benchSectors, ss)
		} else {
			err = im.encrypt(c, buf, buf, i*benchSectors, ss)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

func benchXCrypto(b *testing.B, decrypt bool, ss int) {
	c, err := xxts.NewCipher(aes.NewCipher, benchKey())
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, benchSectors*ss)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for i := uint64(0); b.Loop(); i++ {
		for s := 0; s < benchSectors; s++ {
			sec := buf[s*ss : (s+1)*ss]
			if decrypt {
				c.Decrypt(sec, sec, i*benchSectors+uint64(s))
			} else {
				c.Encrypt(sec, sec, i*benchSectors+uint64(s))
			}
		}
	}
}

func benchAll(b *testing.B, decrypt bool, ss int) {
	if !hasVAES {
		b.Run("vaes", func(b *testing.B) { b.Skip("VAES/VPCLMULQDQ not available on this CPU/build") })
	}
	if !hasAsm {
		b.Run("aesni", func(b *testing.B) { b.Skip("AES-NI not available on this CPU/build") })
	}
	for _, im := range impls() {
		b.Run(im.name, func(b *testing.B) { benchOurs(b, im, decrypt, ss) })
	}
	b.Run("xcrypto", func(b *testing.B) { benchXCrypto(b, decrypt, ss) })
}

func BenchmarkEncrypt4K(b *testing.B)  { benchAll(b, false, 4096) }
func BenchmarkDecrypt4K(b *testing.B)  { benchAll(b, true, 4096) }
func BenchmarkEncrypt512(b *testing.B) { benchAll(b, false, 512) }
func BenchmarkDecrypt512(b *testing.B) { benchAll(b, true, 512) }

// TestCPUFallback re-runs this test binary with GODEBUG switching CPU
// features off (golang.org/x/sys/cpu honours cpu.NAME=off) and checks that
// the implementation chosen at start-up follows the CPU: without AES-NI
// none (New refuses), without AVX-512 the 128-bit AES-NI code.
func TestCPUFallback(t *testing.T) {
	if want := os.Getenv("XTS_TEST_WANT_MODE"); want != "" {
		if got := fmt.Sprint(defaultMode()); got != want {
			t.Fatalf("GODEBUG=%s: default mode %s, want %s", os.Getenv("GODEBUG"), got, want)
		}
		r := rand.New(rand.NewPCG(27, 28))
		key := randKey(r)
		if want == fmt.Sprint(modeGeneric) {
			// No AES-NI: no cipher, rather than the table-based AES.
			if _, err := New(key); !errors.Is(err, ErrNoAESNI) {
				t.Fatalf("GODEBUG=%s: New: %v, want ErrNoAESNI", os.Getenv("GODEBUG"), err)
			}
			return
		}
		c, err := New(key)
		if err != nil {
			t.Fatal(err)
		}
		pt := randBytes(r, 4*4096)
		ct := make([]byte, len(pt))
		if err := c.EncryptSectors(ct, pt, 42, 4096); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ct, reference(t, key, pt, 42, 4096, false)) {
			t.Fatal("encryption differs from x/crypto/xts")
		}
		return
	}
	if runtime.GOARCH != "amd64" || !hasAsm {
		t.Skip("only meaningful on amd64 with AES-NI")
	}
	cases := []struct{ godebug, want string }{
		{"cpu.aes=off", fmt.Sprint(modeGeneric)},
	}
	if hasVAES {
		cases = append(cases, struct{ godebug, want string }{"cpu.avx512f=off", fmt.Sprint(modeAESNI)})
	}
	for _, tc := range cases {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCPUFallback$", "-test.count=1")
		cmd.Env = append(os.Environ(), "GODEBUG="+tc.godebug, "XTS_TEST_WANT_MODE="+tc.want)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("GODEBUG=%s: %v\n%s", tc.godebug, err, out)
		}
		t.Logf("GODEBUG=%s: default implementation %s, output matches", tc.godebug, tc.want)
	}
}
