package encap

import (
	"crypto/cipher"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/azote/azote/internal/keymem"
)

// A Keyring holds the keys of one VPC, by epoch: the current epoch, which
// Senders seal with; the previous one, which Receivers still open; and
// optionally the next one, which Receivers already open while Senders keep
// sealing with the current one. Of each epoch it keeps only the HKDF
// pseudorandom key (PRK) derived from the VPC key, in locked memory, and
// wipes it when the epoch is dropped.
//
// Rotation without loss: azoted calls Accept(e+1, k) on every card of the
// VPC, and once all have it, SetKeys(e+1, k) on every card. No card then
// receives an epoch it lacks, and packets still in flight under e open
// under the previous epoch. (SetKeys alone also rotates, at the cost of
// the packets a card sends with e+1 before its peers have it.) A later
// rotation drops e.
//
// A Keyring is safe for concurrent use; Senders and Receivers made from
// it notice its changes on their next packet.
type Keyring struct {
	vpc uint32
	// gen counts changes to the epochs, so Senders and Receivers can
	// tell with one atomic load whether to look again.
	gen atomic.Uint64

	mu     sync.Mutex
	epochs [3]epochKey // by role, indexed by prev, cur, next
	mem    *keymem.Buf // the epochs' PRKs, then scratch
	closed bool
}

// Epoch roles, indexes into Keyring.epochs.
const (
	prev = iota
	cur
	next
)

type epochKey struct {
	epoch uint32
	ok    bool
}

// Locked memory layout of a Keyring.
const (
	prkOff     = 0                        // 3 PRKs, by role
	tmpPRKOff  = prkOff + 3*sha256.Size   // a PRK being installed
	sessOff    = tmpPRKOff + sha256.Size  // a session key being made
	infoOff    = sessOff + sha256.Size    // info ‖ 1
	scratchOff = infoOff + infoLen + 1    // HMAC scratch
	ringMem    = scratchOff + hmacScratch // total
)

// NewKeyring returns an empty keyring for VPC vpc. It fails with
// ErrNoHardwareAES where encryption would not be constant-time, or when
// locked memory is short.
func NewKeyring(vpc uint32) (*Keyring, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	mem, err := keymem.New(ringMem)
	if err != nil {
		return nil, fmt.Errorf("encap: keyring: %w", err)
	}
	return &Keyring{vpc: vpc, mem: mem}, nil
}

// VPC is the VPC whose keys the keyring holds.
func (k *Keyring) VPC() uint32 { return k.vpc }

// prkLocked is the PRK slot of role r.
func (k *Keyring) prkLocked(r int) []byte {
	return k.mem.Bytes()[prkOff+r*sha256.Size : prkOff+(r+1)*sha256.Size]
}

// extractLocked derives the PRK of key into the temporary PRK slot.
func (k *Keyring) extractLocked(key []byte) []byte {
	m := k.mem.Bytes()
	tmp := (*[sha256.Size]byte)(m[tmpPRKOff:])
	extract(tmp, key, m[scratchOff:ringMem])
	return tmp[:]
}

// dropLocked wipes role r.
func (k *Keyring) dropLocked(r int) {
	clear(k.prkLocked(r))
	k.epochs[r] = epochKey{}
}

// moveLocked moves role from to role to, which must be empty.
func (k *Keyring) moveLocked(from, to int) {
	copy(k.prkLocked(to), k.prkLocked(from))
	k.epochs[to] = k.epochs[from]
	k.dropLocked(from)
}

// installLocked puts the temporary PRK into role r as epoch e.
func (k *Keyring) installLocked(r int, e uint32) {
	copy(k.prkLocked(r), k.mem.Bytes()[tmpPRKOff:tmpPRKOff+sha256.Size])
	k.epochs[r] = epochKey{epoch: e, ok: true}
}

// sameLocked reports whether role r holds epoch e and, if it does,
// whether its PRK equals the temporary one (in constant time).
func (k *Keyring) sameLocked(r int, e uint32) (held, same bool) {
	if !k.epochs[r].ok || k.epochs[r].epoch != e {
		return false, false
	}
	tmp := k.mem.Bytes()[tmpPRKOff : tmpPRKOff+sha256.Size]
	return true, subtle.ConstantTimeCompare(k.prkLocked(r), tmp) == 1
}

// SetKeys makes key the VPC key of epoch, and epoch the one Senders seal
// with. The epoch it replaces stays accepted as the previous one; the one
// before is dropped and wiped, and so is a next epoch older than this one.
// Giving the current epoch again with the same key changes nothing, and
// giving the epoch that Accept installed promotes it. An epoch older than
// the current one fails with ErrStaleEpoch, and an epoch the keyring holds
// under another key with ErrKeyConflict.
//
// key is read, not retained; the caller wipes its copy (typically the
// Bytes of the keymem.Buf the key arrived in over the private channel).
func (k *Keyring) SetKeys(epoch uint32, key []byte) error {
	return k.change(epoch, key, func(nextHeld bool) bool {
		k.dropLocked(prev)
		if k.epochs[cur].ok {
			k.moveLocked(cur, prev)
		}
		if nextHeld {
			k.moveLocked(next, cur)
			return true
		}
		k.installLocked(cur, epoch)
		if k.epochs[next].ok && k.epochs[next].epoch < epoch {
			k.dropLocked(next)
		}
		return true
	})
}

