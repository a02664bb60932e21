package blob

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

const testKeyID = "1234abcd-12ab-34cd-56ef-1234567890ab"

func testKey(seed byte) []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

func mustSeal(t testing.TB, key []byte, h Header, pt []byte, ctx map[string]string) []byte {
	t.Helper()
	b, err := Seal(key, h, pt, ctx)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	key := testKey(0)
	aead, err := newAEAD(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pt   []byte
		ctx  map[string]string
		h    Header
	}{
		{"empty plaintext, nil context", nil, nil, Header{testKeyID, 0}},
		{"one byte", []byte{0x42}, map[string]string{}, Header{testKeyID, 1}},
		{"data key", bytes.Repeat([]byte{7}, 32), map[string]string{"purpose": "test"}, Header{"00000000-0000-0000-0000-000000000000", 1<<32 - 1}},
		{"AWS's largest plaintext", bytes.Repeat([]byte("x"), 4096), map[string]string{"a": "1", "b": "2", "": ""}, Header{"ffffffff-ffff-ffff-ffff-ffffffffffff", 12}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := mustSeal(t, key, tc.h, tc.pt, tc.ctx)
			if len(b) != len(tc.pt)+Overhead {
				t.Fatalf("blob is %d bytes for %d of plaintext, want +%d", len(b), len(tc.pt), Overhead)
			}
			h, err := ParseHeader(b)
			if err != nil || h != tc.h {
				t.Fatalf("ParseHeader = %+v, %v; want %+v", h, err, tc.h)
			}
			for name, open := range map[string]func() ([]byte, error){
				"Open":     func() ([]byte, error) { return Open(key, b, tc.ctx) },
				"OpenAEAD": func() ([]byte, error) { return OpenAEAD(aead, b, tc.ctx) },
			} {
				pt, err := open()
				if err != nil || !bytes.Equal(pt, tc.pt) {
					t.Fatalf("%s = %x, %v; want %x", name, pt, err, tc.pt)
				}
			}
			// SealAEAD makes what Open opens.
			b2, err := SealAEAD(aead, tc.h, tc.pt, tc.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if pt, err := Open(key, b2, tc.ctx); err != nil || !bytes.Equal(pt, tc.pt) {
				t.Fatalf("Open(SealAEAD) = %x, %v", pt, err)
			}
			if bytes.Equal(b[HeaderLen-nonceLen:HeaderLen], b2[HeaderLen-nonceLen:HeaderLen]) {
				t.Fatal("two seals used the same nonce")
			}
		})
	}
}

// TestGolden pins the format: a fixed key, nonce, header, plaintext and
// context must give exactly these bytes, so a change to the layout or to
// the context encoding cannot pass unnoticed (blobs already given to
// users would stop opening).
func TestGolden(t *testing.T) {
	const want = "0101" + // version, kind
		"31323334616263642d313261622d333463642d353665662d313233343536373839306162" + // key id text
		"00000007" + // material version 7
		"a0a1a2a3a4a5a6a7a8a9aaab" + // nonce
		"8762135920eb65d00e01e2bd270aacbf19c22d75eac3" + // ciphertext
		"c9212a629d0dbfdee938ef78df03e505" // tag
	key := testKey(0)
	aead, err := newAEAD(key)
	if err != nil {
		t.Fatal(err)
	}
	var nonce [nonceLen]byte
	for i := range nonce {
		nonce[i] = byte(0xa0 + i)
	}
	ctx := map[string]string{"purpose": "golden", "aws:ebs:id": "vol-1"}
	b, err := seal(aead, Header{testKeyID, 7}, nonce, []byte("azote golden plaintext"), ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("golden blob changed:\n got %s\nwant %s", got, want)
	}
	golden, _ := hex.DecodeString(want)
	if pt, err := Open(key, golden, ctx); err != nil || string(pt) != "azote golden plaintext" {
		t.Fatalf("Open(golden) = %q, %v", pt, err)
	}
}

