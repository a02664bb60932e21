package encap

import (
	"bytes"
	"testing"
)

const (
	testVPC = 7
	ifaceA  = 101
	ifaceB  = 202
)

// testKey is a VPC key made from a byte.
func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

// newRing returns a keyring of testVPC with epoch e under testKey(kb).
func newRing(t testing.TB, e uint32, kb byte) *Keyring {
	t.Helper()
	k, err := NewKeyring(testVPC)
	if err != nil {
		t.Skipf("no encryption on this host: %v", err)
	}
	t.Cleanup(k.Close)
	if err := k.SetKeys(e, testKey(kb)); err != nil {
		t.Fatal(err)
	}
	return k
}

func newSender(t testing.TB, k *Keyring, src uint32) *Sender {
	t.Helper()
	s, err := NewSender(k, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newReceiver(t testing.TB, k *Keyring, dst uint32, sessions int) *Receiver {
	t.Helper()
	r, err := NewReceiver(k, dst, sessions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// frame is a recognisable frame of n bytes.
func frame(n int, seed byte) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = seed + byte(i*7)
	}
	return f
}

// seal seals f for dst and fails the test on error.
func seal(t testing.TB, s *Sender, dst uint32, f []byte) []byte {
	t.Helper()
	p, err := s.Seal(nil, dst, f)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sealN seals n packets and returns them in order.
func sealN(t testing.TB, s *Sender, dst uint32, n int) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	for i := range out {
		out[i] = seal(t, s, dst, frame(60, byte(i)))
	}
	return out
}

// open opens a copy of p (Open decrypts in place).
func open(r *Receiver, p []byte) (Header, []byte, error) {
	return r.Open(bytes.Clone(p))
}
