package encap

import (
	"crypto/cipher"
	"errors"
	"sync"
)

// DefaultSessions is the session cache bound of a Receiver when
// NewReceiver is given 0.
const DefaultSessions = 512

// tombsPerSession is how many evicted sessions' tombstones a Receiver
// remembers per cache entry.
const tombsPerSession = 8

// A Receiver opens the packets addressed to one interface (the
// destination) of the keyring's VPC. It keeps, per sender session, the
// derived AES-GCM state (in locked memory) and an anti-replay window, in
// a cache of a bounded number of sessions evicted least recently used
// first. Only packets that authenticate change it: a forged packet cannot
// move a window, add a session, or evict one.
//
// A Receiver is safe for concurrent use; opening (the AES-GCM work) runs
// in parallel, and the cache and windows are guarded by one mutex held for
// a lookup or an update. A packet of a session not in the cache is tried
// under a key derived into a scratch slot, one such packet at a time, and
// only when it authenticates does its session take a place in the cache.
//
// A session evicted from the cache leaves a tombstone, its highest
// counter, so that if it comes back none of its packets up to that counter
// opens again. Tombstones are bounded too (8 per cache entry, oldest
// forgotten first, counted in Stats.TombstonesLost); all of a session's
// state goes when its epoch leaves the keyring.
type Receiver struct {
	ring      *Keyring // nil in plaintext mode
	vpc, dst  uint32
	plaintext bool

	// derive is held while a packet of an unknown session is tried: it
	// owns the scratch slot.
	derive  sync.Mutex
	scratch int // guarded by derive and mu: either reads it, both to swap

	mu       sync.Mutex
	snap     snapshot // the keyring's epochs as last seen
	sessions map[sessKey]*rsession
	lru      rsession    // sentinel of the cache list, most recent first
	free     []int       // free slots
	spare    []*rsession // unused entries
	tombs    tombstones
	slab     *slab
	inflight int // packets being opened with a cached session's key
	closed   bool
	stats    ReceiverStats
}

// ReceiverStats are a Receiver's cache counters.
type ReceiverStats struct {
	Sessions       int    // sender sessions cached now
	Derived        uint64 // session keys derived, for forged packets too
	Evicted        uint64 // sessions evicted from the cache
	TombstonesLost uint64 // evicted sessions whose highest counter was forgotten
}

// sessKey names a sender session.
type sessKey struct {
	epoch uint32
	src   uint32
	id    uint64
}

// rsession is a cached sender session.
type rsession struct {
	key        sessKey
	aead       cipher.AEAD // placed in slot
	slot       int
	refs       int  // packets being opened with aead
	dead       bool // out of the cache; the slot goes when refs is 0
	win        window
	prev, next *rsession
}

// NewReceiver returns a Receiver for interface dst of the keyring's VPC
// that caches up to sessions sender sessions (DefaultSessions if 0).
// Their AES-GCM states take about 800 bytes of locked memory each. The
// cache must hold at least as many sessions as there are goroutines
// calling Open at once, or Open may fail with ErrBusy.
func NewReceiver(ring *Keyring, dst uint32, sessions int) (*Receiver, error) {
	if sessions <= 0 {
		sessions = DefaultSessions
	}
	sl, err := newSlab(sessions + 1) // and the scratch slot
	if err != nil {
		return nil, err
	}
	r := &Receiver{
		ring:     ring,
		vpc:      ring.vpc,
		dst:      dst,
		scratch:  sessions,
		sessions: make(map[sessKey]*rsession, sessions),
		free:     make([]int, 0, sessions),
		spare:    make([]*rsession, 0, sessions),
		tombs:    newTombstones(tombsPerSession * sessions),
		slab:     sl,
	}
	r.lru.prev, r.lru.next = &r.lru, &r.lru
	entries := make([]rsession, sessions)
	for i := range entries {
		r.free = append(r.free, sessions-1-i)
		r.spare = append(r.spare, &entries[i])
	}
	return r, nil
}

// NewPlaintextReceiver returns a Receiver that accepts only plaintext
// packets (FlagPlaintext) for interface dst of VPC vpc: the benchmark's
// baseline. It checks the header and nothing else.
func NewPlaintextReceiver(vpc, dst uint32) *Receiver {
	return &Receiver{vpc: vpc, dst: dst, plaintext: true}
}