// TestLayout decrypts a blob with nothing but crypto/aes and cipher.NewGCM
// at the offsets the package comment documents, with the AAD built by
// hand from the documented context encoding: a reader of the format could
// write a decoder from the comment alone.
func TestLayout(t *testing.T) {
	key := testKey(3)
	pt := []byte("layout check")
	ctx := map[string]string{"zeta": "last", "alpha": "first"}
	b := mustSeal(t, key, Header{testKeyID, 0x01020304}, pt, ctx)

	if b[0] != 0x01 || b[1] != 0x01 {
		t.Fatalf("version/kind = %#x %#x", b[0], b[1])
	}
	if string(b[2:38]) != testKeyID {
		t.Fatalf("key id field = %q", b[2:38])
	}
	if v := binary.BigEndian.Uint32(b[38:42]); v != 0x01020304 {
		t.Fatalf("version field = %#x", v)
	}
	aad := append([]byte(nil), b[:54]...)
	aad = append(aad, 0, 2) // two pairs, sorted: alpha, zeta
	aad = append(aad, 0, 5)
	aad = append(aad, "alpha"...)
	aad = append(aad, 0, 5)
	aad = append(aad, "first"...)
	aad = append(aad, 0, 4)
	aad = append(aad, "zeta"...)
	aad = append(aad, 0, 4)
	aad = append(aad, "last"...)

	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	got, err := gcm.Open(nil, b[42:54], b[54:], aad)
	if err != nil {
		t.Fatalf("crypto/cipher cannot open the blob from its documented layout: %v", err)
	}
	if !bytes.Equal(got, pt) {
		t.Fatalf("plaintext %q, want %q", got, pt)
	}
	if len(b) != 54+len(pt)+16 {
		t.Fatalf("length %d, want header+plaintext+tag = %d", len(b), 54+len(pt)+16)
	}
}

// TestEveryBitFlip flips each bit of a blob (header, nonce, ciphertext and
// tag) and expects ErrInvalid every time.
func TestEveryBitFlip(t *testing.T) {
	key := testKey(0)
	ctx := map[string]string{"k": "v"}
	b := mustSeal(t, key, Header{testKeyID, 2}, []byte("sixteen bytes..!+more"), ctx)
	for i := range b {
		for bit := 0; bit < 8; bit++ {
			c := bytes.Clone(b)
			c[i] ^= 1 << bit
			if pt, err := Open(key, c, ctx); !errors.Is(err, ErrInvalid) {
				t.Fatalf("byte %d bit %d flipped: Open = %q, %v; want ErrInvalid", i, bit, pt, err)
			}
		}
	}
}

func TestTruncatedAndExtended(t *testing.T) {
	key := testKey(0)
	b := mustSeal(t, key, Header{testKeyID, 0}, []byte("some plaintext"), nil)
	for n := 0; n < len(b); n++ {
		if _, err := Open(key, b[:n], nil); !errors.Is(err, ErrInvalid) {
			t.Fatalf("truncated to %d bytes: Open error %v, want ErrInvalid", n, err)
		}
		_, err := ParseHeader(b[:n])
		if n < Overhead && !errors.Is(err, ErrInvalid) {
			t.Fatalf("truncated to %d bytes: ParseHeader error %v, want ErrInvalid", n, err)
		}
	}
	for _, tail := range [][]byte{{0}, make([]byte, 16), []byte("x")} {
		if _, err := Open(key, append(bytes.Clone(b), tail...), nil); !errors.Is(err, ErrInvalid) {
			t.Fatalf("%d bytes appended: Open error %v, want ErrInvalid", len(tail), err)
		}
	}
}

