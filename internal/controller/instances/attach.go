package instances

import (
	"context"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/controller/volumes"
	"github.com/azote/azote/internal/store"
)

// Attachments are owned here: an instance's list of volumes and each
// volume's claim change together, in one transaction, under the
// instance's operation lock.

// AttachVolume attaches the volume ref to a stopped instance.
func (s *Service) AttachVolume(_ context.Context, ref string, req api.AttachVolumeRequest) (api.Volume, error) {
	inst, _, unlock, err := s.lockInstance(req.Instance)
	if err != nil {
		return api.Volume{}, err
	}
	defer unlock()
	if inst.State != api.StateStopped {
		return api.Volume{}, refusal.New(ErrIncorrectState, "attach needs a stopped instance; %s is %s", inst.ID, inst.State)
	}
	var out volumes.Record
	err = s.store.Update(func(tx store.Tx) error {
		v, err := volumes.ClaimTx(tx, ref, inst.ID, req.ReadOnly)
		if err != nil {
			return err
		}
		out = v
		var r instanceRecord
		if err := tx.Get(Table, inst.ID, &r); err != nil {
			return err
		}
		r.Volumes = append(r.Volumes, api.InstanceVolume{VolumeID: v.ID, ReadOnly: req.ReadOnly})
		r.Revision++
		return tx.Put(Table, r.ID, &r)
	})
	s.wake(inst.ID)
	return out.Volume, err
}

// DetachVolume detaches the volume ref from its stopped instance. A root
// volume stays attached until its instance is terminated.
func (s *Service) DetachVolume(_ context.Context, ref string) (api.Volume, error) {
	v, err := s.volumes.Resolve(ref)
	if err != nil {
		return api.Volume{}, err
	}
	if v.State != api.VolumeInUse {
		return v.Volume, refusal.New(volumes.ErrIncorrectState, "volume %s is not attached", v.ID)
	}
	inst, _, unlock, err := s.lockInstance(v.AttachedTo)
	if err != nil {
		return api.Volume{}, err
	}
	defer unlock()
	if inst.State != api.StateStopped && inst.State != api.StateFailed {
		return v.Volume, refusal.New(ErrIncorrectState, "detach needs a stopped instance; %s is %s", inst.ID, inst.State)
	}
	var out volumes.Record
	err = s.store.Update(func(tx store.Tx) error {
		// Checked again under the instance's lock and in the transaction:
		// a concurrent detach (and a re-attach elsewhere) may have come
		// between the look-up above and here.
		var err error
		if out, err = volumes.GetTx(tx, v.ID); err != nil {
			return err
		}
		if out.State != api.VolumeInUse || out.AttachedTo != inst.ID {
			return refusal.New(volumes.ErrIncorrectState, "volume %s is no longer attached to %s", v.ID, inst.ID)
		}
		var r instanceRecord
		if err := tx.Get(Table, inst.ID, &r); err != nil {
			return err
		}
		kept := r.Volumes[:0]
		for _, a := range r.Volumes {
			if a.VolumeID == v.ID && a.Root {
				return refusal.New(volumes.ErrIncorrectState, "volume %s is the root volume of %s; it is released when the instance is terminated", v.ID, inst.ID)
			}
			if a.VolumeID != v.ID {
				kept = append(kept, a)
			}
		}
		if out, _, err = volumes.ReleaseTx(tx, v.ID, inst.ID); err != nil {
			return err
		}
		r.Volumes = kept
		r.Revision++
		return tx.Put(Table, r.ID, &r)
	})
	s.wake(inst.ID)
	return out.Volume, err
}

// ImageUserTx tells what uses the image id ("" for nothing): an instance
// other than a terminated one. It is images.Service.Delete's UserFunc.
func ImageUserTx(tx store.Tx, imageID string) (string, error) {
	insts, err := store.All[instanceRecord](tx, Table)
	if err != nil {
		return "", err
	}
	for _, r := range insts {
		if r.ImageID == imageID && r.State != api.StateTerminated {
			return "instance " + r.ID + " (" + r.State + ")", nil
		}
	}
	return "", nil
}