// Open checks a packet and decrypts its frame in place: the frame it
// returns lies in pkt. It fails with one of the package's sentinel errors,
// unwrapped, and allocates nothing once the sender's session is cached.
// The header is returned whenever it could be parsed, authenticated only
// when err is nil.
func (r *Receiver) Open(pkt []byte) (Header, []byte, error) {
	h, err := ParseHeader(pkt)
	if err != nil {
		return h, nil, err
	}
	if r.plaintext {
		switch {
		case !h.Plaintext():
			return h, nil, ErrEncrypted
		case h.VPC != r.vpc:
			return h, nil, ErrWrongVPC
		case h.Dst != r.dst:
			return h, nil, ErrWrongDestination
		}
		return h, pkt[HeaderLen:], nil
	}
	switch {
	case h.Plaintext():
		return h, nil, ErrPlaintext
	case len(pkt) < Overhead:
		return h, nil, ErrTruncated
	case h.VPC != r.vpc:
		return h, nil, ErrWrongVPC
	case h.Dst != r.dst:
		return h, nil, ErrWrongDestination
	case h.Counter == 0 || h.Counter > SessionPackets:
		return h, nil, ErrMalformed // no Sender numbers a packet so
	}
	key := sessKey{epoch: h.Epoch, src: h.Src, id: h.Session}
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return h, nil, ErrClosed
		}
		r.syncLocked()
		if !r.snap.accepts(h.Epoch) {
			r.mu.Unlock()
			return h, nil, ErrUnknownEpoch
		}
		s := r.sessions[key]
		if s == nil {
			r.mu.Unlock()
			frame, err := r.openNew(h, key, pkt)
			if err == errRetry {
				continue
			}
			return h, frame, err
		}
		// Checking the window before the tag rejects a replay without
		// the AES work (RFC 4303 §3.4.3); it is checked again after.
		if err := s.win.check(h.Counter); err != nil {
			r.mu.Unlock()
			return h, nil, err
		}
		s.refs++
		r.inflight++
		r.touchLocked(s)
		r.mu.Unlock()

		ct := pkt[HeaderLen:]
		frame, aerr := s.aead.Open(ct[:0], nonce(pkt), ct, pkt[:HeaderLen])

		r.mu.Lock()
		switch {
		case aerr != nil:
			err = ErrAuth
		case r.closed:
			err = ErrClosed
		case s.dead:
			err = ErrUnknownEpoch // the epoch left the keyring meanwhile
		default:
			err = s.win.update(h.Counter)
		}
		r.releaseLocked(s)
		r.mu.Unlock()
		if err != nil {
			return h, nil, err
		}
		return h, frame, nil
	}
}

// errRetry sends Open back to the cache: the session arrived meanwhile.
var errRetry = errors.New("encap: retry")

