package net

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/keymem"
)

// The underlay datagram: a header, authenticated, then the frame sealed
// with AES-256-GCM and its 16-byte tag.
//
//	0      2   3     4          8          12         16         20                 28                 36
//	+------+---+-----+----------+----------+----------+----------+------------------+------------------+---------------------+-----+
//	| "AZ" | 1 |flags| VPC      | to iface | from     | key epoch| sender session   | counter          | sealed frame        | tag |
//	+------+---+-----+----------+----------+----------+----------+------------------+------------------+---------------------+-----+
//	all big-endian; flags bit 0: plaintext (benchmarks only; refused by an encrypting card)
//
// Keys. Each sender (a card process) picks a random 64-bit session at
// start and seals under a key of its own, derived with HKDF-SHA256 from
// the VPC key of the epoch, salted with nothing, for the info
// "azote-vpc-1", VPC, from, epoch, session; the nonce is the counter (4
// zero bytes, then the counter), which the session starts at 1 and never
// repeats. A card killed and restarted picks a new session, so no (key,
// nonce) pair is ever used twice, whatever its counter was; two senders
// never share a key (their interfaces differ, or their sessions). A
// receiver derives the session's key on the first datagram from it and
// keeps it, with the session's anti-replay window (2048 datagrams, as
// RFC 6479), only once that datagram authenticated: a forged datagram
// costs one derivation and changes nothing.
const (
	tunnelHdrLen = 36
	tunnelTagLen = 16
	tunnelMagic  = 0x415a // "AZ"
	tunnelVer    = 1
	flagPlain    = 1

	// TunnelOverhead is what the underlay adds to a frame: the header,
	// the tag, UDP and IPv4.
	TunnelOverhead = tunnelHdrLen + tunnelTagLen + 8 + 20

	replayWindow = 2048
	// maxSessions bounds the senders a receiver remembers; the least
	// recently heard goes first.
	maxSessions = 1024
)

// Errors of Open, each counted as its own reason.
var (
	errTunnelShort   = errors.New("net: underlay datagram too short")
	errTunnelHeader  = errors.New("net: not an azote underlay datagram")
	errTunnelVPC     = errors.New("net: datagram for another VPC or interface")
	errTunnelEpoch   = errors.New("net: datagram under an unknown key epoch")
	errTunnelAuth    = errors.New("net: datagram does not authenticate")
	errTunnelReplay  = errors.New("net: datagram replayed or too old")
	errTunnelPlain   = errors.New("net: plaintext datagram on an encrypting card")
	errTunnelNoKey   = errors.New("net: no key to seal with")
	errTunnelCounter = errors.New("net: the session's counter is exhausted")
)

var zeroHeader [tunnelHdrLen]byte

// tunnel seals and opens the underlay datagrams of one interface.
type tunnel struct {
	vpc, self uint32
	plain     bool // benchmarks: no cipher, same header
	session   uint64
	counter   atomic.Uint64

	mu    sync.Mutex
	keys  map[uint32]*keymem.Buf // VPC keys by epoch: the current and the previous
	send  atomic.Pointer[sealKey]
	peers map[sessionID]*session // what each sender's datagrams need
	clock uint64                 // orders sessions by last use

	// Nonce scratch by queue pair, for sealing (the pair's transmit
	// worker) and opening (its receive loop): the AEAD is an interface,
	// so a nonce on the stack would escape, one allocation a datagram.
	sealNonce, openNonce [MaxPairs][12]byte
}

type sealKey struct {
	epoch uint32
	aead  cipher.AEAD
}

type sessionID struct {
	from, epoch uint32
	session     uint64
}

type session struct {
	aead cipher.AEAD
	mu   sync.Mutex
	top  uint64 // the highest counter accepted
	// window has a word more than replayWindow needs: the word of the
	// top counter is only partly in the window, and the oldest word must
	// not share its slot.
	window [replayWindow/64 + 1]uint64
	used   uint64 // tunnel.clock when last accepted
}

func newTunnel(cfg *cardproto.NetConfig, v *View, pairs int) (*tunnel, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	t := &tunnel{vpc: cfg.State.VPCIndex, self: v.Self.Index, session: binary.BigEndian.Uint64(b[:]),
		keys: map[uint32]*keymem.Buf{}, peers: map[sessionID]*session{}}
	return t, nil
}

