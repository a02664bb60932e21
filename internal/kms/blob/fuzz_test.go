package blob

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse feeds arbitrary bytes to ParseHeader and Open, with no
// context or a one-pair context. Besides never panicking: every failure
// wraps ErrInvalid; a blob ParseHeader refuses never opens; and a blob
// that opens is exactly what Seal makes again from its header, nonce,
// plaintext and context, so nothing outside the format's fields (extra
// bytes, another encoding of the same context) is ever accepted.
func FuzzParse(f *testing.F) {
	key := testKey(0)
	aead, err := newAEAD(key)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []struct {
		pt   string
		k, v string
		ctx  bool
	}{
		{"", "", "", false},
		{"a data key of thirty-two bytes!!", "purpose", "fuzz", true},
		{"x", "", "", true},
		{"plaintext", "aws:ebs:id", "vol-0123456789abcdef0", true},
	} {
		var ctx map[string]string
		if s.ctx {
			ctx = map[string]string{s.k: s.v}
		}
		b, err := SealAEAD(aead, Header{testKeyID, 3}, []byte(s.pt), ctx)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, s.k, s.v, s.ctx)
		// Near misses: the wrong context, a flipped tag, a short blob.
		f.Add(b, s.k+"x", s.v, !s.ctx)
		c := bytes.Clone(b)
		c[len(c)-1] ^= 1
		f.Add(c, s.k, s.v, s.ctx)
		f.Add(b[:len(b)-1], s.k, s.v, s.ctx)
	}
	f.Add([]byte{}, "", "", false)
	f.Add(bytes.Repeat([]byte{1}, Overhead), "", "", false)

	f.Fuzz(func(t *testing.T, b []byte, k, v string, withCtx bool) {
		var ctx map[string]string
		if withCtx {
			ctx = map[string]string{k: v}
		}
		h, perr := ParseHeader(b)
		if perr != nil && !errors.Is(perr, ErrInvalid) {
			t.Fatalf("ParseHeader error does not wrap ErrInvalid: %v", perr)
		}
		pt, oerr := Open(key, b, ctx)
		if oerr != nil {
			if !errors.Is(oerr, ErrInvalid) {
				t.Fatalf("Open error does not wrap ErrInvalid: %v", oerr)
			}
			return
		}
		if perr != nil {
			t.Fatalf("Open accepted a blob ParseHeader refuses (%v)", perr)
		}
		var nonce [nonceLen]byte
		copy(nonce[:], b[HeaderLen-nonceLen:HeaderLen])
		again, err := seal(aead, h, nonce, pt, ctx)
		if err != nil {
			t.Fatalf("an opened blob does not seal again: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("an opened blob seals to other bytes:\n got %x\nwant %x", again, b)
		}
	})
}
