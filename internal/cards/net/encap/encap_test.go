package encap

import (
	"bytes"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

func TestRoundTrip(t *testing.T) {
	k := newRing(t, 1, 1)
	s := newSender(t, k, ifaceA)
	r := newReceiver(t, k, ifaceB, 0)
	ps := NewPlaintextSender(testVPC, ifaceA)
	pr := NewPlaintextReceiver(testVPC, ifaceB)
	for i, n := range []int{0, 1, 14, 60, 64, 1500, 9000, MaxFrame} {
		f := frame(n, byte(i))
		for _, c := range []struct {
			name string
			s    *Sender
			r    *Receiver
			over int
		}{{"encrypted", s, r, Overhead}, {"plaintext", ps, pr, HeaderLen}} {
			p := seal(t, c.s, ifaceB, f)
			if len(p) != n+c.over {
				t.Fatalf("%s %d: packet of %d bytes, want %d", c.name, n, len(p), n+c.over)
			}
			if c.name == "encrypted" && n >= 16 && bytes.Contains(p, f[:16]) {
				t.Fatalf("%s %d: plaintext visible in the packet", c.name, n)
			}
			h, got, err := c.r.Open(p)
			if err != nil {
				t.Fatalf("%s %d: Open: %v", c.name, n, err)
			}
			if !bytes.Equal(got, f) {
				t.Fatalf("%s %d: frame differs", c.name, n)
			}
			if h.VPC != testVPC || h.Src != ifaceA || h.Dst != ifaceB || h.Plaintext() != (c.name == "plaintext") {
				t.Fatalf("%s %d: header %+v", c.name, n, h)
			}
			if c.name == "encrypted" && (h.Epoch != 1 || h.Counter != uint64(i+1)) {
				t.Fatalf("%s %d: header %+v", c.name, n, h)
			}
		}
	}
}

// TestSealAppendsAndInPlace: Seal appends after dst's bytes, seals in place
// without allocating when the frame is already at buf[HeaderLen:], and
// refuses an inexact overlap.
func TestSealAppendsAndInPlace(t *testing.T) {
	k := newRing(t, 1, 1)
	s := newSender(t, k, ifaceA)
	r := newReceiver(t, k, ifaceB, 0)
	f := frame(100, 5)

	p, err := s.Seal([]byte("prefix"), ifaceB, f)
	if err != nil || string(p[:6]) != "prefix" {
		t.Fatalf("Seal with a prefix: %q…, %v", p[:6], err)
	}
	if _, got, err := r.Open(p[6:]); err != nil || !bytes.Equal(got, f) {
		t.Fatalf("Open after a prefix: %v", err)
	}

	buf := make([]byte, HeaderLen+len(f)+TagLen)
	copy(buf[HeaderLen:], f)
	p, err = s.Seal(buf[:0], ifaceB, buf[HeaderLen:HeaderLen+len(f)])
	if err != nil || &p[0] != &buf[0] {
		t.Fatalf("in place: %v (same buffer: %v)", err, err == nil && &p[0] == &buf[0])
	}
	if _, got, err := r.Open(p); err != nil || !bytes.Equal(got, f) {
		t.Fatalf("Open in place: %v", err)
	}

	for _, c := range []struct{ off, n int }{
		{0, len(f)}, {1, len(f)}, {HeaderLen - 1, len(f)}, {HeaderLen + 1, len(f)},
		{0, 10}, {20, 16}, // inside the header only
		{HeaderLen + TagLen, 1}, // the tag's last byte
	} {
		buf := make([]byte, 2*len(f)+Overhead)
		if _, err := s.Seal(buf[:0], ifaceB, buf[c.off:c.off+c.n]); !errors.Is(err, ErrOverlap) {
			t.Fatalf("frame of %d at %d: %v, want ErrOverlap", c.n, c.off, err)
		}
	}
	// Right after the packet is not an overlap.
	buf = make([]byte, 2*len(f)+Overhead)
	copy(buf[HeaderLen+len(f)+TagLen:], f)
	p, err = s.Seal(buf[:0], ifaceB, buf[HeaderLen+len(f)+TagLen:])
	if _, got, err2 := r.Open(p); err != nil || err2 != nil || !bytes.Equal(got, f) {
		t.Fatalf("frame right after the output: %v, %v", err, err2)
	}
	// Plaintext moves any overlapping frame correctly.
	ps, pr := NewPlaintextSender(testVPC, ifaceA), NewPlaintextReceiver(testVPC, ifaceB)
	for _, off := range []int{0, 1, HeaderLen, HeaderLen + 3} {
		buf := make([]byte, 2*len(f)+Overhead)
		copy(buf[off:], f)
		p, err := ps.Seal(buf[:0], ifaceB, buf[off:off+len(f)])
		if err != nil {
			t.Fatal(err)
		}
		if _, got, err := pr.Open(p); err != nil || !bytes.Equal(got, f) {
			t.Fatalf("plaintext frame at %d: %v", off, err)
		}
	}
	if _, err := s.Seal(nil, ifaceB, make([]byte, MaxFrame+1)); !errors.Is(err, ErrFrameSize) {
		t.Fatalf("oversized frame: %v", err)
	}
}

// TestOpenRejects: every reason a packet is refused, each with its own
// error; after each, the receiver still opens the genuine packet.
func TestOpenRejects(t *testing.T) {
	k := newRing(t, 3, 1)
	s := newSender(t, k, ifaceA)
	f := frame(80, 1)

	other, err := NewKeyring(testVPC + 1) // another VPC, the same key bytes
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.SetKeys(3, testKey(1)); err != nil {
		t.Fatal(err)
	}
	otherVPC := newSender(t, other, ifaceA)
	later := newRing(t, 4, 1) // an epoch the receiver has not got
	laterS := newSender(t, later, ifaceA)
	wrongKey := newRing(t, 3, 2) // the right epoch number, another key
	wrongKeyS := newSender(t, wrongKey, ifaceA)

	flip := func(p []byte, i int) []byte { p = bytes.Clone(p); p[i] ^= 0x01; return p }
	setVPC := func(p []byte) []byte { p = bytes.Clone(p); p[7] = testVPC; return p }

	cases := []struct {
		name string
		pkt  func() []byte
		want error
	}{
		{"empty", func() []byte { return nil }, ErrTruncated},
		{"half a header", func() []byte { return seal(t, s, ifaceB, f)[:20] }, ErrTruncated},
		{"header without tag", func() []byte { return seal(t, s, ifaceB, nil)[:HeaderLen+TagLen-1] }, ErrTruncated},
		{"bad magic", func() []byte { return flip(seal(t, s, ifaceB, f), 0) }, ErrMalformed},
		{"reserved flag", func() []byte { return flip(seal(t, s, ifaceB, f), 3)[:0:0] }, ErrTruncated},
		{"version", func() []byte { return flip(seal(t, s, ifaceB, f), 2) }, ErrVersion},
		{"plaintext", func() []byte { return seal(t, NewPlaintextSender(testVPC, ifaceA), ifaceB, f) }, ErrPlaintext},
		{"plaintext flag on an encrypted packet", func() []byte { return flip(seal(t, s, ifaceB, f), 3) }, ErrPlaintext},
		{"wrong VPC", func() []byte { return seal(t, otherVPC, ifaceB, f) }, ErrWrongVPC},
		{"another VPC's packet relabelled", func() []byte { return setVPC(seal(t, otherVPC, ifaceB, f)) }, ErrAuth},
		{"wrong destination", func() []byte { return seal(t, s, ifaceA, f) }, ErrWrongDestination},
		{"redirected to this destination", func() []byte {
			p := seal(t, s, ifaceB+1, f)
			p[15]--
			return p
		}, ErrAuth},
		{"unknown epoch", func() []byte { return seal(t, laterS, ifaceB, f) }, ErrUnknownEpoch},
		{"another key under the epoch", func() []byte { return seal(t, wrongKeyS, ifaceB, f) }, ErrAuth},
		{"frame bit flipped", func() []byte { return flip(seal(t, s, ifaceB, f), HeaderLen+5) }, ErrAuth},
		{"tag bit flipped", func() []byte { p := seal(t, s, ifaceB, f); return flip(p, len(p)-1) }, ErrAuth},
		{"source changed", func() []byte { return flip(seal(t, s, ifaceB, f), 19) }, ErrAuth},
		{"session changed", func() []byte { return flip(seal(t, s, ifaceB, f), 27) }, ErrAuth},
		{"counter changed", func() []byte { return flip(seal(t, s, ifaceB, f), 35) }, ErrAuth},
		{"counter zero", func() []byte { p := seal(t, s, ifaceB, f); clear(p[28:36]); return p }, ErrMalformed},
		{"counter beyond a session", func() []byte { p := seal(t, s, ifaceB, f); p[29] = 1; return p }, ErrMalformed},
		{"epoch changed", func() []byte { return flip(seal(t, s, ifaceB, f), 11) }, ErrUnknownEpoch},
		{"frame cut short", func() []byte { p := seal(t, s, ifaceB, f); return p[:len(p)-1] }, ErrAuth},
		{"frame extended", func() []byte { return append(seal(t, s, ifaceB, f), 0) }, ErrAuth},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newReceiver(t, k, ifaceB, 0)
			// A genuine packet first, so the session is cached and its
			// window in use; the bad one; then the next genuine one.
			if _, _, err := r.Open(seal(t, s, ifaceB, f)); err != nil {
				t.Fatal(err)
			}
			pkt := c.pkt()
			if _, _, err := r.Open(pkt); err != c.want {
				t.Fatalf("Open: %v, want %v", err, c.want)
			}
			if _, got, err := r.Open(seal(t, s, ifaceB, f)); err != nil || !bytes.Equal(got, f) {
				t.Fatalf("genuine packet after the bad one: %v", err)
			}
		})
	}
	t.Run("encrypted at a plaintext receiver", func(t *testing.T) {
		pr := NewPlaintextReceiver(testVPC, ifaceB)
		if _, _, err := pr.Open(seal(t, s, ifaceB, f)); err != ErrEncrypted {
			t.Fatalf("%v, want ErrEncrypted", err)
		}
		ps := NewPlaintextSender(testVPC, ifaceA)
		if _, _, err := pr.Open(seal(t, ps, ifaceA, f)); err != ErrWrongDestination {
			t.Fatalf("%v, want ErrWrongDestination", err)
		}
		if _, _, err := NewPlaintextReceiver(testVPC+1, ifaceB).Open(seal(t, ps, ifaceB, f)); err != ErrWrongVPC {
			t.Fatalf("%v, want ErrWrongVPC", err)
		}
	})
}