// setKeys takes the VPC's keys, newest (the one to seal with) first; the
// sessions under an epoch no longer given are forgotten.
func (t *tunnel) setKeys(epochs []uint32, keys []*keymem.Buf) error {
	if len(epochs) == 0 || len(epochs) != len(keys) || len(keys) > cardproto.MaxNetKeys {
		return fmt.Errorf("%d keys for %d epochs", len(keys), len(epochs))
	}
	fresh := map[uint32]*keymem.Buf{}
	for i, k := range keys {
		if k.Len() != cardproto.NetKeyBytes {
			freeKeys(fresh)
			return fmt.Errorf("a VPC key of %d bytes", k.Len())
		}
		c, err := keymem.New(cardproto.NetKeyBytes)
		if err != nil {
			freeKeys(fresh)
			return err
		}
		copy(c.Bytes(), k.Bytes())
		fresh[epochs[i]] = c
	}
	seal, err := t.derive(fresh[epochs[0]], epochs[0], t.self, t.session)
	if err != nil {
		freeKeys(fresh)
		return err
	}
	t.mu.Lock()
	old := t.keys
	t.keys = fresh
	for id := range t.peers {
		if fresh[id.epoch] == nil {
			delete(t.peers, id)
		}
	}
	t.mu.Unlock()
	if cur := t.send.Load(); cur == nil || cur.epoch != epochs[0] {
		t.send.Store(&sealKey{epoch: epochs[0], aead: seal})
	}
	freeKeys(old)
	return nil
}

func freeKeys(m map[uint32]*keymem.Buf) {
	for _, k := range m {
		k.Free()
	}
}

func (t *tunnel) close() {
	t.mu.Lock()
	freeKeys(t.keys)
	t.keys = nil
	t.mu.Unlock()
}

