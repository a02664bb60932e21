package filter

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// The connection table.
//
// Flows are keyed by the interface's view of them: the guest's address and
// port are "local", the peer's "remote", whichever way a packet goes, so
// the two directions of a flow find the same entry. A keyed hash of the
// key (random seeds per table, so that peers cannot aim their flows at one
// chain) picks a shard by its top bits and a slot within the shard by its
// low 32.
//
// A shard is an open-addressing index (linear probing, at most half full,
// deletion by backward shift: no tombstones) over a dense slab of entries
// (deletion moves the last entry into the hole). Both grow on demand, up
// to the shard's cap, and never shrink; nothing is allocated once a flow
// is in the table.
//
// The bound: a global count of entries never exceeds MaxFlows; a shard
// may hold up to 1.5× its even share (plus some), so that one unlucky
// shard does not refuse flows long before the table is full. Memory is
// therefore bounded by about 1.5 × MaxFlows entries and twice as many
// index slots, whatever is sent.
//
// Reclaiming: each shard keeps a lower bound of its entries' expiry times
// (minExp, readable without the lock). A lookup that meets an expired
// entry removes it. An insertion into a full shard, or into a full table,
// sweeps the shard if minExp says something has expired; a full table then
// sweeps the other shards whose minExp has passed, without holding its own
// lock, before it gives up. So a table full of live flows refuses a new
// one in O(shards) atomic loads, and each sweep removes at least the entry
// that made minExp pass.

// flowKey identifies a flow. For ICMP queries lport is the identifier and
// rport tells the query type and which side asked (see keyFor).
type flowKey struct {
	local, remote uint32
	lport, rport  uint16
	proto         uint8
}

// entry is one tracked flow.
type entry struct {
	key     flowKey
	expires int64  // monotonic ns; the flow is gone at or after it
	h32     uint32 // low half of the key's hash: the index slot's tag
	state   tcpState
	origin  Dir   // direction of the packet that started the flow
	last    Dir   // direction of the latest packet (UDP streams)
	turns   uint8 // times the direction changed, saturating (UDP)
}

const (
	maxShards      = 256
	minShardShare  = 512 // entries per shard at least, before splitting more
	initialSlots   = 16
	initialEntries = 8
	noExpiry       = math.MaxInt64
)

type shard struct {
	mu      sync.Mutex
	index   []uint64 // 0: empty; else h32<<32 | entry index+1
	entries []entry
	cap     int // entries this shard may hold

	minExp atomic.Int64 // no entry expires before this

	// Drops and events counted in this shard (by the flow's hash), so
	// that queues do not all add to one cache line.
	drops    [numReasons]atomic.Uint64
	newFlows atomic.Uint64
	expired  atomic.Uint64

	_ [64]byte // keep neighbouring shards' locks off this cache line
}

type table struct {
	shards []shard
	shift  uint // shard = hash >> shift
	max    int64
	count  atomic.Int64
	seed   [3]uint64
}

func newTable(maxFlows int) *table {
	n := 1
	for n < maxShards && maxFlows/(2*n) >= minShardShare {
		n *= 2
	}
	t := &table{shards: make([]shard, n), max: int64(maxFlows)}
	t.shift = 64 - uint(bits.TrailingZeros(uint(n)))
	share := (maxFlows + n - 1) / n
	for i := range t.shards {
		s := &t.shards[i]
		s.cap = min(maxFlows, share+share/2+16)
		s.index = make([]uint64, initialSlots)
		s.minExp.Store(noExpiry)
	}
	t.seed = [3]uint64{rand.Uint64(), rand.Uint64(), rand.Uint64()}
	return t
}

// hash is a keyed mix of the key in the manner of wyhash: two 64×64→128
// multiplications folded.
func (t *table) hash(k *flowKey) uint64 {
	a := uint64(k.local)<<32 | uint64(k.remote)
	b := uint64(k.lport)<<32 | uint64(k.rport)<<16 | uint64(k.proto)
	hi, lo := bits.Mul64(a^t.seed[0], b^t.seed[1])
	hi, lo = bits.Mul64(hi^lo^t.seed[2], 0x9e3779b97f4a7c15)
	return hi ^ lo
}

func (t *table) shardOf(h uint64) *shard {
	return &t.shards[h>>t.shift&uint64(len(t.shards)-1)]
}

// findLocked returns the index slot of k and its entry's index, or the
// empty slot where k would go and -1.
func (s *shard) findLocked(k *flowKey, h32 uint32) (slot, idx int) {
	mask := len(s.index) - 1
	for i := int(h32) & mask; ; i = (i + 1) & mask {
		v := s.index[i]
		if v == 0 {
			return i, -1
		}
		if uint32(v>>32) == h32 {
			if j := int(uint32(v)) - 1; s.entries[j].key == *k {
				return i, j
			}
		}
	}
}

