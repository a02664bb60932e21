package net

import (
	"errors"
	"fmt"

	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/cards/net/encap"
	"github.com/azote/azote/internal/keymem"
)

// TunnelOverhead is what the underlay adds to a frame: the encapsulation
// header and tag (encap), UDP and IPv4.
const TunnelOverhead = encap.Overhead + 8 + 20

// tunnel seals and opens the underlay datagrams of one interface with
// the VPC's keys (encap: per-sender session keys, anti-replay, rotation).
type tunnel struct {
	ring *encap.Keyring
	send *encap.Sender
	recv *encap.Receiver
}

func newTunnel(cfg *cardproto.NetConfig, v *View) (*tunnel, error) {
	ring, err := encap.NewKeyring(cfg.State.VPCIndex)
	if err != nil {
		return nil, err
	}
	t := &tunnel{ring: ring}
	if cfg.Plaintext {
		// The benchmark's baseline (checkPlaintext): the keys are still
		// taken, and unused.
		t.send = encap.NewPlaintextSender(cfg.State.VPCIndex, v.Self.Index)
		t.recv = encap.NewPlaintextReceiver(cfg.State.VPCIndex, v.Self.Index)
		return t, nil
	}
	if t.send, err = encap.NewSender(ring, v.Self.Index); err == nil {
		t.recv, err = encap.NewReceiver(ring, v.Self.Index, encap.DefaultSessions)
	}
	if err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// setKeys takes the VPC's keys as a state names them: epochs are the
// current one (to seal with) and, when given, the previous one, which
// stays accepted for what peers sealed before they heard of the current
// one; next, when not 0, is a rotation's next epoch, whose key comes last
// and which is only opened until a later state makes it current. A card
// started in the middle of a rotation so gets all three.
func (t *tunnel) setKeys(epochs []uint32, next uint32, keys []*keymem.Buf) error {
	n := len(epochs)
	if next != 0 {
		n++
	}
	if len(epochs) == 0 || len(epochs) > 2 || len(keys) != n {
		return fmt.Errorf("%d keys for epochs %v and next %d", len(keys), epochs, next)
	}
	if next != 0 && next <= epochs[0] {
		return fmt.Errorf("next key epoch %d is not after the current %d", next, epochs[0])
	}
	if cur, ok := t.ring.Current(); len(epochs) == 2 && (!ok || cur < epochs[1]) {
		if err := t.ring.SetKeys(epochs[1], keys[1].Bytes()); err != nil {
			return fmt.Errorf("key epoch %d: %w", epochs[1], err)
		}
	}
	if err := t.ring.SetKeys(epochs[0], keys[0].Bytes()); err != nil {
		return fmt.Errorf("key epoch %d: %w", epochs[0], err)
	}
	if next != 0 {
		if err := t.ring.Accept(next, keys[len(epochs)].Bytes()); err != nil {
			return fmt.Errorf("next key epoch %d: %w", next, err)
		}
	}
	return nil
}

func (t *tunnel) close() {
	if t.send != nil {
		t.send.Close()
	}
	if t.recv != nil {
		t.recv.Close()
	}
	if t.ring != nil {
		t.ring.Close()
	}
}

// Seal implements Tunnel.
func (t *tunnel) Seal(q int, dst []byte, to *Peer, frame []byte) ([]byte, error) {
	return t.send.Seal(dst, to.Index, frame)
}

// Open implements Tunnel.
func (t *tunnel) Open(q int, pkt []byte) (uint32, []byte, error) {
	h, frame, err := t.recv.Open(pkt)
	return h.Src, frame, err
}

// Reason implements Tunnel.
func (t *tunnel) Reason(err error) Drop {
	switch {
	case errors.Is(err, encap.ErrReplay), errors.Is(err, encap.ErrTooOld):
		return DropReplay
	case errors.Is(err, encap.ErrWrongVPC), errors.Is(err, encap.ErrWrongDestination),
		errors.Is(err, encap.ErrPlaintext), errors.Is(err, encap.ErrEncrypted):
		return DropWrongVPC
	}
	return DropDecrypt
}
