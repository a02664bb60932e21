package vpcs

import (
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/store"
)

// Key rotation, in two phases so that no card receives an epoch it
// cannot open (docs/network.md, "Key rotation"):
//
//  1. RotateKey stores a new key as the VPC's next epoch. Every change
//     of the VPC reaches its cards on every host that shares the store;
//     each card then opens the next epoch but keeps sealing with the
//     current one, and the host that runs it records that it has it
//     (KeyAccepted, in the card's underlay record).
//  2. The transaction that records the last card's acceptance promotes
//     the next epoch to current, and that change reaches every card: each
//     seals with the new epoch, and keeps opening the old one as its
//     previous. The epoch before that is forgotten.
//
// A card that never accepts (its host is down or cut off from the store)
// does not hold a rotation forever: after RotationGrace, PromoteDue
// promotes regardless, and so does the next RotateKey. Every step is a
// transaction on the VPC's records, so hosts that race to take one
// conflict in the store and one wins.

// DefaultRotationGrace is how long a rotation waits at most for every
// card to accept the next key: a push to each card is bounded by seconds
// (cardhost.PushNet), and a host hears of a change through the store's
// watch within a second.
const DefaultRotationGrace = 30 * time.Second

// RotateKey gives a VPC a new traffic key, as its next epoch (phase one
// above). A VPC that no card serves promotes it at once. Asked again
// while a rotation waits for cards, it changes nothing and answers with
// that rotation, whose key is as new as the one asked for; a rotation
// past its grace is promoted first.
func (s *Service) RotateKey(ref string) (api.VPC, error) {
	var v VPCRecord
	var joined bool
	err := s.update(func(tx store.Tx) (string, error) {
		var err error
		if v, err = ResolveVPCTx(tx, ref); err != nil {
			return "", err
		}
		now := time.Now().UTC()
		if v.NextKeyEpoch != 0 {
			if now.Before(s.rotationDue(&v)) {
				joined = true
				return "", nil
			}
			promote(&v)
		}
		// Wrapping is local and quick (the host key, or azoted's own KMS),
		// so it is done inside the transaction: two rotations at once
		// make two epochs, never one epoch with two keys.
		epoch := v.KeyEpoch + 1
		wrapped, err := s.newWrappedKey(v.ID, epoch)
		if err != nil {
			return "", err
		}
		v.Keys = append(v.Keys, WrappedKey{Epoch: epoch, Wrapped: wrapped})
		v.NextKeyEpoch, v.KeyRotatedAt = epoch, &now
		if _, err := promoteIfAcceptedTx(tx, &v); err != nil {
			return "", err
		}
		return v.ID, bumpTx(tx, &v)
	})
	if err != nil {
		return api.VPC{}, err
	}
	switch {
	case joined:
		s.log.Info("VPC key rotation already in progress", "id", v.ID, "next_epoch", v.NextKeyEpoch)
	case v.NextKeyEpoch != 0:
		s.log.Info("VPC key rotation started", "id", v.ID, "epoch", v.KeyEpoch, "next_epoch", v.NextKeyEpoch)
	default:
		s.log.Info("VPC key rotated", "id", v.ID, "epoch", v.KeyEpoch)
	}
	return v.VPC, nil
}

// KeyAccepted records that the card serving interface ifaceID holds the
// VPC's keys up to epoch (the current or the next one of the state it
// applied), and promotes the VPC's next epoch when every card that runs
// now holds it. Recording what is already recorded changes nothing; an
// interface no card serves now is not recorded.
func (s *Service) KeyAccepted(ifaceID string, epoch uint32) error {
	// Most pushes change no key: a read says so without a write.
	var known underlayRecord
	if s.view(func(tx store.Tx) error { return tx.Get(UnderlayTable, ifaceID, &known) }) == nil && known.KeyEpoch >= epoch {
		return nil
	}
	return s.update(func(tx store.Tx) (string, error) {
		var n InterfaceRecord
		if err := tx.Get(InterfaceTable, ifaceID, &n); err != nil {
			return "", refusal.New(ErrInterfaceNotFound, "no network interface %q", ifaceID)
		}
		var u underlayRecord
		if tx.Get(UnderlayTable, ifaceID, &u) != nil || u.KeyEpoch >= epoch {
			return "", nil
		}
		u.KeyEpoch = epoch
		if err := tx.Put(UnderlayTable, ifaceID, u); err != nil {
			return "", err
		}
		var v VPCRecord
		if err := tx.Get(VPCTable, n.VPCID, &v); err != nil {
			return "", err
		}
		promoted, err := promoteIfAcceptedTx(tx, &v)
		if err != nil || !promoted {
			return "", err
		}
		s.log.Info("VPC key rotated: every card has the new key", "id", v.ID, "epoch", v.KeyEpoch)
		return v.ID, bumpTx(tx, &v)
	})
}

// PromoteDue promotes VPC vpcID's next epoch if its rotation is past its
// grace, whether every card accepted it or not. Otherwise it returns how
// long is left (0 when no rotation is in progress), for the caller to try
// again then.
func (s *Service) PromoteDue(vpcID string) (wait time.Duration, err error) {
	err = s.update(func(tx store.Tx) (string, error) {
		var v VPCRecord
		if err := tx.Get(VPCTable, vpcID, &v); err != nil {
			return "", refusal.New(ErrVPCNotFound, "no VPC %q", vpcID)
		}
		if v.NextKeyEpoch == 0 {
			return "", nil
		}
		if wait = time.Until(s.rotationDue(&v)); wait > 0 {
			return "", nil
		}
		wait = 0
		s.log.Warn("VPC key rotated before every card had the new key: the rotation's grace is over",
			"id", v.ID, "epoch", v.NextKeyEpoch, "grace", s.cfg.RotationGrace)
		promote(&v)
		return v.ID, bumpTx(tx, &v)
	})
	return wait, err
}

// rotationDue is when v's rotation stops waiting for cards.
func (s *Service) rotationDue(v *VPCRecord) time.Time {
	if v.KeyRotatedAt == nil {
		return time.Time{}
	}
	return v.KeyRotatedAt.Add(s.cfg.RotationGrace)
}

// promoteIfAcceptedTx promotes v's next epoch (in v; the caller writes
// it) when the card of every interface of the VPC that has one now holds
// it. The recorded acceptances are per card: a card that starts records
// none, until its host has given it a state.
func promoteIfAcceptedTx(tx store.Tx, v *VPCRecord) (bool, error) {
	if v.NextKeyEpoch == 0 {
		return false, nil
	}
	ifaces, err := allInterfacesTx(tx)
	if err != nil {
		return false, err
	}
	for _, n := range ifaces {
		var u underlayRecord
		if n.VPCID != v.ID || tx.Get(UnderlayTable, n.ID, &u) != nil {
			continue // no card serves it now: it starts with the keys
		}
		if u.KeyEpoch < v.NextKeyEpoch {
			return false, nil
		}
	}
	promote(v)
	return true, nil
}

// promote makes v's next epoch current, keeps the one it replaces as the
// previous, and forgets the one before.
func promote(v *VPCRecord) {
	v.KeyEpoch, v.NextKeyEpoch = v.NextKeyEpoch, 0
	kept := v.Keys[:0]
	for _, k := range v.Keys {
		if k.Epoch+1 >= v.KeyEpoch {
			kept = append(kept, k)
		}
	}
	v.Keys = kept
}