// TestReplay: a packet opens once; reordering within the window opens
// each packet once; a packet WindowSize behind the newest is too old.
func TestReplay(t *testing.T) {
	k := newRing(t, 1, 1)
	s := newSender(t, k, ifaceA)
	r := newReceiver(t, k, ifaceB, 0)
	ps := sealN(t, s, ifaceB, WindowSize+2)
	mustOpen := func(i int, want error) {
		t.Helper()
		if _, _, err := open(r, ps[i]); err != want {
			t.Fatalf("packet %d (counter %d): %v, want %v", i, i+1, err, want)
		}
	}
	mustOpen(5, nil)
	mustOpen(5, ErrReplay)
	mustOpen(2, nil) // reordered
	mustOpen(0, nil)
	mustOpen(2, ErrReplay)
	mustOpen(WindowSize, nil)   // counter WindowSize+1
	mustOpen(0, ErrTooOld)      // counter 1: exactly WindowSize behind
	mustOpen(1, nil)            // counter 2: the oldest still judged, unseen
	mustOpen(1, ErrReplay)      // … and now seen
	mustOpen(WindowSize+1, nil) // counter WindowSize+2
	mustOpen(3, nil)            // counter 4: WindowSize-2 behind, unseen
	mustOpen(2, ErrReplay)      // counter 3: WindowSize-1 behind, seen
	mustOpen(1, ErrTooOld)      // counter 2: now WindowSize behind
}

