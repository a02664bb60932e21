package sigv4

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// Default bounds of the replay cache. An entry costs about 100 bytes, so
// the cache stays near 100 MiB when full.
const (
	defaultMaxReplayEntries = 1 << 20
	defaultMaxReplayPerKey  = 1 << 16
)

// replayCache remembers the signatures accepted inside the skew window,
// per access key, so that a copy of an accepted request is refused.
//
// It is bounded without forgetting a signature that could still be
// replayed: a key over its quota (or the heaviest keys, when the whole
// cache is full) lose their oldest request seconds, and the key's floor
// rises to the newest second dropped. A request of that key dated at or
// before its floor is refused as too old to check (sign it again), which
// costs an honest client almost nothing (its requests arrive about in the
// order it signs them) and confines a flood to the key that sends it: no
// key can fill the cache for the others.
type replayCache struct {
	mu   sync.Mutex
	keys map[string]*replayKey // by access key id
	// expiry lists, by unix second, the keys holding a request second
	// (or a floor) that leaves the window then.
	expiry map[int64][]*replayKey
	oldest int64 // expiry seconds before it have been processed
	total  int   // signatures held, over all keys
	// floor refuses requests of every key dated at or before it: the
	// floors of keys forgotten to bound the number of keys.
	floor int64
}

// replayKey is what the cache holds for one access key.
type replayKey struct {
	id    string
	sigs  map[[32]byte]struct{}
	secs  []int64 // request seconds (unix) with signatures held, ascending
	bySec map[int64][][32]byte
	floor int64 // requests dated at or before it are refused; 0 for none
}

// replayLimits are the bounds remember applies.
type replayLimits struct {
	skew   int64 // seconds
	max    int   // signatures plus keys, over all keys
	perKey int   // signatures of one key
}

// remember records sig, of a request by akid dated t (unix seconds), as
// used; now is the host time (unix seconds). A signature already held is a
// replay (ErrReplay); a request at or before its key's floor is refused
// with ErrSkew; a key whose quota is full of requests no older than this
// one gets ErrReplayCacheFull.
func (c *replayCache) remember(akid string, sig [32]byte, t, now int64, lim replayLimits) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keys == nil {
		c.keys = make(map[string]*replayKey)
		c.expiry = make(map[int64][]*replayKey)
		c.oldest = now
	}
	c.expireLocked(now, lim.skew)
	k := c.keys[akid]
	if k != nil {
		if _, ok := k.sigs[sig]; ok {
			return ErrReplay
		}
	}
	if c.total+len(c.keys) >= lim.max {
		c.shedLocked(lim.max * 3 / 4)
		k = c.keys[akid]
	}
	floor := c.floor
	if k != nil {
		floor = max(floor, k.floor)
	}
	if t <= floor {
		return fmt.Errorf("%w: signed at %s, before the replay cache's horizon for this key (%s); sign it again",
			ErrSkew, time.Unix(t, 0).UTC().Format(TimeFormat), time.Unix(floor, 0).UTC().Format(TimeFormat))
	}
	if k == nil {
		k = &replayKey{id: akid, sigs: make(map[[32]byte]struct{}), bySec: make(map[int64][][32]byte)}
		c.keys[akid] = k
	}
	for len(k.sigs) >= lim.perKey && len(k.secs) > 0 && k.secs[0] < t {
		c.dropOldestLocked(k)
	}
	if len(k.sigs) >= lim.perKey {
		return ErrReplayCacheFull
	}
	i := sort.Search(len(k.secs), func(i int) bool { return k.secs[i] >= t })
	if i == len(k.secs) || k.secs[i] != t {
		k.secs = append(k.secs, 0)
		copy(k.secs[i+1:], k.secs[i:])
		k.secs[i] = t
		c.expiry[t+lim.skew] = append(c.expiry[t+lim.skew], k)
	}
	k.sigs[sig] = struct{}{}
	k.bySec[t] = append(k.bySec[t], sig)
	c.total++
	return nil
}

// dropOldestLocked forgets k's oldest request second and raises its floor
// over it.
func (c *replayCache) dropOldestLocked(k *replayKey) {
	k.floor = max(k.floor, c.forgetOldestLocked(k))
	// The expiry entry of that second still names k: it clears the floor
	// once requests that old fail the skew check anyway.
}

// forgetOldestLocked forgets the signatures of k's oldest request second
// and returns that second.
func (c *replayCache) forgetOldestLocked(k *replayKey) int64 {
	s := k.secs[0]
	for _, sig := range k.bySec[s] {
		delete(k.sigs, sig)
	}
	c.total -= len(k.bySec[s])
	delete(k.bySec, s)
	k.secs = k.secs[1:]
	return s
}

// expireLocked lets go of what left the window: request seconds and
// floors older than now-skew, which the skew check refuses by itself.
func (c *replayCache) expireLocked(now, skew int64) {
	if c.floor != 0 && c.floor+skew < now {
		c.floor = 0
	}
	if now <= c.oldest {
		return
	}
	visit := func(e int64) {
		for _, k := range c.expiry[e] {
			for len(k.secs) > 0 && k.secs[0]+skew < now {
				c.forgetOldestLocked(k)
			}
			if k.floor != 0 && k.floor+skew < now {
				k.floor = 0
			}
			if len(k.secs) == 0 && k.floor == 0 && c.keys[k.id] == k {
				delete(c.keys, k.id)
			}
		}
		delete(c.expiry, e)
	}
	if now-c.oldest > int64(len(c.expiry)) {
		// A long idle gap: fewer buckets than seconds to step through.
		for e := range c.expiry {
			if e < now {
				visit(e)
			}
		}
	} else {
		for e := c.oldest; e < now; e++ {
			visit(e)
		}
	}
	c.oldest = now
}

// shedLocked brings the cache under target by taking the oldest request
// seconds of the keys that hold the most, down to a share that fits; keys
// left holding only a floor are then forgotten, their floors merged into
// the cache's, if the number of keys alone is over target.
func (c *replayCache) shedLocked(target int) {
	room := target - len(c.keys)
	share := 0
	if room > 0 {
		// The largest share s with sum(min(len, s)) <= room.
		lo, hi := 0, 0
		for _, k := range c.keys {
			hi = max(hi, len(k.sigs))
		}
		for lo < hi {
			mid := (lo + hi + 1) / 2
			n := 0
			for _, k := range c.keys {
				n += min(len(k.sigs), mid)
			}
			if n <= room {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		share = lo
	}
	for _, k := range c.keys {
		for len(k.sigs) > share {
			c.dropOldestLocked(k)
		}
	}
	if c.total+len(c.keys) <= target {
		return
	}
	for id, k := range c.keys {
		if len(k.sigs) == 0 {
			c.floor = max(c.floor, k.floor)
			delete(c.keys, id)
		}
	}
}

// len is the number of signatures held.
func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}
