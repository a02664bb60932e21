package encap

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"testing"
)

// TestHMACMatchesStdlib holds the locked-memory HMAC to crypto/hmac for
// keys and messages of every length the KDF uses and around them.
func TestHMACMatchesStdlib(t *testing.T) {
	scratch := make([]byte, hmacScratch)
	for _, kl := range []int{0, 1, 19, 31, 32, 33, 63, 64} {
		for _, ml := range []int{0, 1, 32, 47, infoLen + 1} {
			key, msg := frame(kl, 3), frame(ml, 9)
			var got [sha256.Size]byte
			hmacSHA256(&got, key, msg, scratch)
			m := hmac.New(sha256.New, key)
			m.Write(msg)
			if want := m.Sum(nil); !bytes.Equal(got[:], want) {
				t.Fatalf("key %d msg %d: %x, want %x", kl, ml, got, want)
			}
			if !bytes.Equal(scratch, make([]byte, len(scratch))) {
				t.Fatal("scratch not wiped")
			}
		}
	}
}

// TestKDFMatchesHKDF holds extract and expand to crypto/hkdf, as the
// package documentation states the schedule.
func TestKDFMatchesHKDF(t *testing.T) {
	scratch := make([]byte, hmacScratch)
	ikm := testKey(0x42)
	var prk [sha256.Size]byte
	extract(&prk, ikm, scratch)
	wantPRK, err := hkdf.Extract(sha256.New, ikm, []byte(kdfSalt))
	if err != nil || !bytes.Equal(prk[:], wantPRK) {
		t.Fatalf("PRK %x, want %x (%v)", prk, wantPRK, err)
	}
	info := sessionInfo(make([]byte, infoLen+1), 0xa1a2a3a4, 0xb1b2b3b4, 0xc1c2c3c4, 0xd1d2d3d4d5d6d7d8)
	var key [sha256.Size]byte
	expand(&key, prk[:], info, scratch)
	want, err := hkdf.Key(sha256.New, ikm, []byte(kdfSalt), string(specInfo(0xa1a2a3a4, 0xb1b2b3b4, 0xc1c2c3c4, 0xd1d2d3d4d5d6d7d8)), 32)
	if err != nil || !bytes.Equal(key[:], want) {
		t.Fatalf("session key %x, want %x (%v)", key, want, err)
	}
}

// specInfo builds the HKDF info as the package documentation writes it.
func specInfo(vpc, epoch, src uint32, session uint64) []byte {
	b := []byte("azote encap v1 session key")
	b = binary.BigEndian.AppendUint32(b, vpc)
	b = binary.BigEndian.AppendUint32(b, epoch)
	b = binary.BigEndian.AppendUint32(b, src)
	return binary.BigEndian.AppendUint64(b, session)
}

// specSeal seals a frame by the documented format with nothing but the
// standard library: the independent reading of the package documentation.
func specSeal(t *testing.T, vpcKey []byte, h Header, f []byte) []byte {
	t.Helper()
	key, err := hkdf.Key(sha256.New, vpcKey, []byte("azote encap v1 salt"), string(specInfo(h.VPC, h.Epoch, h.Src, h.Session)), 32)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	hdr := []byte{0x41, 0x5a, 1, h.Flags}
	hdr = binary.BigEndian.AppendUint32(hdr, h.VPC)
	hdr = binary.BigEndian.AppendUint32(hdr, h.Epoch)
	hdr = binary.BigEndian.AppendUint32(hdr, h.Dst)
	hdr = binary.BigEndian.AppendUint32(hdr, h.Src)
	hdr = binary.BigEndian.AppendUint64(hdr, h.Session)
	hdr = binary.BigEndian.AppendUint64(hdr, h.Counter)
	nonce := hdr[24:36]
	return g.Seal(bytes.Clone(hdr), nonce, f, hdr)
}

// TestSealMatchesSpec: what Seal writes is what the documented format,
// built from the standard library alone, says; and a Receiver opens the
// independently built packet.
func TestSealMatchesSpec(t *testing.T) {
	k := newRing(t, 3, 0x5a)
	s := newSender(t, k, ifaceA)
	s.random = func() uint64 { return 0x0123456789abcdef }
	r := newReceiver(t, k, ifaceB, 0)
	for i, n := range []int{0, 14, 64, 1500} {
		f := frame(n, byte(i))
		got := seal(t, s, ifaceB, f)
		h := Header{VPC: testVPC, Epoch: 3, Dst: ifaceB, Src: ifaceA, Session: 0x0123456789abcdef, Counter: uint64(i + 1)}
		want := specSeal(t, testKey(0x5a), h, f)
		if !bytes.Equal(got, want) {
			t.Fatalf("frame of %d: Seal\n%x\nspec\n%x", n, got, want)
		}
		gh, gf, err := r.Open(want)
		if err != nil || gh != h || !bytes.Equal(gf, f) {
			t.Fatalf("frame of %d: Open(spec) = %+v, %d bytes, %v", n, gh, len(gf), err)
		}
	}
}