// TestForgedChangesNothing: a forged packet of a cached session, however
// far ahead its counter, moves no window; the genuine packets after it,
// including one with the forged packet's counter, open.
func TestForgedChangesNothing(t *testing.T) {
	k := newRing(t, 1, 1)
	s := newSender(t, k, ifaceA)
	r := newReceiver(t, k, ifaceB, 0)
	ps := sealN(t, s, ifaceB, 4)
	if _, _, err := open(r, ps[0]); err != nil {
		t.Fatal(err)
	}
	far := bytes.Clone(ps[1])
	far[31] = 0xff // counter near 2^40: would push every genuine packet out of the window
	if _, _, err := r.Open(far); err != ErrAuth {
		t.Fatalf("forged far counter: %v", err)
	}
	tampered := bytes.Clone(ps[1])
	tampered[HeaderLen] ^= 1
	if _, _, err := r.Open(tampered); err != ErrAuth {
		t.Fatalf("tampered packet: %v", err)
	}
	for i := 1; i < 4; i++ {
		if _, _, err := open(r, ps[i]); err != nil {
			t.Fatalf("genuine packet %d after forgeries: %v", i, err)
		}
	}
}

// TestForgedSessionsDoNotEvict: a flood of packets with random session
// ids against a full cache evicts nothing; the genuine sessions keep
// opening without being derived again.
func TestForgedSessionsDoNotEvict(t *testing.T) {
	k := newRing(t, 1, 1)
	r := newReceiver(t, k, ifaceB, 4)
	var senders []*Sender
	for i := range 4 {
		s := newSender(t, k, ifaceA+uint32(i))
		senders = append(senders, s)
		if _, _, err := r.Open(seal(t, s, ifaceB, frame(60, 1))); err != nil {
			t.Fatal(err)
		}
	}
	before := r.Stats()
	if before.Sessions != 4 || before.Evicted != 0 {
		t.Fatalf("stats %+v", before)
	}
	template := seal(t, senders[0], ifaceB, frame(60, 2))
	for i := range 1000 {
		p := bytes.Clone(template)
		p[20], p[21], p[22] = byte(i), byte(i>>8), 0xee // a new session id each time
		if _, _, err := r.Open(p); err != ErrAuth {
			t.Fatalf("forged session %d: %v", i, err)
		}
	}
	mid := r.Stats()
	if mid.Sessions != 4 || mid.Evicted != 0 || mid.Derived != before.Derived+1000 {
		t.Fatalf("after the flood: %+v (before %+v)", mid, before)
	}
	for i, s := range senders {
		if _, _, err := r.Open(seal(t, s, ifaceB, frame(60, 3))); err != nil {
			t.Fatalf("sender %d after the flood: %v", i, err)
		}
	}
	if after := r.Stats(); after.Derived != mid.Derived || after.Evicted != 0 {
		t.Fatalf("genuine sessions were derived again or evicted: %+v", after)
	}
	unusedWiped(t, r)
}