// openNew opens a packet of a session that is not cached: it derives the
// session key into the scratch slot, and caches the session only if the
// packet authenticates.
func (r *Receiver) openNew(h Header, key sessKey, pkt []byte) ([]byte, error) {
	r.derive.Lock()
	defer r.derive.Unlock()

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	if r.sessions[key] != nil {
		r.mu.Unlock()
		return nil, errRetry
	}
	// A session that comes back after eviction has seen everything up to
	// its tombstone.
	var win window
	if top, ok := r.tombs.get(key); ok {
		win.resetSeen(top)
	}
	if err := win.check(h.Counter); err != nil {
		r.mu.Unlock()
		return nil, err
	}
	r.stats.Derived++
	slot := r.slab.slot(r.scratch)
	r.mu.Unlock()

	a, err := r.ring.session(h.Epoch, h.Src, h.Session, slot)
	if err != nil {
		return nil, err
	}
	ct := pkt[HeaderLen:]
	frame, err := a.Open(ct[:0], nonce(pkt), ct, pkt[:HeaderLen])
	if err != nil {
		clear(slot)
		return nil, ErrAuth
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	r.syncLocked()
	if r.closed || !r.snap.accepts(h.Epoch) {
		clear(slot)
		if r.closed {
			return nil, ErrClosed
		}
		return nil, ErrUnknownEpoch
	}
	i, ok := r.takeSlotLocked()
	if !ok {
		clear(slot)
		return nil, ErrBusy
	}
	s := r.spare[len(r.spare)-1]
	r.spare = r.spare[:len(r.spare)-1]
	*s = rsession{key: key, aead: a, slot: r.scratch, win: win}
	s.win.update(h.Counter) // cannot fail: checked above, and the session is new
	r.scratch = i
	r.sessions[key] = s
	r.pushLocked(s)
	return frame, nil
}

// takeSlotLocked returns a free slot, evicting the least recently used
// session that no Open is using if there is none.
func (r *Receiver) takeSlotLocked() (int, bool) {
	if n := len(r.free); n > 0 {
		i := r.free[n-1]
		r.free = r.free[:n-1]
		return i, true
	}
	for s := r.lru.prev; s != &r.lru; s = s.prev {
		if s.refs == 0 {
			r.tombs.add(s.key, s.win.top)
			r.removeLocked(s)
			r.stats.Evicted++
			i := s.slot
			clear(r.slab.slot(i))
			*s = rsession{}
			r.spare = append(r.spare, s)
			return i, true
		}
	}
	return 0, false
}

// syncLocked drops the sessions and tombstones of epochs that left the
// keyring.
func (r *Receiver) syncLocked() {
	if r.ring.gen.Load() == r.snap.gen {
		return
	}
	r.snap = r.ring.snapshot()
	for _, s := range r.sessions {
		if !r.snap.accepts(s.key.epoch) {
			r.removeLocked(s)
			r.retireLocked(s)
		}
	}
	r.tombs.dropUnless(r.snap.accepts)
}

// removeLocked takes s out of the map and the list.
func (r *Receiver) removeLocked(s *rsession) {
	delete(r.sessions, s.key)
	s.prev.next, s.next.prev = s.next, s.prev
	s.prev, s.next = nil, nil
}

// retireLocked frees a removed session's slot now, or when the last Open
// using it ends.
func (r *Receiver) retireLocked(s *rsession) {
	s.dead = true
	if s.refs == 0 {
		r.freeLocked(s)
	}
}

// freeLocked wipes a dead session's slot and recycles both.
func (r *Receiver) freeLocked(s *rsession) {
	if !r.closed {
		clear(r.slab.slot(s.slot))
	}
	r.free = append(r.free, s.slot)
	*s = rsession{}
	r.spare = append(r.spare, s)
}

// releaseLocked ends an Open's use of s.
func (r *Receiver) releaseLocked(s *rsession) {
	s.refs--
	r.inflight--
	if s.dead && s.refs == 0 {
		r.freeLocked(s)
	}
	if r.closed && r.inflight == 0 {
		r.slab.free()
	}
}

// pushLocked puts s at the front of the list.
func (r *Receiver) pushLocked(s *rsession) {
	s.prev, s.next = &r.lru, r.lru.next
	r.lru.next.prev = s
	r.lru.next = s
}

// touchLocked moves s to the front of the list.
func (r *Receiver) touchLocked(s *rsession) {
	if r.lru.next == s {
		return
	}
	s.prev.next, s.next.prev = s.next, s.prev
	r.pushLocked(s)
}

// Stats returns the cache counters.
func (r *Receiver) Stats() ReceiverStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stats
	st.Sessions = len(r.sessions)
	st.TombstonesLost = r.tombs.lost
	return st
}

// Close wipes every session key. Open then fails with ErrClosed; Opens in
// progress finish, and the locked memory goes with the last of them.
func (r *Receiver) Close() {
	if r.plaintext {
		return
	}
	r.derive.Lock()
	defer r.derive.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	for _, s := range r.sessions {
		r.removeLocked(s)
		r.retireLocked(s)
	}
	r.closed = true
	if r.inflight == 0 {
		r.slab.free()
	}
}

// tombstones remember the highest counter of evicted sessions, the newest
// max of them.
type tombstones struct {
	top  map[sessKey]tomb
	ring []tombRef // evictions, oldest at head
	head int
	n    int
	seq  uint64
	lost uint64
}

type tomb struct{ top, seq uint64 }

// tombRef is an eviction; it is current if the map holds its seq.
type tombRef struct {
	key sessKey
	seq uint64
}

func newTombstones(max int) tombstones {
	return tombstones{top: make(map[sessKey]tomb, max), ring: make([]tombRef, max)}
}

func (t *tombstones) get(k sessKey) (uint64, bool) {
	tb, ok := t.top[k]
	return tb.top, ok
}

// add records that session k was evicted at counter top, forgetting the
// oldest eviction if there are max.
func (t *tombstones) add(k sessKey, top uint64) {
	if t.n == len(t.ring) {
		old := t.ring[t.head]
		if tb, ok := t.top[old.key]; ok && tb.seq == old.seq {
			delete(t.top, old.key)
			t.lost++
		}
		t.head = (t.head + 1) % len(t.ring)
		t.n--
	}
	t.seq++
	t.ring[(t.head+t.n)%len(t.ring)] = tombRef{key: k, seq: t.seq}
	t.n++
	t.top[k] = tomb{top: top, seq: t.seq}
}

// dropUnless forgets the tombstones of epochs keep refuses; their
// evictions stay in the ring, as stale entries.
func (t *tombstones) dropUnless(keep func(epoch uint32) bool) {
	for k := range t.top {
		if !keep(k.epoch) {
			delete(t.top, k)
		}
	}
}
