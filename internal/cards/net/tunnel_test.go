package net

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/keymem"
)

func testKey(t testing.TB, b byte) *keymem.Buf {
	k, err := keymem.New(cardproto.NetKeyBytes)
	if err != nil {
		t.Fatal(err)
	}
	for i := range k.Bytes() {
		k.Bytes()[i] = b + byte(i)
	}
	t.Cleanup(k.Free)
	return k
}

// tunnelPair is interface 1 (a) and 2 (b) of VPC 7, under the keys of
// epochs given, newest first.
func tunnelPair(t testing.TB, epochs []uint32, keys ...*keymem.Buf) (a, b *tunnel, toB *Peer) {
	mk := func(self uint32) *tunnel {
		cfg := &cardproto.NetConfig{State: cardproto.NetState{VPCIndex: 7}}
		tn, err := newTunnel(cfg, &View{Self: Peer{Index: self}}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := tn.setKeys(epochs, keys); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tn.close)
		return tn
	}
	return mk(1), mk(2), &Peer{Index: 2}
}

func TestTunnelRoundTrip(t *testing.T) {
	a, b, toB := tunnelPair(t, []uint32{1}, testKey(t, 1))
	for _, n := range []int{0, 1, 60, 1514, 9000} {
		frame := make([]byte, n)
		rand.Read(frame)
		pkt, err := a.Seal(0, nil, toB, frame)
		if err != nil {
			t.Fatal(err)
		}
		if len(pkt) != tunnelHdrLen+n+tunnelTagLen {
			t.Fatalf("%d-byte frame sealed into %d bytes", n, len(pkt))
		}
		if n >= 16 && bytes.Contains(pkt, frame[:16]) {
			t.Fatal("the sealed datagram holds the frame in the clear")
		}
		from, got, err := b.Open(0, pkt)
		if err != nil || from != 1 || !bytes.Equal(got, frame) {
			t.Fatalf("%d bytes: from %d, err %v, equal %v", n, from, err, bytes.Equal(got, frame))
		}
	}
}

// TestTunnelRefuses: every way a datagram can be wrong has its error, and
// none of them opens.
func TestTunnelRefuses(t *testing.T) {
	a, b, toB := tunnelPair(t, []uint32{1}, testKey(t, 1))
	pkt, _ := a.Seal(0, nil, toB, []byte("a frame of some length"))
	other, _, _ := tunnelPair(t, []uint32{1}, testKey(t, 9)) // same VPC index, another key
	forged, _ := other.Seal(0, nil, toB, []byte("a frame of some length"))
	mut := func(f func([]byte)) []byte {
		c := append([]byte(nil), pkt...)
		f(c)
		return c
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want error
		drop Drop
	}{
		{"short", pkt[:20], errTunnelShort, DropDecrypt},
		{"magic", mut(func(c []byte) { c[0] ^= 1 }), errTunnelHeader, DropDecrypt},
		{"another VPC", mut(func(c []byte) { c[7] ^= 1 }), errTunnelVPC, DropWrongVPC},
		{"another interface", mut(func(c []byte) { c[11] = 9 }), errTunnelVPC, DropWrongVPC},
		{"plaintext flag", mut(func(c []byte) { c[3] = flagPlain }), errTunnelPlain, DropWrongVPC},
		{"unknown epoch", mut(func(c []byte) { c[19] = 5 }), errTunnelEpoch, DropDecrypt},
		{"flipped body bit", mut(func(c []byte) { c[tunnelHdrLen+3] ^= 0x10 }), errTunnelAuth, DropDecrypt},
		{"flipped tag bit", mut(func(c []byte) { c[len(c)-1] ^= 1 }), errTunnelAuth, DropDecrypt},
		{"header edited (session)", mut(func(c []byte) { c[25] ^= 1 }), errTunnelAuth, DropDecrypt},
		{"sealed under another key", forged, errTunnelAuth, DropDecrypt},
	} {
		_, _, err := b.Open(0, tc.pkt)
		if !errors.Is(err, tc.want) || b.Reason(err) != tc.drop {
			t.Errorf("%s: %v (%v), want %v (%v)", tc.name, err, b.Reason(err), tc.want, tc.drop)
		}
	}
	if len(b.peers) != 0 {
		t.Fatalf("refused datagrams left %d sessions behind", len(b.peers))
	}
	if _, _, err := b.Open(0, pkt); err != nil {
		t.Fatalf("the genuine datagram after the forgeries: %v", err)
	}
}

