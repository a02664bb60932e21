package encap

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// TestHeaderLayout pins the byte layout the package documentation draws.
func TestHeaderLayout(t *testing.T) {
	h := Header{Flags: FlagPlaintext, VPC: 0x01020304, Epoch: 0x05060708, Dst: 0x090a0b0c,
		Src: 0x0d0e0f10, Session: 0x1112131415161718, Counter: 0x191a1b1c1d1e1f20}
	b := make([]byte, HeaderLen)
	h.Put(b)
	want := "415a0101" + "01020304" + "05060708" + "090a0b0c" + "0d0e0f10" +
		"1112131415161718" + "191a1b1c1d1e1f20"
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("header\n got %s\nwant %s", got, want)
	}
	got, err := ParseHeader(b)
	if err != nil || got != h {
		t.Fatalf("ParseHeader = %+v, %v; want %+v", got, err, h)
	}
	if !got.Plaintext() {
		t.Fatal("plaintext flag lost")
	}
	if !bytes.Equal(nonce(b), b[24:36]) {
		t.Fatal("nonce is not header bytes 24-35")
	}
}

func TestParseHeaderRejects(t *testing.T) {
	good := make([]byte, HeaderLen+10)
	Header{VPC: 1, Dst: 2}.Put(good)
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"one short", good[:HeaderLen-1], ErrTruncated},
		{"bad magic", mod(func(b []byte) []byte { b[0] = 'B'; return b }), ErrMalformed},
		{"bad magic low", mod(func(b []byte) []byte { b[1] = 0; return b }), ErrMalformed},
		{"version 0", mod(func(b []byte) []byte { b[2] = 0; return b }), ErrVersion},
		{"version 2", mod(func(b []byte) []byte { b[2] = 2; return b }), ErrVersion},
		{"reserved flag", mod(func(b []byte) []byte { b[3] = 0x02; return b }), ErrMalformed},
		{"all flags", mod(func(b []byte) []byte { b[3] = 0xff; return b }), ErrMalformed},
		{"exactly a header", good[:HeaderLen], nil},
		{"header and more", good, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := ParseHeader(c.pkt); !errors.Is(err, c.want) {
				t.Fatalf("ParseHeader: %v, want %v", err, c.want)
			}
		})
	}
}