// lookupLocked returns k's entry, removing it (and returning nil) if it
// has expired.
func (s *shard) lookupLocked(t *table, k *flowKey, h32 uint32, now int64) *entry {
	slot, j := s.findLocked(k, h32)
	if j < 0 {
		return nil
	}
	if s.entries[j].expires <= now {
		s.removeLocked(t, slot, j)
		s.expired.Add(1)
		return nil
	}
	return &s.entries[j]
}

// insertLocked adds k, which is not in the shard, and returns its entry
// (zero but for key and tag), or nil if the shard or the table is full
// and nothing in this shard could be reclaimed.
func (s *shard) insertLocked(t *table, k *flowKey, h32 uint32, now int64) *entry {
	if (len(s.entries) >= s.cap || t.count.Load() >= t.max) && s.minExp.Load() <= now {
		s.sweepLocked(t, now)
	}
	if len(s.entries) >= s.cap {
		return nil
	}
	// Reserve a place without ever counting past the bound, even for a
	// moment: a reader (Counters, the metrics) must never see more than
	// MaxFlows.
	for {
		c := t.count.Load()
		if c >= t.max {
			return nil
		}
		if t.count.CompareAndSwap(c, c+1) {
			break
		}
	}
	if 2*(len(s.entries)+1) > len(s.index) {
		s.growIndexLocked()
	}
	if len(s.entries) == cap(s.entries) {
		n := min(max(2*cap(s.entries), initialEntries), s.cap)
		e := make([]entry, len(s.entries), n)
		copy(e, s.entries)
		s.entries = e
	}
	slot, _ := s.findLocked(k, h32)
	j := len(s.entries)
	s.entries = s.entries[:j+1]
	s.entries[j] = entry{key: *k, h32: h32}
	s.index[slot] = uint64(h32)<<32 | uint64(j+1)
	return &s.entries[j]
}

// setExpiry sets e's expiry and keeps the shard's lower bound true.
func (s *shard) setExpiry(e *entry, at int64) {
	e.expires = at
	if at < s.minExp.Load() {
		s.minExp.Store(at)
	}
}

func (s *shard) growIndexLocked() {
	n := 2 * len(s.index)
	s.index = make([]uint64, n)
	mask := n - 1
	for j := range s.entries {
		i := int(s.entries[j].h32) & mask
		for s.index[i] != 0 {
			i = (i + 1) & mask
		}
		s.index[i] = uint64(s.entries[j].h32)<<32 | uint64(j+1)
	}
}

// removeLocked deletes entry j, whose index slot is slot.
func (s *shard) removeLocked(t *table, slot, j int) {
	mask := len(s.index) - 1
	// Backward-shift deletion: pull later members of the probe run into
	// the hole unless their home slot lies after the hole.
	hole := slot
	for i := (hole + 1) & mask; s.index[i] != 0; i = (i + 1) & mask {
		home := int(uint32(s.index[i]>>32)) & mask
		if (i-home)&mask >= (i-hole)&mask {
			s.index[hole] = s.index[i]
			hole = i
		}
	}
	s.index[hole] = 0
	// Move the last entry into j and repoint its slot.
	last := len(s.entries) - 1
	if j != last {
		m := &s.entries[last]
		i := int(m.h32) & mask
		for int(uint32(s.index[i]))-1 != last {
			i = (i + 1) & mask
		}
		s.index[i] = uint64(m.h32)<<32 | uint64(j+1)
		s.entries[j] = *m
	}
	s.entries = s.entries[:last]
	t.count.Add(-1)
}

// sweepLocked removes every expired entry, recomputes minExp, and returns
// how many it removed.
func (s *shard) sweepLocked(t *table, now int64) int {
	n := 0
	minExp := int64(noExpiry)
	for j := 0; j < len(s.entries); {
		e := &s.entries[j]
		if e.expires > now {
			minExp = min(minExp, e.expires)
			j++
			continue
		}
		slot, _ := s.findLocked(&e.key, e.h32)
		s.removeLocked(t, slot, j) // moves another entry into j
		n++
	}
	s.minExp.Store(minExp)
	s.expired.Add(uint64(n))
	return n
}

// reclaim sweeps every shard that may hold expired entries. The caller
// holds no shard lock.
func (t *table) reclaim(now int64) int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		if s.minExp.Load() > now {
			continue
		}
		s.mu.Lock()
		n += s.sweepLocked(t, now)
		s.mu.Unlock()
	}
	return n
}
