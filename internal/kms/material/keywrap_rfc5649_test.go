package material

import (
	"bytes"
	"crypto/aes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rfc5649Vectors are RFC 5649 section 6's two examples (a 192-bit KEK).
var rfc5649Vectors = []struct{ kek, key, wrap string }{
	{"5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8", "c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
	{"5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8", "466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
}

func TestKeyWrapPadRFC5649(t *testing.T) {
	for _, v := range rfc5649Vectors {
		kek, key, want := unhex(t, v.kek), unhex(t, v.key), unhex(t, v.wrap)
		got, err := wrapPad(kek, key)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("wrap %x = %x, %v; want %x", key, got, err, want)
		}
		back, err := unwrapPad(kek, want)
		if err != nil || !bytes.Equal(back, key) {
			t.Errorf("unwrap %x = %x, %v; want %x", want, back, err, key)
		}
	}
}

func TestKeyWrapPadRoundTrip(t *testing.T) {
	for _, kekLen := range []int{16, 24, 32} {
		kek := bytes.Repeat([]byte{byte(kekLen)}, kekLen)
		for n := 1; n <= 80; n++ {
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(i*7 + n)
			}
			c, err := wrapPad(kek, p)
			if err != nil {
				t.Fatal(err)
			}
			if want := 8 + (n+7)/8*8; len(c) != want {
				t.Fatalf("%d bytes wrap to %d, want %d", n, len(c), want)
			}
			back, err := unwrapPad(kek, c)
			if err != nil || !bytes.Equal(back, p) {
				t.Fatalf("kek %d, %d bytes: unwrap = %x, %v", kekLen, n, back, err)
			}
			if _, err := unwrapPad(bytes.Repeat([]byte{1}, kekLen), c); !errors.Is(err, errUnwrap) {
				t.Fatalf("unwrap under another key: %v", err)
			}
		}
	}
	if _, err := wrapPad(make([]byte, 32), nil); err == nil {
		t.Fatal("wrapPad of nothing succeeded")
	}
	if _, err := wrapPad(make([]byte, 20), []byte("x")); err == nil {
		t.Fatal("wrapPad under a 20-byte key succeeded")
	}
}

func TestKeyUnwrapPadRejects(t *testing.T) {
	kek := make([]byte, 32)
	for _, n := range []int{1, 7, 8, 9, 20, 32, 138} {
		c, err := wrapPad(kek, make([]byte, n))
		if err != nil {
			t.Fatal(err)
		}
		for i := range c {
			for bit := 0; bit < 8; bit++ {
				d := bytes.Clone(c)
				d[i] ^= 1 << bit
				if _, err := unwrapPad(kek, d); !errors.Is(err, errUnwrap) {
					t.Fatalf("%d-byte input, byte %d bit %d flipped: %v", n, i, bit, err)
				}
			}
		}
		for _, cut := range []int{1, 8} {
			if _, err := unwrapPad(kek, c[:len(c)-cut]); !errors.Is(err, errUnwrap) {
				t.Fatalf("%d-byte input, %d cut: %v", n, cut, err)
			}
		}
	}
	for _, n := range []int{0, 8, 15, 17, 23} {
		if _, err := unwrapPad(kek, make([]byte, n)); !errors.Is(err, errUnwrap) {
			t.Fatalf("%d-byte ciphertext: %v", n, err)
		}
	}

	// Ciphertexts that decrypt cleanly but break RFC 5649's checks: made
	// with wrapWithIV so that only the check under test fails.
	block, err := aes.NewCipher(kek)
	if err != nil {
		t.Fatal(err)
	}
	iv := func(prefix [4]byte, mli uint32) [8]byte {
		var a [8]byte
		copy(a[:], prefix[:])
		binary.BigEndian.PutUint32(a[4:], mli)
		return a
	}
	rfc3394IV := [4]byte{0xa6, 0xa6, 0xa6, 0xa6}
	padded16 := append(bytes.Repeat([]byte{0x11}, 9), make([]byte, 7)...) // 9 bytes of data, 7 of zeros
	badPad := bytes.Clone(padded16)
	badPad[15] = 1
	for _, tc := range []struct {
		name   string
		aiv    [8]byte
		padded []byte
	}{
		{"RFC 3394 IV", iv(rfc3394IV, 9), padded16},
		{"MLI too large", iv(aivPrefix, 17), padded16},
		{"MLI in the previous block", iv(aivPrefix, 8), padded16},
		{"MLI zero", iv(aivPrefix, 0), padded16},
		{"MLI zero, one block", iv(aivPrefix, 0), make([]byte, 8)},
		{"MLI 9, one block", iv(aivPrefix, 9), make([]byte, 8)},
		{"MLI 2^32-1", iv(aivPrefix, 1<<32-1), padded16},
		{"non-zero padding", iv(aivPrefix, 9), badPad},
		{"non-zero padding, one block", iv(aivPrefix, 7), []byte{1, 2, 3, 4, 5, 6, 7, 8}},
	} {
		c := wrapWithIV(block, tc.aiv, tc.padded)
		if p, err := unwrapPad(kek, c); !errors.Is(err, errUnwrap) {
			t.Errorf("%s: unwrap = %x, %v; want errUnwrap", tc.name, p, err)
		}
	}
	// And the same construction with everything right does unwrap, so the
	// cases above fail for the reason they name.
	for _, tc := range []struct {
		mli    uint32
		padded []byte
	}{{9, padded16}, {16, bytes.Repeat([]byte{1}, 16)}, {8, bytes.Repeat([]byte{1}, 8)}, {1, []byte{1, 0, 0, 0, 0, 0, 0, 0}}} {
		c := wrapWithIV(block, iv(aivPrefix, tc.mli), tc.padded)
		if p, err := unwrapPad(kek, c); err != nil || !bytes.Equal(p, tc.padded[:tc.mli]) {
			t.Errorf("MLI %d: unwrap = %x, %v", tc.mli, p, err)
		}
	}
}
