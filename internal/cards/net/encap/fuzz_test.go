package encap

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

// rejections are the errors Open may return for a packet.
var rejections = []error{ErrTruncated, ErrMalformed, ErrVersion, ErrPlaintext, ErrEncrypted,
	ErrWrongVPC, ErrWrongDestination, ErrUnknownEpoch, ErrAuth, ErrReplay, ErrTooOld}

func isRejection(err error) bool {
	for _, e := range rejections {
		if err == e {
			return true
		}
	}
	return false
}

// FuzzOpen: arbitrary bytes never panic an encrypting or a plaintext
// Receiver, never authenticate without the key, are refused with one of
// the sentinel errors, and never stop the genuine session from opening its
// next packet or add a session to the cache.
func FuzzOpen(f *testing.F) {
	k, err := NewKeyring(testVPC)
	if err != nil {
		f.Skip(err)
	}
	defer k.Close()
	// A key of this process only: the fuzzing engine runs this set-up in
	// each worker, and a key shared between them would let one worker's
	// genuine seed packets authenticate at another's receiver.
	key := make([]byte, KeySize)
	rand.Read(key)
	if err := k.SetKeys(3, key); err != nil {
		f.Fatal(err)
	}
	if err := k.Accept(4, testKey(4)); err != nil {
		f.Fatal(err)
	}
	r, err := NewReceiver(k, ifaceB, 4)
	if err != nil {
		f.Fatal(err)
	}
	defer r.Close()
	s, err := NewSender(k, ifaceA)
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	pr := NewPlaintextReceiver(testVPC, ifaceB)

	// The seeds look right to every check but the tag: sealed by the
	// genuine session (then opened, so now replays), or under another key
	// with the right VPC, epoch and destination.
	other, err := NewKeyring(testVPC)
	if err != nil {
		f.Fatal(err)
	}
	defer other.Close()
	if err := other.SetKeys(3, testKey(2)); err != nil {
		f.Fatal(err)
	}
	forger, err := NewSender(other, ifaceA)
	if err != nil {
		f.Fatal(err)
	}
	defer forger.Close()
	for i, n := range []int{0, 14, 64, 1500} {
		p, err := s.Seal(nil, ifaceB, frame(n, byte(i)))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(bytes.Clone(p))
		if _, _, err := r.Open(p); err != nil {
			f.Fatal(err)
		}
		q, _ := forger.Seal(nil, ifaceB, frame(n, byte(i)))
		f.Add(q)
		g, _ := s.Seal(nil, ifaceB, frame(n, byte(i)))
		g[len(g)-1] ^= 1 // the genuine session, a fresh counter, a bad tag
		f.Add(g)
		f.Add(g[:HeaderLen+TagLen-1])
	}
	pp, _ := NewPlaintextSender(testVPC, ifaceA).Seal(nil, ifaceB, frame(60, 1))
	f.Add(pp)
	f.Add([]byte{})
	f.Add([]byte("AZ\x01\x00"))

	f.Fuzz(func(t *testing.T, pkt []byte) {
		_, _, err := r.Open(bytes.Clone(pkt))
		if err == nil {
			t.Fatalf("%x authenticated without the key", pkt)
		}
		if !isRejection(err) {
			t.Fatalf("unexpected error %v", err)
		}
		if st := r.Stats(); st.Sessions != 1 || st.Evicted != 0 {
			t.Fatalf("a forged packet changed the cache: %+v", st)
		}
		next, err := s.Seal(nil, ifaceB, frame(64, 7))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.Open(next); err != nil {
			t.Fatalf("the genuine session after %x: %v", pkt, err)
		}

		h, got, err := pr.Open(bytes.Clone(pkt))
		if err == nil {
			if !h.Plaintext() || h.VPC != testVPC || h.Dst != ifaceB || !bytes.Equal(got, pkt[HeaderLen:]) {
				t.Fatalf("plaintext receiver took %x as %+v", pkt, h)
			}
		} else if !isRejection(err) {
			t.Fatalf("plaintext receiver: unexpected error %v", err)
		}
	})
}

// FuzzHeader: ParseHeader never panics, and what it accepts Put writes
// back byte for byte; any header Put writes with known flags parses back
// to itself.
func FuzzHeader(f *testing.F) {
	h := make([]byte, HeaderLen)
	Header{Flags: FlagPlaintext, VPC: 1, Epoch: 2, Dst: 3, Src: 4, Session: 5, Counter: 6}.Put(h)
	f.Add(h, uint8(0), uint32(1), uint32(2), uint32(3), uint32(4), uint64(5), uint64(6))
	f.Add([]byte("AZ\x01"), uint8(2), ^uint32(0), uint32(0), uint32(0), ^uint32(0), ^uint64(0), uint64(0))
	f.Add(append(h, 1, 2, 3), uint8(0x81), uint32(0), uint32(0), uint32(0), uint32(0), uint64(0), uint64(0))

	f.Fuzz(func(t *testing.T, pkt []byte, flags uint8, vpc, epoch, dst, src uint32, session, counter uint64) {
		if got, err := ParseHeader(pkt); err == nil {
			b := make([]byte, HeaderLen)
			got.Put(b)
			if !bytes.Equal(b, pkt[:HeaderLen]) {
				t.Fatalf("parsed %x as %+v, which writes %x", pkt[:HeaderLen], got, b)
			}
		} else if !isRejection(err) {
			t.Fatalf("unexpected error %v", err)
		}

		want := Header{Flags: flags, VPC: vpc, Epoch: epoch, Dst: dst, Src: src, Session: session, Counter: counter}
		b := make([]byte, HeaderLen)
		want.Put(b)
		got, err := ParseHeader(b)
		switch {
		case flags&^flagsKnown != 0:
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("reserved flags %#x: %v", flags, err)
			}
		case err != nil || got != want:
			t.Fatalf("%+v parsed back as %+v, %v", want, got, err)
		}
	})
}

// FuzzRoundTrip: any frame sealed for the receiver's interface opens to
// itself, and the packet with any one byte changed does not open.
func FuzzRoundTrip(f *testing.F) {
	k, err := NewKeyring(testVPC)
	if err != nil {
		f.Skip(err)
	}
	defer k.Close()
	if err := k.SetKeys(1, testKey(9)); err != nil {
		f.Fatal(err)
	}
	s, err := NewSender(k, ifaceA)
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	r, err := NewReceiver(k, ifaceB, 0)
	if err != nil {
		f.Fatal(err)
	}
	defer r.Close()
	f.Add([]byte{}, uint16(0), uint8(1))
	f.Add(frame(64, 1), uint16(40), uint8(0x80))
	f.Add(frame(1500, 2), uint16(1500+HeaderLen+TagLen-1), uint8(0xff))

	f.Fuzz(func(t *testing.T, fr []byte, at uint16, x uint8) {
		if len(fr) > MaxFrame {
			return
		}
		p, err := s.Seal(nil, ifaceB, fr)
		if err != nil {
			t.Fatal(err)
		}
		if x != 0 {
			bad := bytes.Clone(p)
			bad[int(at)%len(bad)] ^= x
			if _, _, err := r.Open(bad); err == nil {
				t.Fatalf("byte %d changed by %#x and still opened", int(at)%len(bad), x)
			} else if !isRejection(err) {
				t.Fatalf("unexpected error %v", err)
			}
		}
		_, got, err := r.Open(p)
		if err != nil || !bytes.Equal(got, fr) {
			t.Fatalf("round trip of %d bytes: %v", len(fr), err)
		}
	})
}