// TestTunnelReplay: a datagram opens once; reordering within the window
// is fine; older than the window is refused; a failed forgery with a
// high counter does not move the window.
func TestTunnelReplay(t *testing.T) {
	a, b, toB := tunnelPair(t, []uint32{1}, testKey(t, 1))
	var pkts [][]byte
	for range replayWindow + 100 {
		p, _ := a.Seal(0, nil, toB, []byte("x"))
		pkts = append(pkts, p)
	}
	open := func(i int) error {
		_, _, err := b.Open(0, append([]byte(nil), pkts[i]...))
		return err
	}
	if err := open(10); err != nil {
		t.Fatal(err)
	}
	if err := open(10); !errors.Is(err, errTunnelReplay) {
		t.Fatalf("replayed: %v", err)
	}
	for _, i := range []int{5, 0, 9, 11} { // reordered, within the window
		if err := open(i); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
	// A forgery claiming a far counter is refused and leaves the window.
	f := append([]byte(nil), pkts[20]...)
	f[28] = 0x7f
	if _, _, err := b.Open(0, f); !errors.Is(err, errTunnelAuth) {
		t.Fatalf("forged far counter: %v", err)
	}
	if err := open(12); err != nil {
		t.Fatalf("after the forgery: %v", err)
	}
	last := len(pkts) - 1
	if err := open(last); err != nil {
		t.Fatal(err)
	}
	// Counters are pkts index + 1: the window holds last+1-2047 and up.
	if err := open(last - replayWindow); !errors.Is(err, errTunnelReplay) {
		t.Fatalf("older than the window: %v", err)
	}
	if err := open(last - replayWindow + 1); err != nil {
		t.Fatalf("the oldest in the window: %v", err)
	}
	if err := open(last - replayWindow + 1); !errors.Is(err, errTunnelReplay) {
		t.Fatalf("the oldest in the window, again: %v", err)
	}
}

// TestTunnelRotation: after a rotation datagrams sealed under the
// previous epoch still open, the new epoch seals, and once the previous
// is dropped its datagrams are refused.
func TestTunnelRotation(t *testing.T) {
	k1, k2 := testKey(t, 1), testKey(t, 2)
	a, b, toB := tunnelPair(t, []uint32{1}, k1)
	old, _ := a.Seal(0, nil, toB, []byte("under epoch 1"))
	if err := b.setKeys([]uint32{2, 1}, []*keymem.Buf{k2, k1}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Open(0, append([]byte(nil), old...)); err != nil {
		t.Fatalf("previous epoch after rotation: %v", err)
	}
	if err := a.setKeys([]uint32{2, 1}, []*keymem.Buf{k2, k1}); err != nil {
		t.Fatal(err)
	}
	cur, _ := a.Seal(0, nil, toB, []byte("under epoch 2"))
	if cur[19] != 2 {
		t.Fatalf("sealed under epoch %d", cur[19])
	}
	if _, _, err := b.Open(0, cur); err != nil {
		t.Fatal(err)
	}
	if err := b.setKeys([]uint32{2}, []*keymem.Buf{k2}); err != nil {
		t.Fatal(err)
	}
	old2, _ := tunnelPairSeal(t, k1)
	if _, _, err := b.Open(0, old2); !errors.Is(err, errTunnelEpoch) {
		t.Fatalf("dropped epoch: %v", err)
	}
}

func tunnelPairSeal(t *testing.T, k *keymem.Buf) ([]byte, error) {
	a, _, toB := tunnelPair(t, []uint32{1}, k)
	return a.Seal(0, nil, toB, []byte("late"))
}

// TestTunnelRestartedSender: a sender that restarts (new process, counter
// from 1 again) seals under another session key, so its first datagram
// shares no nonce and key with the previous life's, and opens.
func TestTunnelRestartedSender(t *testing.T) {
	k := testKey(t, 1)
	a1, b, toB := tunnelPair(t, []uint32{1}, k)
	a2, _, _ := tunnelPair(t, []uint32{1}, k)
	p1, _ := a1.Seal(0, nil, toB, []byte("same frame"))
	p2, _ := a2.Seal(0, nil, toB, []byte("same frame"))
	if bytes.Equal(p1[28:36], p2[28:36]) && bytes.Equal(p1[tunnelHdrLen:], p2[tunnelHdrLen:]) {
		t.Fatal("two lives sealed the same frame at the same counter alike: a reused key and nonce")
	}
	for _, p := range [][]byte{p1, p2} {
		if _, _, err := b.Open(0, p); err != nil {
			t.Fatal(err)
		}
	}
}

func BenchmarkTunnel(b *testing.B) {
	for _, n := range []int{64, 1500} {
		a, r, toB := tunnelPair(b, []uint32{1}, testKey(b, 1))
		frame := make([]byte, n)
		buf := make([]byte, 0, n+64)
		b.Run("seal+open/"+itoa(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				pkt, err := a.Seal(0, buf, toB, frame)
				if err == nil {
					_, _, err = r.Open(0, pkt)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
