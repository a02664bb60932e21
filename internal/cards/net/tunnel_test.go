package net

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/cards/net/encap"
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

// tunnelPair is interface 1 (a) and 2 (b) of VPC 7 under the keys of the
// epochs given, newest first.
func tunnelPair(t testing.TB, epochs []uint32, keys ...*keymem.Buf) (a, b *tunnel, toB *Peer) {
	mk := func(self uint32) *tunnel {
		cfg := &cardproto.NetConfig{State: cardproto.NetState{VPCIndex: 7}}
		tn, err := newTunnel(cfg, &View{Self: Peer{Index: self}})
		if err != nil {
			t.Fatal(err)
		}
		if err := tn.setKeys(epochs, 0, keys); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tn.close)
		return tn
	}
	return mk(1), mk(2), &Peer{Index: 2}
}

// TestTunnel: frames go through sealed, not in the clear; what the card
// cannot open is counted under the reason its metrics name.
func TestTunnel(t *testing.T) {
	a, b, toB := tunnelPair(t, []uint32{1}, testKey(t, 1))
	frame := make([]byte, 1514)
	rand.Read(frame)
	pkt, err := a.Seal(0, nil, toB, frame)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(pkt, frame[:32]) {
		t.Fatal("the datagram holds the frame in the clear")
	}
	replay := append([]byte(nil), pkt...)
	from, got, err := b.Open(0, pkt)
	if err != nil || from != 1 || !bytes.Equal(got, frame) {
		t.Fatalf("from %d, err %v, equal %v", from, err, bytes.Equal(got, frame))
	}
	other, _, _ := tunnelPair(t, []uint32{1}, testKey(t, 9))
	forged, _ := other.Seal(0, nil, toB, frame)
	toA, _ := b.Seal(0, nil, &Peer{Index: 1}, frame)
	for _, tc := range []struct {
		name string
		pkt  []byte
		drop Drop
	}{
		{"replayed", replay, DropReplay},
		{"sealed under another key", forged, DropDecrypt},
		{"for another interface", toA, DropWrongVPC},
		{"garbage", []byte("not a datagram"), DropDecrypt},
	} {
		_, _, err := b.Open(0, tc.pkt)
		if err == nil || b.Reason(err) != tc.drop {
			t.Errorf("%s: %v counted as %s, want %s", tc.name, err, b.Reason(err), tc.drop)
		}
	}
}