func TestWrongKey(t *testing.T) {
	b := mustSeal(t, testKey(0), Header{testKeyID, 0}, []byte("secret"), nil)
	if _, err := Open(testKey(1), b, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Open under another key: %v, want ErrInvalid", err)
	}
	// A key of the wrong size is the caller's bug, not a bad blob: it must
	// not be reported as InvalidCiphertext.
	for _, n := range []int{0, 16, 24, 31, 33} {
		if _, err := Open(make([]byte, n), b, nil); err == nil || errors.Is(err, ErrInvalid) {
			t.Fatalf("Open with a %d-byte key: %v, want a non-ErrInvalid error", n, err)
		}
		if _, err := Seal(make([]byte, n), Header{testKeyID, 0}, nil, nil); err == nil {
			t.Fatalf("Seal with a %d-byte key succeeded", n)
		}
	}
}

func TestContext(t *testing.T) {
	key := testKey(0)
	ctx := map[string]string{"department": "10", "purpose": "test"}
	b := mustSeal(t, key, Header{testKeyID, 0}, []byte("pt"), ctx)
	for _, tc := range []struct {
		name string
		ctx  map[string]string
	}{
		{"nil", nil},
		{"missing pair", map[string]string{"department": "10"}},
		{"extra pair", map[string]string{"department": "10", "purpose": "test", "x": ""}},
		{"changed value", map[string]string{"department": "11", "purpose": "test"}},
		{"changed key", map[string]string{"Department": "10", "purpose": "test"}},
		{"value moved into key", map[string]string{"department1": "0", "purpose": "test"}},
		{"swapped values", map[string]string{"department": "test", "purpose": "10"}},
	} {
		if _, err := Open(key, b, tc.ctx); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Open error %v, want ErrInvalid", tc.name, err)
		}
	}
	// Built in another order, the same pairs are the same context.
	same := map[string]string{}
	same["purpose"] = "test"
	same["department"] = "10"
	if pt, err := Open(key, b, same); err != nil || string(pt) != "pt" {
		t.Fatalf("same pairs, other insertion order: %q, %v", pt, err)
	}
	// nil and empty are both "no context", as in AWS.
	b = mustSeal(t, key, Header{testKeyID, 0}, []byte("pt"), nil)
	if _, err := Open(key, b, map[string]string{}); err != nil {
		t.Fatalf("sealed with nil, opened with empty: %v", err)
	}
}

func TestEncodeContext(t *testing.T) {
	for _, tc := range []struct {
		ctx  map[string]string
		want string // hex
	}{
		{nil, "0000"},
		{map[string]string{}, "0000"},
		{map[string]string{"": ""}, "0001" + "0000" + "0000"},
		{map[string]string{"a": "bc"}, "0001" + "0001" + "61" + "0002" + "6263"},
		{map[string]string{"ab": "c"}, "0001" + "0002" + "6162" + "0001" + "63"},
		// Bytewise order: "B" (0x42) < "a" (0x61) < "é" (0xc3 0xa9).
		{map[string]string{"é": "1", "a": "2", "B": "3"}, "0003" + "0001" + "42" + "0001" + "33" + "0001" + "61" + "0001" + "32" + "0002" + "c3a9" + "0001" + "31"},
	} {
		if got := hex.EncodeToString(EncodeContext(tc.ctx)); got != tc.want {
			t.Errorf("EncodeContext(%q) = %s, want %s", tc.ctx, got, tc.want)
		}
	}

	long := strings.Repeat("v", maxField)
	if got := EncodeContext(map[string]string{"k": long}); len(got) != 2+2+1+2+maxField {
		t.Fatalf("a %d-byte value encodes to %d bytes", maxField, len(got))
	}
	for name, ctx := range map[string]map[string]string{
		"value over 65535 bytes": {"k": long + "v"},
		"key over 65535 bytes":   {long + "k": "v"},
		"more than 65535 pairs":  manyPairs(maxField + 1),
	} {
		if got := EncodeContext(ctx); got != nil {
			t.Errorf("%s: EncodeContext gave %d bytes, want nil", name, len(got))
		}
		if _, err := Seal(testKey(0), Header{testKeyID, 0}, nil, ctx); err == nil {
			t.Errorf("%s: Seal accepted it", name)
		}
		b := mustSeal(t, testKey(0), Header{testKeyID, 0}, nil, nil)
		if _, err := Open(testKey(0), b, ctx); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Open error %v, want ErrInvalid", name, err)
		}
	}
}