// Accept makes key the VPC key of epoch for receiving only: the first
// step of a rotation (see Keyring). epoch must be newer than the current
// one (ErrStaleEpoch). A next epoch already accepted is replaced by a
// newer one. An epoch the keyring holds as current or next, given with the
// same key, changes nothing (Accept may be retried after SetKeys promoted
// it); with another key it fails with ErrKeyConflict.
//
// key is read, not retained; the caller wipes its copy.
func (k *Keyring) Accept(epoch uint32, key []byte) error {
	return k.change(epoch, key, func(nextHeld bool) bool {
		if nextHeld {
			return false
		}
		k.dropLocked(next)
		k.installLocked(next, epoch)
		return true
	})
}

// change is what SetKeys and Accept share: it derives the PRK of key into
// the temporary slot and refuses what neither may do (a key of the wrong
// size, a closed keyring, an epoch older than the current one, a held
// epoch under another key). Giving the current epoch again changes
// nothing; otherwise apply runs with k.mu held, told whether the next
// role already holds epoch with this key, and says whether it changed
// the epochs.
func (k *Keyring) change(epoch uint32, key []byte, apply func(nextHeld bool) (changed bool)) error {
	if len(key) != KeySize {
		return ErrKeySize
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return ErrClosed
	}
	defer clear(k.mem.Bytes()[tmpPRKOff : tmpPRKOff+sha256.Size])
	k.extractLocked(key)
	if held, same := k.sameLocked(cur, epoch); held {
		if !same {
			return ErrKeyConflict
		}
		return nil // already current
	}
	if k.epochs[cur].ok && epoch < k.epochs[cur].epoch {
		return ErrStaleEpoch
	}
	held, same := k.sameLocked(next, epoch)
	if held && !same {
		return ErrKeyConflict
	}
	if apply(held) {
		k.gen.Add(1)
	}
	return nil
}

// Current is the epoch Senders seal with, if there is one.
func (k *Keyring) Current() (epoch uint32, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.epochs[cur].epoch, k.epochs[cur].ok
}

// Close wipes every key. Senders and Receivers made from the keyring
// refuse packets they would need a key for with ErrUnknownEpoch or
// ErrNoKey, and must be closed too.
func (k *Keyring) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return
	}
	k.closed = true
	k.epochs = [3]epochKey{}
	k.mem.Free()
	k.gen.Add(1)
}

// snapshot is what a Sender or Receiver caches of the keyring.
type snapshot struct {
	gen    uint64
	epochs [3]epochKey
}

// accepts reports whether the snapshot holds epoch e.
func (s *snapshot) accepts(e uint32) bool {
	for _, k := range s.epochs {
		if k.ok && k.epoch == e {
			return true
		}
	}
	return false
}

// snapshot returns the keyring's epochs and their generation.
func (k *Keyring) snapshot() snapshot {
	k.mu.Lock()
	defer k.mu.Unlock()
	return snapshot{gen: k.gen.Load(), epochs: k.epochs}
}

// session derives the AES-GCM of a sender session of epoch into slot.
// It fails with ErrUnknownEpoch when the keyring does not hold epoch.
func (k *Keyring) session(epoch, src uint32, id uint64, slot []byte) (cipher.AEAD, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for r, e := range k.epochs {
		if e.ok && e.epoch == epoch {
			return k.sessionLocked(r, src, id, slot)
		}
	}
	return nil, ErrUnknownEpoch
}

// sendSession derives the AES-GCM of a new sender session of the current
// epoch into slot, and returns the epoch and the generation it belongs
// to. It fails with ErrNoKey when there is no current epoch.
func (k *Keyring) sendSession(src uint32, id uint64, slot []byte) (epoch uint32, gen uint64, a cipher.AEAD, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := k.epochs[cur]
	if !c.ok {
		return 0, 0, nil, ErrNoKey
	}
	a, err = k.sessionLocked(cur, src, id, slot)
	return c.epoch, k.gen.Load(), a, err
}

// sessionLocked derives the AES-GCM of a session of the epoch in role r.
func (k *Keyring) sessionLocked(r int, src uint32, id uint64, slot []byte) (cipher.AEAD, error) {
	m := k.mem.Bytes()
	key := (*[sha256.Size]byte)(m[sessOff:])
	defer clear(key[:])
	info := sessionInfo(m[infoOff:scratchOff], k.vpc, k.epochs[r].epoch, src, id)
	expand(key, k.prkLocked(r), info, m[scratchOff:ringMem])
	return newAEAD(key[:], slot)
}
