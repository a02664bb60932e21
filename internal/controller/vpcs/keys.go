package vpcs

import (
	"crypto/rand"
	"strconv"

	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/keywrap"
	"github.com/azote/azote/internal/store"
)

// KeyBytes is a VPC traffic key: AES-256-GCM.
const KeyBytes = 32

// keyContext binds a wrapped key to its VPC and epoch: it cannot be moved
// to another VPC, nor replayed as another epoch.
func keyContext(vpcID string, epoch uint32) []byte {
	return []byte(vpcID + "/" + strconv.FormatUint(uint64(epoch), 10))
}

// newWrappedKey makes a random traffic key in locked memory and returns
// it wrapped; the plaintext is freed before it returns.
func (s *Service) newWrappedKey(vpcID string, epoch uint32) ([]byte, error) {
	k, err := keymem.New(KeyBytes)
	if err != nil {
		return nil, err
	}
	defer k.Free()
	if _, err := rand.Read(k.Bytes()); err != nil {
		return nil, err
	}
	return s.cfg.Keys.Wrap(keys.Network, k.Bytes(), keyContext(vpcID, epoch))
}

// EpochKey is one plaintext traffic key of a VPC, in locked memory.
type EpochKey struct {
	Epoch uint32
	Key   *keymem.Buf
	// Next marks a rotation's next epoch: cards open it but do not seal
	// with it yet (RotateKey).
	Next bool
}

// FreeKeys frees what Keys returned.
func FreeKeys(ks []EpochKey) {
	for _, k := range ks {
		k.Key.Free()
	}
}

// Keys returns the plaintext traffic keys of VPC vpcID, oldest epoch
// first: the previous one if any, the current one, and during a rotation
// the next one (marked Next),
// for azoted to hand to the VPC's cards over their private channels. The
// caller frees them (FreeKeys) once sent; they must never be logged,
// written or put in argv or the environment. Each call is audited.
func (s *Service) Keys(vpcID string) ([]EpochKey, error) {
	var v VPCRecord
	if err := s.view(func(tx store.Tx) error { return tx.Get(VPCTable, vpcID, &v) }); err != nil {
		return nil, err
	}
	out := make([]EpochKey, 0, len(v.Keys))
	epochs := make([]uint32, 0, len(v.Keys))
	for _, w := range v.Keys {
		k, err := keymem.New(KeyBytes)
		if err != nil {
			FreeKeys(out)
			return nil, err
		}
		// The wrapped key opens straight into locked memory.
		p, err := s.cfg.Keys.UnwrapTo(keys.Network, k.Bytes(), w.Wrapped, keyContext(v.ID, w.Epoch))
		if err == nil && len(p) != KeyBytes {
			err = keywrap.ErrUnwrap
		}
		if err != nil {
			k.Free()
			FreeKeys(out)
			return nil, err
		}
		out = append(out, EpochKey{Epoch: w.Epoch, Key: k, Next: w.Epoch == v.NextKeyEpoch})
		epochs = append(epochs, w.Epoch)
	}
	s.cfg.Event("VpcKeyUse", "vpc/"+v.ID, map[string]any{"epochs": epochs, "purpose": "unwrapped for the VPC's net cards"})
	return out, nil
}