func manyPairs(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[string(binary.BigEndian.AppendUint32(nil, uint32(i)))] = ""
	}
	return m
}

func TestParseHeader(t *testing.T) {
	good := mustSeal(t, testKey(0), Header{testKeyID, 9}, nil, nil)
	if h, err := ParseHeader(good); err != nil || h != (Header{testKeyID, 9}) {
		t.Fatalf("ParseHeader(good) = %+v, %v", h, err)
	}
	edit := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	setID := func(id string) []byte { return edit(func(b []byte) { copy(b[2:38], id) }) }
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"nil", nil},
		{"header only", good[:HeaderLen]},
		{"one byte short", good[:Overhead-1]},
		{"version 0", edit(func(b []byte) { b[0] = 0 })},
		{"version 2", edit(func(b []byte) { b[0] = 2 })},
		{"kind 0", edit(func(b []byte) { b[1] = 0 })},
		{"kind 2", edit(func(b []byte) { b[1] = 2 })},
		{"upper-case key id", setID(strings.ToUpper(testKeyID))},
		{"key id without dashes", setID("1234abcd012ab034cd056ef01234567890ab")},
		{"dash moved", setID("1234abc-d12ab-34cd-56ef-1234567890ab")},
		{"non-hex digit", setID("1234abcd-12ab-34cd-56eg-1234567890ab")},
		{"NUL in key id", setID("1234abcd-12ab-34cd-56ef-1234567890a\x00")},
		{"alias text", setID("alias/my-key-name-is-thirty-six-char")},
	} {
		if h, err := ParseHeader(tc.b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: ParseHeader = %+v, %v; want ErrInvalid", tc.name, h, err)
		}
	}
}

func TestSealRefuses(t *testing.T) {
	key := testKey(0)
	for _, id := range []string{"", "alias/x", strings.ToUpper(testKeyID), testKeyID + "0", testKeyID[:35]} {
		if _, err := Seal(key, Header{KeyID: id}, nil, nil); err == nil {
			t.Errorf("Seal with key id %q succeeded", id)
		}
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	odd, err := cipher.NewGCMWithNonceSize(block, 16)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SealAEAD(odd, Header{testKeyID, 0}, nil, nil); err == nil {
		t.Error("SealAEAD with a 16-byte-nonce GCM succeeded")
	}
	b := mustSeal(t, key, Header{testKeyID, 0}, nil, nil)
	if _, err := OpenAEAD(odd, b, nil); err == nil || errors.Is(err, ErrInvalid) {
		t.Errorf("OpenAEAD with a 16-byte-nonce GCM: %v, want a non-ErrInvalid error", err)
	}
}

func TestOpenDoesNotModifyInput(t *testing.T) {
	key := testKey(0)
	b := mustSeal(t, key, Header{testKeyID, 0}, []byte("pt"), map[string]string{"a": "b"})
	// Spare capacity after the blob must not receive the AAD.
	big := make([]byte, len(b), len(b)+64)
	copy(big, b)
	want := bytes.Clone(big[:cap(big)])
	if _, err := Open(key, big, map[string]string{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(big[:cap(big)], want) {
		t.Fatal("Open wrote into the caller's blob buffer")
	}
}

func BenchmarkSealAEAD(b *testing.B) {
	aead, err := newAEAD(testKey(0))
	if err != nil {
		b.Fatal(err)
	}
	pt := make([]byte, 32)
	ctx := map[string]string{"purpose": "bench"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SealAEAD(aead, Header{testKeyID, 0}, pt, ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenAEAD(b *testing.B) {
	aead, err := newAEAD(testKey(0))
	if err != nil {
		b.Fatal(err)
	}
	ctx := map[string]string{"purpose": "bench"}
	blob, err := SealAEAD(aead, Header{testKeyID, 0}, make([]byte, 32), ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := OpenAEAD(aead, blob, ctx); err != nil {
			b.Fatal(err)
		}
	}
}
