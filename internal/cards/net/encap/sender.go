package encap

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"sync"
	"sync/atomic"
)

// SessionPackets is how many packets a Sender seals under one session key
// before it starts a new session: 2^40 packets of at most 4096 AES blocks
// keep the key well inside AES-GCM's bounds (the advantage of an attacker
// grows with the square of the blocks sealed under one key).
const SessionPackets = 1 << 40

// A Sender seals the frames of one interface (the source) for the
// interfaces of its VPC. It is safe for concurrent use, typically by one
// goroutine per queue: they share the session and its counter.
//
// A Sender starts a session on its first Seal, again when the keyring's
// current epoch changes, and after SessionPackets packets: a random 64-bit
// session id and the key derived from it (see the package documentation),
// so that nothing of a session outlives the process and no restart can
// repeat a (key, nonce) pair.
type Sender struct {
	ring      *Keyring // nil in plaintext mode
	vpc, src  uint32
	plaintext bool
	limit     uint64        // SessionPackets; tests lower it
	random    func() uint64 // session ids; tests replace it

	// ctr is the last counter handed out in the current session. Seal
	// adds to it under mu's read lock; a new session resets it under the
	// write lock.
	ctr atomic.Uint64

	mu      sync.RWMutex
	gen     uint64 // the keyring generation the session was checked against
	epoch   uint32
	session uint64
	aead    cipher.AEAD // placed in slab; nil without a session
	slab    *slab
	closed  bool
}

// NewSender returns a Sender for interface src of the keyring's VPC.
func NewSender(ring *Keyring, src uint32) (*Sender, error) {
	sl, err := newSlab(1)
	if err != nil {
		return nil, err
	}
	return &Sender{ring: ring, vpc: ring.vpc, src: src, limit: SessionPackets, random: randomSession, slab: sl}, nil
}

// NewPlaintextSender returns a Sender that neither encrypts nor
// authenticates (FlagPlaintext): the benchmark's baseline, refused by
// every encrypting Receiver.
func NewPlaintextSender(vpc, src uint32) *Sender {
	s := &Sender{vpc: vpc, src: src, plaintext: true, limit: SessionPackets, random: randomSession}
	s.session = s.random()
	return s
}

func randomSession() uint64 {
	var b [8]byte
	rand.Read(b[:]) // never fails (it crashes the program instead)
	return binary.BigEndian.Uint64(b[:])
}

// Seal appends to dst the packet carrying frame to interface to, and
// returns the extended slice, as cipher.AEAD's Seal does: HeaderLen +
// len(frame) + TagLen bytes (no tag in plaintext mode). To seal in place,
// put the frame at buf[HeaderLen:] and pass buf[:0] as dst; a frame that
// overlaps the output anywhere else fails with ErrOverlap (in plaintext
// mode any overlap is fine). It allocates only when dst lacks the room.
func (s *Sender) Seal(dst []byte, to uint32, frame []byte) ([]byte, error) {
	if len(frame) > MaxFrame {
		return dst, ErrFrameSize
	}
	if s.plaintext {
		return s.sealPlain(dst, to, frame), nil
	}
	for {
		s.mu.RLock()
		if s.aead != nil && s.gen == s.ring.gen.Load() {
			if n := s.ctr.Add(1); n <= s.limit {
				out, err := s.sealRLocked(dst, to, frame, n)
				s.mu.RUnlock()
				return out, err
			}
		}
		s.mu.RUnlock()
		if err := s.refresh(); err != nil {
			return dst, err
		}
	}
}

// sealRLocked seals frame as packet n of the current session.
func (s *Sender) sealRLocked(dst []byte, to uint32, frame []byte, n uint64) ([]byte, error) {
	ret, out := grow(dst, HeaderLen+len(frame)+TagLen)
	// The header must not overwrite the frame, nor the sealed frame run
	// ahead of the plaintext it is made from.
	if anyOverlap(out[:HeaderLen], frame) || inexactOverlap(out[HeaderLen:], frame) {
		return dst, ErrOverlap
	}
	Header{VPC: s.vpc, Epoch: s.epoch, Dst: to, Src: s.src, Session: s.session, Counter: n}.Put(out)
	s.aead.Seal(out[HeaderLen:HeaderLen], nonce(out), frame, out[:HeaderLen])
	return ret, nil
}

func (s *Sender) sealPlain(dst []byte, to uint32, frame []byte) []byte {
	ret, out := grow(dst, HeaderLen+len(frame))
	copy(out[HeaderLen:], frame) // before the header, which may overlap frame
	Header{Flags: FlagPlaintext, VPC: s.vpc, Dst: to, Src: s.src, Session: s.session, Counter: s.ctr.Add(1)}.Put(out)
	return ret
}

// nonce is the AES-GCM nonce of a packet: the last 12 bytes of its
// header, the low half of the session id and the counter. The key is the
// session's own, so the counter alone would do; taking the bytes where
// they lie costs no copy.
func nonce(pkt []byte) []byte { return pkt[HeaderLen-12 : HeaderLen] }

// grow extends dst by n bytes, as crypto/cipher's sliceForAppend: ret is
// the whole, out the new part.
func grow(dst []byte, n int) (ret, out []byte) {
	total := len(dst) + n
	if cap(dst) >= total {
		ret = dst[:total]
	} else {
		ret = make([]byte, total)
		copy(ret, dst)
	}
	return ret, ret[len(dst):]
}

// refresh brings the session up to date with the keyring: a new session
// when there is none, when the current epoch changed or when the counter
// ran out.
func (s *Sender) refresh() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.aead != nil && s.gen == s.ring.gen.Load() && s.ctr.Load() < s.limit {
		return nil // another goroutine refreshed it
	}
	if s.aead != nil && s.ctr.Load() < s.limit {
		snap := s.ring.snapshot()
		if c := snap.epochs[cur]; c.ok && c.epoch == s.epoch {
			s.gen = snap.gen // another epoch came or went; ours is current
			return nil
		}
	}
	s.endSessionLocked()
	id := s.random()
	epoch, gen, a, err := s.ring.sendSession(s.src, id, s.slab.slot(0))
	if err != nil {
		return err
	}
	s.aead, s.epoch, s.session, s.gen = a, epoch, id, gen
	s.ctr.Store(0)
	return nil
}

// endSessionLocked wipes the session key.
func (s *Sender) endSessionLocked() {
	s.aead = nil
	clear(s.slab.slot(0))
}

// Close wipes the session key. Seal then fails with ErrClosed. It waits
// for Seals in progress.
func (s *Sender) Close() {
	if s.plaintext {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.endSessionLocked()
	s.slab.free()
}
