package encap

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"reflect"
	"testing"
)

// fakeAEAD holds a pointer, so its state must never be placed.
type fakeAEAD struct{ Buf []byte }

func (*fakeAEAD) NonceSize() int                                   { return 12 }
func (*fakeAEAD) Overhead() int                                    { return 16 }
func (*fakeAEAD) Seal(dst, nonce, plaintext, data []byte) []byte   { return dst }
func (*fakeAEAD) Open(dst, nonce, ct, data []byte) ([]byte, error) { return dst, nil }

func TestPointerFree(t *testing.T) {
	type inner struct {
		A [4]uint32
		B bool
	}
	cases := []struct {
		v    any
		want bool
	}{
		{uint64(0), true},
		{[3]inner{}, true},
		{struct {
			X inner
			Y [0]*int
		}{}, true},
		{struct{ P *int }{}, false},
		{struct{ S []byte }{}, false},
		{struct{ S string }{}, false},
		{struct{ M map[int]int }{}, false},
		{struct{ I any }{}, false},
		{[2]struct{ F func() }{}, false},
	}
	for _, c := range cases {
		if got := pointerFree(reflect.TypeOf(c.v)); got != c.want {
			t.Errorf("pointerFree(%T) = %v, want %v", c.v, got, c.want)
		}
	}
}

// TestPlace: the standard library's AES-GCM moves into a slot and works
// the same from there, its heap original wiped; a state holding pointers,
// a short slot or a misaligned one is refused.
func TestPlace(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	size, _ := gcmState()
	key := testKey(7)
	block, _ := aes.NewCipher(key)
	ref, _ := cipher.NewGCM(block)
	g, _ := cipher.NewGCM(block)
	mem := make([]byte, 2*size+slotAlign)
	slot := mem[:size]
	placed, err := place(g, slot)
	if err != nil {
		t.Fatal(err)
	}
	orig := unsafeBytes(g)
	if !bytes.Equal(orig, make([]byte, len(orig))) {
		t.Fatal("the heap original was not wiped")
	}
	nonce, aad, msg := make([]byte, 12), []byte("aad"), frame(100, 1)
	if !bytes.Equal(placed.Seal(nil, nonce, msg, aad), ref.Seal(nil, nonce, msg, aad)) {
		t.Fatal("the placed AEAD seals differently")
	}
	if _, err := place(&fakeAEAD{}, mem[size:]); !errors.Is(err, ErrNoHardwareAES) {
		t.Fatalf("a state with pointers: %v", err)
	}
	g2, _ := cipher.NewGCM(block)
	if _, err := place(g2, mem[:100]); err == nil {
		t.Fatal("a short slot was accepted")
	}
	if _, err := place(g2, mem[1:size+1]); err == nil {
		t.Fatal("a misaligned slot was accepted")
	}
	if err := wipe(block); err != nil {
		t.Fatal(err)
	}
	if b := unsafeBytes(block); !bytes.Equal(b, make([]byte, len(b))) {
		t.Fatal("wipe left the block's round keys")
	}
}