// TestTunnelRotation: a state with the newest key first and the previous
// after it seals with the newest and still opens what peers sealed with
// the previous; the same state again changes nothing.
func TestTunnelRotation(t *testing.T) {
	k1, k2 := testKey(t, 1), testKey(t, 2)
	a, b, toB := tunnelPair(t, []uint32{1}, k1)
	old, _ := a.Seal(0, nil, toB, []byte("sealed under epoch 1"))
	for range 2 { // the same state twice: idempotent
		if err := b.setKeys([]uint32{2, 1}, 0, []*keymem.Buf{k2, k1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := b.Open(0, old); err != nil {
		t.Fatalf("previous epoch after rotation: %v", err)
	}
	if err := a.setKeys([]uint32{2, 1}, 0, []*keymem.Buf{k2, k1}); err != nil {
		t.Fatal(err)
	}
	cur, _ := a.Seal(0, nil, toB, []byte("sealed under epoch 2"))
	if h, err := encap.ParseHeader(cur); err != nil || h.Epoch != 2 {
		t.Fatalf("sealed under %+v, %v", h, err)
	}
	if _, _, err := b.Open(0, cur); err != nil {
		t.Fatal(err)
	}
	if err := b.setKeys([]uint32{1}, 0, []*keymem.Buf{k1}); err == nil {
		t.Fatal("a state going back to an older epoch was taken")
	}
	if err := b.setKeys([]uint32{2}, 0, []*keymem.Buf{k1}); !errors.Is(err, encap.ErrKeyConflict) {
		t.Fatalf("another key for a held epoch: %v", err)
	}
}

// TestTunnelNextKey: the first phase of a rotation (a state with a next
// epoch) makes a card open the next epoch while it still seals with the
// current one, so a peer that is already in the second phase reaches it;
// a card started mid-rotation gets all three epochs; the rotation after
// drops the oldest, whose datagrams are then counted as decrypt failures.
func TestTunnelNextKey(t *testing.T) {
	k1, k2, k3 := testKey(t, 1), testKey(t, 2), testKey(t, 3)
	a, b, toB := tunnelPair(t, []uint32{1}, k1)
	toA := &Peer{Index: 1}
	epochOf := func(pkt []byte) uint32 {
		t.Helper()
		h, err := encap.ParseHeader(pkt)
		if err != nil {
			t.Fatal(err)
		}
		return h.Epoch
	}
	sealsWith := func(tn *tunnel) uint32 {
		t.Helper()
		pkt, err := tn.Seal(0, nil, toB, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		return epochOf(pkt)
	}
	old, _ := a.Seal(0, nil, toB, []byte("sealed under epoch 1"))

	// Phase one on b only: b opens 2 but seals with 1, which a opens.
	for range 2 { // the same state twice: idempotent
		if err := b.setKeys([]uint32{1}, 2, []*keymem.Buf{k1, k2}); err != nil {
			t.Fatal(err)
		}
	}
	pkt, _ := b.Seal(0, nil, toA, []byte("b in phase one"))
	if e := epochOf(pkt); e != 1 {
		t.Fatalf("a card given a next epoch seals with %d", e)
	}
	if _, _, err := a.Open(0, pkt); err != nil {
		t.Fatalf("a at epoch 1 opening b in phase one: %v", err)
	}
	// Phase two on a first: a seals with 2, which b already opens.
	if err := a.setKeys([]uint32{2, 1}, 0, []*keymem.Buf{k2, k1}); err != nil {
		t.Fatal(err)
	}
	pkt, _ = a.Seal(0, nil, toB, []byte("a in phase two"))
	if e := epochOf(pkt); e != 2 {
		t.Fatalf("a promoted to epoch 2 seals with %d", e)
	}
	if _, got, err := b.Open(0, pkt); err != nil || string(got) != "a in phase two" {
		t.Fatalf("b in phase one opening epoch 2: %q, %v", got, err)
	}
	if _, _, err := b.Open(0, old); err != nil {
		t.Fatalf("b opening epoch 1 in phase one: %v", err)
	}
	if err := b.setKeys([]uint32{2, 1}, 0, []*keymem.Buf{k2, k1}); err != nil {
		t.Fatal(err)
	}
	if e := sealsWith(b); e != 2 {
		t.Fatalf("b promoted seals with %d", e)
	}

	// A card started in phase one of the next rotation: 1, 2 and 3.
	c, _, _ := tunnelPair(t, []uint32{2, 1}, k2, k1)
	if err := c.setKeys([]uint32{2, 1}, 3, []*keymem.Buf{k2, k1, k3}); err != nil {
		t.Fatal(err)
	}
	if e := sealsWith(c); e != 2 {
		t.Fatalf("a card started mid-rotation seals with %d", e)
	}
	// The rotation's end drops epoch 1.
	if err := b.setKeys([]uint32{3, 2}, 0, []*keymem.Buf{k3, k2}); err != nil {
		t.Fatal(err)
	}
	a1, _, _ := tunnelPair(t, []uint32{1}, k1)
	old1, _ := a1.Seal(0, nil, toB, []byte("sealed under epoch 1"))
	if _, _, err := b.Open(0, old1); err == nil || b.Reason(err) != DropDecrypt {
		t.Fatalf("epoch 1 after the next rotation: %v, counted as %s", err, b.Reason(err))
	}

	for _, tc := range []struct {
		name   string
		epochs []uint32
		next   uint32
		keys   []*keymem.Buf
	}{
		{"next not after current", []uint32{3}, 3, []*keymem.Buf{k3, k3}},
		{"next without its key", []uint32{3}, 4, []*keymem.Buf{k3}},
		{"a key too many", []uint32{3}, 0, []*keymem.Buf{k3, k2}},
	} {
		if err := b.setKeys(tc.epochs, tc.next, tc.keys); err == nil {
			t.Errorf("%s: taken", tc.name)
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

// TestTunnelPlaintext: the benchmark's baseline carries the frame in the
// clear, an encrypting card refuses what it sends and it refuses what an
// encrypting card sends, and a card not started to allow it refuses the
// configuration.
func TestTunnelPlaintext(t *testing.T) {
	cfg := &cardproto.NetConfig{Plaintext: true, State: cardproto.NetState{VPCIndex: 7}}
	if err := checkPlaintext(cfg, false); !errors.Is(err, errPlaintextRefused) {
		t.Fatalf("plaintext without --allow-plaintext: %v", err)
	}
	if err := checkPlaintext(cfg, true); err != nil {
		t.Fatal(err)
	}
	if err := checkPlaintext(&cardproto.NetConfig{}, false); err != nil {
		t.Fatal(err)
	}
	mk := func(self uint32) *tunnel {
		tn, err := newTunnel(cfg, &View{Self: Peer{Index: self}})
		if err != nil {
			t.Fatal(err)
		}
		if err := tn.setKeys([]uint32{1}, 0, []*keymem.Buf{testKey(t, 1)}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tn.close)
		return tn
	}
	a, b := mk(1), mk(2)
	frame := make([]byte, 1514)
	rand.Read(frame)
	pkt, err := a.Seal(0, nil, &Peer{Index: 2}, frame)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkt) != encap.HeaderLen+len(frame) || !bytes.Equal(pkt[encap.HeaderLen:], frame) {
		t.Fatalf("a plaintext datagram of %d bytes, not the frame behind a header", len(pkt))
	}
	encA, encB, toB := tunnelPair(t, []uint32{1}, testKey(t, 1))
	if _, _, err := encB.Open(0, append([]byte(nil), pkt...)); !errors.Is(err, encap.ErrPlaintext) || encB.Reason(err) != DropWrongVPC {
		t.Fatalf("an encrypting card opened a plaintext datagram: %v", err)
	}
	from, got, err := b.Open(0, pkt)
	if err != nil || from != 1 || !bytes.Equal(got, frame) {
		t.Fatalf("from %d, err %v", from, err)
	}
	sealed, _ := encA.Seal(0, nil, toB, frame)
	if _, _, err := b.Open(0, sealed); !errors.Is(err, encap.ErrEncrypted) {
		t.Fatalf("a plaintext card opened an encrypted datagram: %v", err)
	}
}