// TestEvictedSessionRemembersItsCounter: a session evicted from a full
// cache comes back without its old packets opening again.
func TestEvictedSessionRemembersItsCounter(t *testing.T) {
	k := newRing(t, 1, 1)
	r := newReceiver(t, k, ifaceB, 2)
	s1, s2, s3 := newSender(t, k, 1), newSender(t, k, 2), newSender(t, k, 3)
	old := sealN(t, s1, ifaceB, 3)
	for _, p := range old[:2] {
		if _, _, err := open(r, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*Sender{s2, s3} { // s1 is least recently used: evicted
		if _, _, err := r.Open(seal(t, s, ifaceB, frame(60, 0))); err != nil {
			t.Fatal(err)
		}
	}
	if st := r.Stats(); st.Evicted != 1 || st.Sessions != 2 {
		t.Fatalf("stats %+v", st)
	}
	unusedWiped(t, r)
	derived := r.Stats().Derived
	if _, _, err := open(r, old[0]); err != ErrReplay {
		t.Fatalf("replay of an evicted session: %v", err)
	}
	if _, _, err := open(r, old[1]); err != ErrReplay {
		t.Fatalf("replay of an evicted session: %v", err)
	}
	if r.Stats().Derived != derived {
		t.Fatal("a replay of an evicted session cost a derivation")
	}
	// Its packets after the eviction open; the one sealed before but
	// never opened is behind the remembered counter, so it is lost.
	if _, _, err := open(r, old[2]); err != nil {
		t.Fatalf("next packet of the evicted session: %v", err)
	}
	if _, _, err := r.Open(seal(t, s1, ifaceB, frame(60, 0))); err != nil {
		t.Fatalf("the evicted session again: %v", err)
	}
}

// TestTombstonesBounded: tombstones are bounded, and forgetting one is
// counted.
func TestTombstonesBounded(t *testing.T) {
	k := newRing(t, 1, 1)
	r := newReceiver(t, k, ifaceB, 1)
	n := tombsPerSession + 5
	for i := range n + 1 {
		s := newSender(t, k, uint32(1000+i))
		if _, _, err := r.Open(seal(t, s, ifaceB, frame(60, 0))); err != nil {
			t.Fatal(err)
		}
	}
	st := r.Stats()
	if st.Evicted != uint64(n) || st.TombstonesLost != 5 || len(r.tombs.top) != tombsPerSession {
		t.Fatalf("stats %+v, %d tombstones", st, len(r.tombs.top))
	}
}

// TestRotation follows a lossless rotation between two cards, each with
// its own keyring, and then a second one that drops the first epoch.
func TestRotation(t *testing.T) {
	ringA, ringB := newRing(t, 1, 1), newRing(t, 1, 1)
	a := newSender(t, ringA, ifaceA)
	b := newReceiver(t, ringB, ifaceB, 0)
	f := frame(70, 0)
	opens := func(p []byte, want error) {
		t.Helper()
		if _, _, err := open(b, p); err != want {
			t.Fatalf("epoch %d packet: %v, want %v", p[11], err, want)
		}
	}
	e1 := seal(t, a, ifaceB, f)
	opens(e1, nil)
	s1 := e1[20:28]

	// Step 1: B accepts epoch 2; A still seals with 1.
	if err := ringB.Accept(2, testKey(2)); err != nil {
		t.Fatal(err)
	}
	opens(seal(t, a, ifaceB, f), nil)
	// Step 2: A moves to 2 (B has it as next) with a new session.
	if err := ringA.Accept(2, testKey(2)); err != nil {
		t.Fatal(err)
	}
	inFlight := seal(t, a, ifaceB, f) // sealed under 1, opened after B moved
	if err := ringA.SetKeys(2, testKey(2)); err != nil {
		t.Fatal(err)
	}
	e2 := seal(t, a, ifaceB, f)
	if e2[11] != 2 || bytes.Equal(e2[20:28], s1) || e2[35] != 1 {
		t.Fatalf("after SetKeys: epoch %d, session changed %v, counter %d", e2[11], !bytes.Equal(e2[20:28], s1), e2[35])
	}
	opens(e2, nil)
	if err := ringB.SetKeys(2, testKey(2)); err != nil {
		t.Fatal(err)
	}
	opens(inFlight, nil) // the previous epoch still opens
	opens(seal(t, a, ifaceB, f), nil)
	if e, _ := ringB.Current(); e != 2 {
		t.Fatalf("B's current epoch %d", e)
	}
	// Rotate again, without Accept: epoch 1 is dropped.
	late1 := bytes.Clone(e1)
	for _, k := range []*Keyring{ringA, ringB} {
		if err := k.SetKeys(3, testKey(3)); err != nil {
			t.Fatal(err)
		}
	}
	opens(late1, ErrUnknownEpoch)
	opens(seal(t, a, ifaceB, f), nil)
	if st := b.Stats(); st.Sessions != 2 { // epoch 2's and epoch 3's
		t.Fatalf("sessions cached after epoch 1 was dropped: %+v", st)
	}
}

// TestKeyringRules: what SetKeys and Accept accept and refuse, and which
// epochs are held after each step.
func TestKeyringRules(t *testing.T) {
	type op struct {
		accept bool
		epoch  uint32
		kb     byte
		want   error
		held   []uint32 // prev, cur, next (0: none)
	}
	cases := []struct {
		name string
		ops  []op
	}{
		{"first key", []op{{false, 5, 1, nil, []uint32{0, 5, 0}}}},
		{"same key again changes nothing", []op{{false, 5, 1, nil, []uint32{0, 5, 0}}, {false, 5, 1, nil, []uint32{0, 5, 0}}}},
		{"another key for the epoch", []op{{false, 5, 1, nil, nil}, {false, 5, 2, ErrKeyConflict, []uint32{0, 5, 0}}}},
		{"older epoch", []op{{false, 5, 1, nil, nil}, {false, 4, 2, ErrStaleEpoch, []uint32{0, 5, 0}}}},
		{"rotation keeps one previous", []op{{false, 5, 1, nil, nil}, {false, 6, 2, nil, []uint32{5, 6, 0}}, {false, 8, 3, nil, []uint32{6, 8, 0}}}},
		{"previous epoch again is stale", []op{{false, 5, 1, nil, nil}, {false, 6, 2, nil, nil}, {false, 5, 1, ErrStaleEpoch, []uint32{5, 6, 0}}}},
		{"accept then promote", []op{{false, 5, 1, nil, nil}, {true, 6, 2, nil, []uint32{0, 5, 6}}, {true, 6, 2, nil, []uint32{0, 5, 6}}, {false, 6, 2, nil, []uint32{5, 6, 0}}, {true, 6, 2, nil, []uint32{5, 6, 0}}}},
		{"promote with another key", []op{{false, 5, 1, nil, nil}, {true, 6, 2, nil, nil}, {false, 6, 3, ErrKeyConflict, []uint32{0, 5, 6}}}},
		{"accept another key", []op{{false, 5, 1, nil, nil}, {true, 6, 2, nil, nil}, {true, 6, 3, ErrKeyConflict, []uint32{0, 5, 6}}, {true, 5, 3, ErrKeyConflict, []uint32{0, 5, 6}}}},
		{"accept an old epoch", []op{{false, 5, 1, nil, nil}, {false, 6, 2, nil, nil}, {true, 5, 1, ErrStaleEpoch, []uint32{5, 6, 0}}}},
		{"a newer accept replaces the next", []op{{false, 5, 1, nil, nil}, {true, 6, 2, nil, nil}, {true, 7, 3, nil, []uint32{0, 5, 7}}}},
		{"skipping past the next drops it", []op{{false, 5, 1, nil, nil}, {true, 6, 2, nil, nil}, {false, 7, 3, nil, []uint32{5, 7, 0}}}},
		{"a next beyond the new current stays", []op{{false, 5, 1, nil, nil}, {true, 9, 2, nil, nil}, {false, 7, 3, nil, []uint32{5, 7, 9}}}},
		{"accept before any current", []op{{true, 3, 1, nil, []uint32{0, 0, 3}}, {false, 3, 1, nil, []uint32{0, 3, 0}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, err := NewKeyring(testVPC)
			if err != nil {
				t.Skip(err)
			}
			defer k.Close()
			for i, o := range c.ops {
				gen := k.gen.Load()
				if o.accept {
					err = k.Accept(o.epoch, testKey(o.kb))
				} else {
					err = k.SetKeys(o.epoch, testKey(o.kb))
				}
				if err != o.want {
					t.Fatalf("op %d: %v, want %v", i, err, o.want)
				}
				if err != nil && k.gen.Load() != gen {
					t.Fatalf("op %d: failed but changed the keyring", i)
				}
				if o.held == nil {
					continue
				}
				snap := k.snapshot()
				for r, e := range o.held {
					if got := snap.epochs[r]; got.ok != (e != 0) || got.epoch != e {
						t.Fatalf("op %d: role %d holds %+v, want epoch %d", i, r, got, e)
					}
					if e == 0 && !bytes.Equal(k.prkLocked(r), make([]byte, 32)) {
						t.Fatalf("op %d: role %d is empty but its PRK is not wiped", i, r)
					}
				}
			}
		})
	}
	k := newRing(t, 1, 1)
	if err := k.SetKeys(2, make([]byte, 16)); err != ErrKeySize {
		t.Fatalf("short key: %v", err)
	}
	if err := k.Accept(2, make([]byte, 33)); err != ErrKeySize {
		t.Fatalf("long key: %v", err)
	}
}

// keystream is ciphertext XOR plaintext of a sealed frame.
func keystream(p, f []byte) []byte {
	ks := make([]byte, len(f))
	for i := range f {
		ks[i] = p[HeaderLen+i] ^ f[i]
	}
	return ks
}

// TestSessionsNeverShareKeyNonce: senders whose counters are equal (a
// card restarted, or two cards) never seal under one key and nonce: the
// keystreams differ, and a receiver takes both packets as fresh.
func TestSessionsNeverShareKeyNonce(t *testing.T) {
	k := newRing(t, 1, 1)
	r := newReceiver(t, k, ifaceB, 0)
	f := frame(1500, 9)

	s1 := newSender(t, k, ifaceA)
	p1 := seal(t, s1, ifaceB, f)
	s1.Close() // the card dies; its replacement starts from counter 1 again
	s2 := newSender(t, k, ifaceA)
	p2 := seal(t, s2, ifaceB, f)

	h1, _ := ParseHeader(p1)
	h2, _ := ParseHeader(p2)
	if h1.Counter != 1 || h2.Counter != 1 || h1.Session == h2.Session {
		t.Fatalf("headers %+v and %+v", h1, h2)
	}
	if bytes.Equal(keystream(p1, f), keystream(p2, f)) {
		t.Fatal("two sessions share a keystream")
	}
	for _, p := range [][]byte{p1, p2} {
		if _, _, err := open(r, p); err != nil {
			t.Fatalf("restarted sender's packet: %v", err)
		}
	}

	// Even with one session id forced on senders of different interfaces
	// or epochs, the keys differ, because the derivation binds them.
	fixed := func() uint64 { return 42 }
	k2 := newRing(t, 2, 1)
	var streams [][]byte
	for _, c := range []struct {
		k   *Keyring
		src uint32
	}{{k, ifaceA}, {k, ifaceA + 1}, {k2, ifaceA}} {
		s := newSender(t, c.k, c.src)
		s.random = fixed
		streams = append(streams, keystream(seal(t, s, ifaceB, f), f))
	}
	for i := range streams {
		for j := range i {
			if bytes.Equal(streams[i], streams[j]) {
				t.Fatalf("senders %d and %d share a keystream", i, j)
			}
		}
	}
}

// TestSessionRollover: after its packet budget a Sender starts a new
// session, and the receiver opens both.
func TestSessionRollover(t *testing.T) {
	k := newRing(t, 1, 1)
	s := newSender(t, k, ifaceA)
	s.limit = 3
	r := newReceiver(t, k, ifaceB, 0)
	sessions := map[uint64][]uint64{}
	for i := range 7 {
		p := seal(t, s, ifaceB, frame(60, byte(i)))
		h, _, err := open(r, p)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		sessions[h.Session] = append(sessions[h.Session], h.Counter)
	}
	if len(sessions) != 3 {
		t.Fatalf("sessions %v", sessions)
	}
	for id, cs := range sessions {
		for i, c := range cs {
			if c != uint64(i+1) {
				t.Fatalf("session %x counters %v", id, cs)
			}
		}
	}
}

// TestConcurrent seals from several goroutines (as queues do) and opens
// every packet twice from several goroutines: every counter is used once,
// and every packet opens exactly once.
func TestConcurrent(t *testing.T) {
	k := newRing(t, 1, 1)
	s := newSender(t, k, ifaceA)
	r := newReceiver(t, k, ifaceB, 0)
	const workers, each = 4, 1000
	pkts := make([][]byte, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				p, err := s.Seal(nil, ifaceB, frame(64, byte(i)))
				if err != nil {
					t.Error(err)
					return
				}
				pkts[w*each+i] = p
			}
		})
	}
	wg.Wait()
	seen := make(map[uint64]bool)
	for _, p := range pkts {
		h, _ := ParseHeader(p)
		if seen[h.Counter] || h.Counter == 0 || h.Counter > workers*each {
			t.Fatalf("counter %d twice or out of range", h.Counter)
		}
		seen[h.Counter] = true
	}
	// Every worker opens every packet, each in its own order (strides
	// coprime to the count). All counters are within one window, so each
	// packet must open exactly once.
	var mu sync.Mutex
	opened := make([]int, len(pkts))
	strides := []int{7, 11, 13, 17}
	for w := range workers {
		wg.Go(func() {
			for j := range pkts {
				i := (j*strides[w] + w*997) % len(pkts)
				if _, _, err := open(r, pkts[i]); err == nil {
					mu.Lock()
					opened[i]++
					mu.Unlock()
				} else if err != ErrReplay {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i, n := range opened {
		if n != 1 {
			t.Fatalf("packet %d opened %d times", i, n)
		}
	}
}

// TestZeroAllocs: once a session is established, sealing in place and
// opening allocate nothing, encrypted or not.
func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates in sync operations")
	}
	k := newRing(t, 1, 1)
	for _, c := range []struct {
		name string
		s    *Sender
		r    *Receiver
	}{
		{"encrypted", newSender(t, k, ifaceA), newReceiver(t, k, ifaceB, 0)},
		{"plaintext", NewPlaintextSender(testVPC, ifaceA), NewPlaintextReceiver(testVPC, ifaceB)},
	} {
		for _, n := range []int{64, 1500} {
			const runs = 200
			bufs := make([][]byte, runs+2)
			for i := range bufs {
				bufs[i] = make([]byte, HeaderLen+n+TagLen)
			}
			i := 0
			if a := testing.AllocsPerRun(runs, func() {
				b := bufs[i]
				i++
				if _, err := c.s.Seal(b[:0], ifaceB, b[HeaderLen:HeaderLen+n]); err != nil {
					panic(err)
				}
			}); a != 0 {
				t.Errorf("%s Seal %d: %v allocations", c.name, n, a)
			}
			if c.name == "plaintext" {
				for j := range bufs {
					bufs[j] = bufs[j][:HeaderLen+n]
				}
			}
			i = 0
			if a := testing.AllocsPerRun(runs, func() {
				if _, _, err := c.r.Open(bufs[i]); err != nil {
					panic(err)
				}
				i++
			}); a != 0 {
				t.Errorf("%s Open %d: %v allocations", c.name, n, a)
			}
		}
	}
}

// inside reports whether the AEAD's state lies in mem.
func inside(a any, mem []byte) bool {
	p := reflect.ValueOf(a).Pointer()
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
	return p >= lo && p < lo+uintptr(len(mem))
}

// TestKeysInLockedMemory: the AES-GCM states of sender and receiver
// sessions live in their locked slabs, and are wiped when their epoch
// goes.
func TestKeysInLockedMemory(t *testing.T) {
	k := newRing(t, 1, 1)
	s := newSender(t, k, ifaceA)
	r := newReceiver(t, k, ifaceB, 4)
	if _, _, err := r.Open(seal(t, s, ifaceB, frame(60, 0))); err != nil {
		t.Fatal(err)
	}
	if !inside(s.aead, s.slab.mem.Bytes()) {
		t.Fatal("sender's AES-GCM state is outside its locked memory")
	}
	var sess *rsession
	for _, x := range r.sessions {
		sess = x
	}
	if !inside(sess.aead, r.slab.mem.Bytes()) {
		t.Fatal("receiver's AES-GCM state is outside its locked memory")
	}
	slot := r.slab.slot(sess.slot)
	if bytes.Equal(slot, make([]byte, len(slot))) {
		t.Fatal("the session's slot is empty")
	}
	if err := k.SetKeys(2, testKey(2)); err != nil {
		t.Fatal(err)
	}
	if err := k.SetKeys(3, testKey(3)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Open(seal(t, s, ifaceB, frame(60, 0))); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Sessions != 1 {
		t.Fatalf("stats %+v", st)
	}
	unusedWiped(t, r)
}

// unusedWiped checks that every slot of r that holds no cached session's
// state, the scratch slot included, is all zeroes.
func unusedWiped(t *testing.T, r *Receiver) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	used := map[int]bool{}
	for _, s := range r.sessions {
		used[s.slot] = true
	}
	for i := range r.slab.n {
		if sl := r.slab.slot(i); !used[i] && !bytes.Equal(sl, make([]byte, len(sl))) {
			t.Fatalf("slot %d (scratch %d) holds no session but is not wiped", i, r.scratch)
		}
	}
}

// TestClose: after Close nothing seals or opens, and a closed keyring
// leaves Senders nothing to seal with.
func TestClose(t *testing.T) {
	k := newRing(t, 1, 1)
	s := newSender(t, k, ifaceA)
	r := newReceiver(t, k, ifaceB, 0)
	p := seal(t, s, ifaceB, frame(60, 0))
	q := seal(t, s, ifaceB, frame(60, 0))
	if _, _, err := open(r, p); err != nil {
		t.Fatal(err)
	}
	k.Close()
	if _, err := s.Seal(nil, ifaceB, frame(60, 0)); err != ErrNoKey {
		t.Fatalf("Seal after the keyring closed: %v", err)
	}
	if _, _, err := open(r, q); err != ErrUnknownEpoch {
		t.Fatalf("Open after the keyring closed: %v", err)
	}
	if err := k.SetKeys(2, testKey(2)); err != ErrClosed {
		t.Fatalf("SetKeys after Close: %v", err)
	}
	s.Close()
	r.Close()
	if _, err := s.Seal(nil, ifaceB, frame(60, 0)); err != ErrClosed {
		t.Fatalf("Seal after Close: %v", err)
	}
	if _, _, err := open(r, q); err != ErrClosed {
		t.Fatalf("Open after Close: %v", err)
	}
	if r.slab.mem.Bytes() != nil || s.slab.mem.Bytes() != nil {
		t.Fatal("locked memory still mapped after Close")
	}
}

// TestConcurrentChurn opens packets of more sessions than the cache holds
// from several goroutines while the keyring rotates and forged packets
// arrive: nothing but the expected rejections, and afterwards every slot
// without a session is wiped. Run it with -race.
func TestConcurrentChurn(t *testing.T) {
	k := newRing(t, 1, 1)
	const workers, senders, rounds, rotations = 4, 6, 400, 40
	r := newReceiver(t, k, ifaceB, workers)
	var ss []*Sender
	for i := range senders {
		ss = append(ss, newSender(t, k, uint32(10+i)))
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for e := uint32(2); e < 2+rotations; e++ {
			time.Sleep(100 * time.Microsecond)
			if err := k.SetKeys(e, testKey(byte(e))); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var opened atomic.Int64
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				s := ss[(i*5+w)%senders]
				p, err := s.Seal(nil, ifaceB, frame(64, byte(i)))
				if err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					forged := bytes.Clone(p)
					forged[21] ^= 0x80
					if _, _, err := r.Open(forged); err != ErrAuth && err != ErrUnknownEpoch {
						t.Errorf("forged: %v", err)
					}
				}
				switch _, _, err := r.Open(p); err {
				case nil:
					opened.Add(1)
				case ErrUnknownEpoch, ErrReplay, ErrTooOld:
					// Rotated past, or sealed before its session was
					// evicted and opened after.
				default:
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if opened.Load() < rounds {
		t.Fatalf("only %d of %d packets opened", opened.Load(), workers*rounds)
	}
	unusedWiped(t, r)
	if st := r.Stats(); st.Sessions > workers || st.Evicted == 0 {
		t.Fatalf("stats %+v", st)
	}
}