// derive makes the AEAD of one sender's session under one epoch's key.
func (t *tunnel) derive(key *keymem.Buf, epoch, from uint32, sess uint64) (cipher.AEAD, error) {
	info := make([]byte, 0, 32)
	info = append(info, "azote-vpc-1"...)
	info = binary.BigEndian.AppendUint32(info, t.vpc)
	info = binary.BigEndian.AppendUint32(info, from)
	info = binary.BigEndian.AppendUint32(info, epoch)
	info = binary.BigEndian.AppendUint64(info, sess)
	sk, err := hkdf.Key(sha256.New, key.Bytes(), nil, string(info), 32)
	if err != nil {
		return nil, err
	}
	defer clear(sk)
	block, err := aes.NewCipher(sk)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func (t *tunnel) header(b []byte, to, epoch uint32, n uint64) {
	binary.BigEndian.PutUint16(b[0:], tunnelMagic)
	b[2] = tunnelVer
	b[3] = 0
	if t.plain {
		b[3] = flagPlain
	}
	binary.BigEndian.PutUint32(b[4:], t.vpc)
	binary.BigEndian.PutUint32(b[8:], to)
	binary.BigEndian.PutUint32(b[12:], t.self)
	binary.BigEndian.PutUint32(b[16:], epoch)
	binary.BigEndian.PutUint64(b[20:], t.session)
	binary.BigEndian.PutUint64(b[28:], n)
}

// Seal implements Tunnel.
func (t *tunnel) Seal(q int, dst []byte, to *Peer, frame []byte) ([]byte, error) {
	k := t.send.Load()
	if k == nil {
		return nil, errTunnelNoKey
	}
	n := t.counter.Add(1)
	if n == 0 {
		return nil, errTunnelCounter
	}
	dst = append(dst[:0], zeroHeader[:]...)
	t.header(dst, to.Index, k.epoch, n)
	if t.plain {
		return append(dst, frame...), nil
	}
	nonce := t.sealNonce[q][:]
	binary.BigEndian.PutUint64(nonce[4:], n)
	return k.aead.Seal(dst, nonce, frame, dst[:tunnelHdrLen]), nil
}

// Open implements Tunnel.
func (t *tunnel) Open(q int, pkt []byte) (uint32, []byte, error) {
	if len(pkt) < tunnelHdrLen+tunnelTagLen {
		return 0, nil, errTunnelShort
	}
	if binary.BigEndian.Uint16(pkt) != tunnelMagic || pkt[2] != tunnelVer || pkt[3]&^flagPlain != 0 {
		return 0, nil, errTunnelHeader
	}
	if pkt[3]&flagPlain != 0 != t.plain {
		return 0, nil, errTunnelPlain
	}
	if binary.BigEndian.Uint32(pkt[4:]) != t.vpc || binary.BigEndian.Uint32(pkt[8:]) != t.self {
		return 0, nil, errTunnelVPC
	}
	id := sessionID{from: binary.BigEndian.Uint32(pkt[12:]), epoch: binary.BigEndian.Uint32(pkt[16:]),
		session: binary.BigEndian.Uint64(pkt[20:])}
	n := binary.BigEndian.Uint64(pkt[28:])
	if t.plain {
		return id.from, pkt[tunnelHdrLen:], nil
	}
	s, fresh, err := t.sessionOf(id)
	if err != nil {
		return 0, nil, err
	}
	if n == 0 || !s.fresh(n) {
		return 0, nil, errTunnelReplay
	}
	nonce := t.openNonce[q][:]
	binary.BigEndian.PutUint64(nonce[4:], n)
	body := pkt[tunnelHdrLen:]
	frame, err := s.aead.Open(body[:0], nonce, body, pkt[:tunnelHdrLen])
	if err != nil {
		return 0, nil, errTunnelAuth
	}
	if !s.accept(n) {
		return 0, nil, errTunnelReplay // the same counter, opened twice at once
	}
	if fresh {
		t.remember(id, s)
	}
	return id.from, frame, nil
}

// sessionOf returns the session id names: known, or derived (fresh, not
// remembered until a datagram of it authenticates).
func (t *tunnel) sessionOf(id sessionID) (*session, bool, error) {
	t.mu.Lock()
	if s, ok := t.peers[id]; ok {
		t.clock++
		s.used = t.clock
		t.mu.Unlock()
		return s, false, nil
	}
	key := t.keys[id.epoch]
	if key == nil {
		t.mu.Unlock()
		return nil, false, errTunnelEpoch
	}
	aead, err := t.derive(key, id.epoch, id.from, id.session)
	t.mu.Unlock()
	if err != nil {
		return nil, false, err
	}
	return &session{aead: aead}, true, nil
}

// remember keeps an authenticated session, forgetting the least recently
// heard one when there are too many.
func (t *tunnel) remember(id sessionID, s *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.keys[id.epoch] == nil {
		return // the epoch went away meanwhile
	}
	if len(t.peers) >= maxSessions {
		var oldest sessionID
		first := true
		for k, v := range t.peers {
			if first || v.used < t.peers[oldest].used {
				oldest, first = k, false
			}
		}
		delete(t.peers, oldest)
	}
	t.clock++
	s.used = t.clock
	if _, ok := t.peers[id]; !ok {
		t.peers[id] = s
	}
}

// fresh says whether counter n may still be accepted: above the window's
// top, or within the window and not seen.
func (s *session) fresh(n uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case n > s.top:
		return true
	case s.top-n >= replayWindow:
		return false
	}
	return s.window[(n/64)%uint64(len(s.window))]&(1<<(n%64)) == 0
}

// accept records n, once its datagram authenticated; false if it was
// recorded meanwhile.
func (s *session) accept(n uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	words := uint64(len(s.window))
	if n > s.top {
		// Clear the words the window slides past.
		for w := s.top/64 + 1; w <= n/64 && w <= s.top/64+words; w++ {
			s.window[w%words] = 0
		}
		s.top = n
	} else if s.top-n >= replayWindow {
		return false
	}
	bit := &s.window[(n/64)%words]
	if *bit&(1<<(n%64)) != 0 {
		return false
	}
	*bit |= 1 << (n % 64)
	return true
}

// Reason implements Tunnel.
func (t *tunnel) Reason(err error) Drop {
	switch {
	case errors.Is(err, errTunnelReplay):
		return DropReplay
	case errors.Is(err, errTunnelVPC), errors.Is(err, errTunnelPlain):
		return DropWrongVPC
	}
	return DropDecrypt
}
