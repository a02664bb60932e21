package controller

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/image"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/keywrap"
	"github.com/azote/azote/internal/store"
)

const tableVolumes = "volumes"

// Volume limits.
const (
	MinVolumeBytes = 1 << 20
	MaxVolumeBytes = 64 << 40
	// MaxImageVolumeBytes bounds a volume made from an image, which
	// CreateVolume writes whole before it answers.
	MaxImageVolumeBytes = 256 << 30
	volumeKeyBytes      = 64 // AES-256-XTS: two 256-bit keys
)

// volumeRecord is the stored volume: the public view plus, for persistent
// volumes, the data key in wrapped form only.
type volumeRecord struct {
	api.Volume
	WrappedKey []byte `json:"wrapped_key,omitempty"`
}

func (c *Controller) volumeDir() string           { return filepath.Join(c.cfg.StateDir, "volumes") }
func (c *Controller) volumeFile(id string) string { return filepath.Join(c.volumeDir(), id+".img") }

func (c *Controller) allVolumes(tx store.Tx) ([]volumeRecord, error) {
	out, err := store.All[volumeRecord](tx, tableVolumes)
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, err
}

// resolveVolumeTx finds a volume by id, then by name.
func (c *Controller) resolveVolumeTx(tx store.Tx, ref string) (volumeRecord, error) {
	var v volumeRecord
	if err := tx.Get(tableVolumes, ref, &v); err == nil {
		return v, nil
	}
	all, err := c.allVolumes(tx)
	if err != nil {
		return v, err
	}
	// A live volume wins; a name that only a deleted volume has names the
	// most recently deleted one (so it can be restored by name).
	var deleted *volumeRecord
	for i, x := range all {
		if x.Name != ref {
			continue
		}
		if x.State != api.VolumeDeleted {
			return x, nil
		}
		if deleted == nil || x.DeletedAt != nil && deleted.DeletedAt != nil && x.DeletedAt.After(*deleted.DeletedAt) {
			deleted = &all[i]
		}
	}
	if deleted != nil {
		return *deleted, nil
	}
	return v, api.Errorf(api.CodeVolumeNotFound, "no volume %q", ref)
}

func (c *Controller) resolveVolume(ref string) (volumeRecord, error) {
	var v volumeRecord
	err := c.store.View(func(tx store.Tx) error {
		var err error
		v, err = c.resolveVolumeTx(tx, ref)
		return err
	})
	return v, err
}

// CreateVolume implements api.Backend. The backing file is sparse; a
// persistent volume gets its data key now, stored only wrapped.
func (c *Controller) CreateVolume(ctx context.Context, req api.CreateVolumeRequest) (api.Volume, error) {
	if req.Name != "" && (!image.ValidName(req.Name) || looksLikeID(req.Name)) {
		return api.Volume{}, api.Errorf(api.CodeInvalidName, "volume name %q: %s", req.Name, nameRule)
	}
	if req.SizeBytes < MinVolumeBytes || req.SizeBytes > MaxVolumeBytes || req.SizeBytes%4096 != 0 {
		return api.Volume{}, api.Errorf(api.CodeInvalidVolumeSize, "size %d: want a multiple of 4 KiB from 1 MiB to 64 TiB", req.SizeBytes)
	}
	if req.Kind != api.VolumeInstanceStore && req.Kind != api.VolumePersistent {
		return api.Volume{}, api.Errorf(api.CodeInvalidParameter, "kind %q: want %s or %s", req.Kind, api.VolumeInstanceStore, api.VolumePersistent)
	}
	if !req.Plaintext {
		if err := cardproto.EncryptionAvailable(); err != nil {
			return api.Volume{}, api.Errorf(api.CodeInvalidParameter, "encrypted volume refused: %v; create it with --plaintext, or on a host whose CPU has AES-NI", err)
		}
	}
	if req.IOPS < 0 || req.ThroughputMiB < 0 || req.IOPS > 1e9 || req.ThroughputMiB > 1<<20 {
		return api.Volume{}, api.Errorf(api.CodeInvalidParameter, "iops must be 0 to 10^9 and throughput 0 to 1048576 MiB/s")
	}
	if e := api.ValidateTags(req.Tags); e != nil {
		return api.Volume{}, e
	}
	if req.Image != "" && (req.SizeBytes < 32<<20 || req.SizeBytes > MaxImageVolumeBytes) {
		return api.Volume{}, api.Errorf(api.CodeInvalidVolumeSize, "size %d: a volume made from an image is written whole at creation (every sector encrypted) and must be from 32 MiB to 256 GiB", req.SizeBytes)
	}
	var img api.Image
	if req.Image != "" {
		if req.Kind != api.VolumePersistent {
			return api.Volume{}, api.Errorf(api.CodeInvalidParameter, "a volume made from an image must be persistent")
		}
		var err error
		if img, err = c.resolveImage(req.Image); err != nil {
			return api.Volume{}, err
		}
	}
	// The quota is taken before anything is made; a refusal leaves nothing.
	release, err := c.reserveVolume(req.SizeBytes)
	if err != nil {
		return api.Volume{}, err
	}
	defer release()
	id := newID("vol-")
	name := req.Name
	if name == "" {
		name = id
	}
	v := volumeRecord{Volume: api.Volume{
		ID: id, Name: name, Kind: req.Kind, State: api.VolumeAvailable, SizeBytes: req.SizeBytes,
		IOPS: req.IOPS, ThroughputMiB: req.ThroughputMiB, Encrypted: !req.Plaintext, DirectIO: req.DirectIO,
		DeletionProtection: req.DeletionProtection, CreatedAt: time.Now().UTC(), Tags: req.Tags,
	}}
	if v.Encrypted {
		v.Cipher = "aes-xts-plain64"
	}
	var key []byte // in locked memory, freed on return
	if v.Encrypted && v.Kind == api.VolumePersistent {
		kb, err := keymem.New(volumeKeyBytes)
		if err != nil {
			return api.Volume{}, err
		}
		defer kb.Free()
		key = kb.Bytes()
		if _, err := rand.Read(key); err != nil {
			return api.Volume{}, err
		}
		wrapped, err := c.keys.Wrap(keys.Volumes, key, []byte(id))
		if err != nil {
			return api.Volume{}, err
		}
		v.WrappedKey = wrapped
	}
	v.SourceImage = img.ID
	if err := os.MkdirAll(c.volumeDir(), 0o700); err != nil {
		return api.Volume{}, err
	}
	f, err := os.OpenFile(c.volumeFile(id), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return api.Volume{}, err
	}
	err = f.Truncate(req.SizeBytes)
	if err == nil && img.ID != "" {
		err = c.fillRootfs(ctx, f, img, key)
	}
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err == nil {
		err = c.store.Update(func(tx store.Tx) error {
			all, err := c.allVolumes(tx)
			if err != nil {
				return err
			}
			for _, x := range all {
				if x.Name == name && x.State != api.VolumeDeleted {
					return api.Errorf(api.CodeNameInUse, "a volume named %q exists (%s)", name, x.ID)
				}
			}
			return tx.Create(tableVolumes, id, &v)
		})
	}
	if err != nil {
		os.Remove(c.volumeFile(id))
		return api.Volume{}, err
	}
	c.log.Info("volume created", "id", id, "kind", v.Kind, "size", v.SizeBytes, "encrypted", v.Encrypted)
	return v.Volume, nil
}

// ListVolumes implements api.Backend.
func (c *Controller) ListVolumes(context.Context) ([]api.Volume, error) {
	out := []api.Volume{}
	err := c.store.View(func(tx store.Tx) error {
		all, err := c.allVolumes(tx)
		for _, v := range all {
			out = append(out, v.Volume)
		}
		return err
	})
	return out, err
}

// DescribeVolume implements api.Backend.
func (c *Controller) DescribeVolume(_ context.Context, ref string) (api.Volume, error) {
	v, err := c.resolveVolume(ref)
	return v.Volume, err
}

// updateVolume applies fn to the volume ref in one transaction.
func (c *Controller) updateVolume(ref string, fn func(tx store.Tx, v *volumeRecord) error) (volumeRecord, error) {
	var v volumeRecord
	err := c.store.Update(func(tx store.Tx) error {
		var err error
		if v, err = c.resolveVolumeTx(tx, ref); err != nil {
			return err
		}
		if err := fn(tx, &v); err != nil {
			return err
		}
		return tx.Put(tableVolumes, v.ID, &v)
	})
	return v, err
}

// ModifyVolume implements api.Backend.
func (c *Controller) ModifyVolume(_ context.Context, ref string, req api.ModifyVolumeRequest) (api.Volume, error) {
	v, err := c.updateVolume(ref, func(_ store.Tx, v *volumeRecord) error {
		if req.DeletionProtection != nil {
			v.DeletionProtection = *req.DeletionProtection
		}
		return nil
	})
	return v.Volume, err
}

// DeleteVolume implements api.Backend. A persistent volume moves to
// deleted and stays recoverable until purge_at; with now, or for an
// instance-store volume, its key and file are destroyed at once.
func (c *Controller) DeleteVolume(_ context.Context, ref string, now bool) (api.Volume, error) {
	purge := false
	v, err := c.updateVolume(ref, func(_ store.Tx, v *volumeRecord) error {
		if v.DeletionProtection {
			return api.Errorf(api.CodeDeletionProtected, "volume %s has deletion protection; turn it off with: azote volume modify %s --deletion-protection=false", v.ID, v.ID)
		}
		if v.State == api.VolumeInUse {
			return api.Errorf(api.CodeVolumeInUse, "volume %s is attached to %s", v.ID, v.AttachedTo)
		}
		if v.State == api.VolumeDeleted && !now {
			return api.Errorf(api.CodeIncorrectVolumeState, "volume %s is already deleted; purge it with --now or restore it", v.ID)
		}
		t := time.Now().UTC()
		purgeAt := t.Add(c.cfg.VolumeRetention)
		v.State, v.DeletedAt, v.PurgeAt = api.VolumeDeleted, &t, &purgeAt
		purge = now || v.Kind == api.VolumeInstanceStore
		if purge {
			v.PurgeAt = &t
		}
		return nil
	})
	if err != nil {
		return v.Volume, err
	}
	if purge {
		return v.Volume, c.purgeVolume(v.ID)
	}
	c.log.Info("volume deleted (recoverable)", "id", v.ID, "purge_at", v.PurgeAt)
	return v.Volume, nil
}

// purgeVolume destroys the wrapped key (crypto-erase) and the file of a
// volume that is deleted and due. The check is in the same transaction as
// the removal: a restore that came first wins.
func (c *Controller) purgeVolume(id string) error {
	err := c.store.Update(func(tx store.Tx) error {
		var v volumeRecord
		if err := tx.Get(tableVolumes, id, &v); err != nil {
			return err
		}
		if v.State != api.VolumeDeleted || v.PurgeAt == nil || v.PurgeAt.After(time.Now()) {
			return api.Errorf(api.CodeIncorrectVolumeState, "volume %s is %s, not due for purging", id, v.State)
		}
		return tx.Delete(tableVolumes, id)
	})
	if err != nil {
		return err
	}
	c.forgetKey(id)
	err = os.Remove(c.volumeFile(id))
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	c.log.Info("volume purged", "id", id)
	return err
}

// RestoreVolume implements api.Backend.
func (c *Controller) RestoreVolume(_ context.Context, ref string) (api.Volume, error) {
	v, err := c.updateVolume(ref, func(tx store.Tx, v *volumeRecord) error {
		if v.State != api.VolumeDeleted {
			return api.Errorf(api.CodeIncorrectVolumeState, "volume %s is %s, not deleted", v.ID, v.State)
		}
		all, err := c.allVolumes(tx)
		if err != nil {
			return err
		}
		for _, x := range all {
			if x.ID != v.ID && x.Name == v.Name && x.State != api.VolumeDeleted {
				return api.Errorf(api.CodeNameInUse, "a volume named %q exists (%s)", v.Name, x.ID)
			}
		}
		v.State, v.DeletedAt, v.PurgeAt = api.VolumeAvailable, nil, nil
		return nil
	})
	return v.Volume, err
}

// AttachVolume implements api.Backend: to a stopped instance.
func (c *Controller) AttachVolume(_ context.Context, ref string, req api.AttachVolumeRequest) (api.Volume, error) {
	inst, rt, unlock, err := c.lockInstance(req.Instance)
	if err != nil {
		return api.Volume{}, err
	}
	defer unlock()
	_ = rt
	if inst.State != api.StateStopped {
		return api.Volume{}, api.Errorf(api.CodeIncorrectInstanceState, "attach needs a stopped instance; %s is %s", inst.ID, inst.State)
	}
	var out volumeRecord
	err = c.store.Update(func(tx store.Tx) error {
		v, err := c.claimVolumeTx(tx, ref, inst.ID, req.ReadOnly)
		if err != nil {
			return err
		}
		out = v
		var r instanceRecord
		if err := tx.Get(tableInstances, inst.ID, &r); err != nil {
			return err
		}
		r.Volumes = append(r.Volumes, api.InstanceVolume{VolumeID: v.ID, ReadOnly: req.ReadOnly})
		r.Revision++
		return tx.Put(tableInstances, r.ID, &r)
	})
	c.wake(inst.ID)
	return out.Volume, err
}

// claimVolumeTx marks a volume in use by instance id.
func (c *Controller) claimVolumeTx(tx store.Tx, ref, instanceID string, readOnly bool) (volumeRecord, error) {
	v, err := c.resolveVolumeTx(tx, ref)
	if err != nil {
		return v, err
	}
	if v.State != api.VolumeAvailable {
		if v.State == api.VolumeInUse {
			return v, api.Errorf(api.CodeVolumeInUse, "volume %s is attached to %s", v.ID, v.AttachedTo)
		}
		return v, api.Errorf(api.CodeIncorrectVolumeState, "volume %s is %s", v.ID, v.State)
	}
	v.State, v.AttachedTo, v.ReadOnly = api.VolumeInUse, instanceID, readOnly
	return v, tx.Put(tableVolumes, v.ID, &v)
}

// DetachVolume implements api.Backend: from a stopped instance.
func (c *Controller) DetachVolume(_ context.Context, ref string) (api.Volume, error) {
	v, err := c.resolveVolume(ref)
	if err != nil {
		return api.Volume{}, err
	}
	if v.State != api.VolumeInUse {
		return v.Volume, api.Errorf(api.CodeIncorrectVolumeState, "volume %s is not attached", v.ID)
	}
	inst, _, unlock, err := c.lockInstance(v.AttachedTo)
	if err != nil {
		return api.Volume{}, err
	}
	defer unlock()
	if inst.State != api.StateStopped && inst.State != api.StateFailed {
		return v.Volume, api.Errorf(api.CodeIncorrectInstanceState, "detach needs a stopped instance; %s is %s", inst.ID, inst.State)
	}
	var out volumeRecord
	err = c.store.Update(func(tx store.Tx) error {
		// Checked again under the instance's lock and in the transaction:
		// a concurrent detach (and a re-attach elsewhere) may have come
		// between the look-up above and here.
		var err error
		if err = tx.Get(tableVolumes, v.ID, &out); err != nil {
			return err
		}
		if out.State != api.VolumeInUse || out.AttachedTo != inst.ID {
			return api.Errorf(api.CodeIncorrectVolumeState, "volume %s is no longer attached to %s", v.ID, inst.ID)
		}
		var r instanceRecord
		if err := tx.Get(tableInstances, inst.ID, &r); err != nil {
			return err
		}
		for _, a := range r.Volumes {
			if a.VolumeID == v.ID && a.Root {
				return api.Errorf(api.CodeIncorrectVolumeState, "volume %s is the root volume of %s; it is released when the instance is terminated", v.ID, inst.ID)
			}
		}
		out, _, err = c.releaseVolumeTx(tx, v.ID, inst.ID)
		return err
	})
	c.wake(inst.ID)
	return out.Volume, err
}

// releaseVolumeTx removes volume id from instance instID's list and, if the
// volume is still attached to instID, makes it available and reports that
// it did. A volume record that is gone or attached elsewhere is left as it
// is.
func (c *Controller) releaseVolumeTx(tx store.Tx, id, instID string) (v volumeRecord, released bool, err error) {
	err = tx.Get(tableVolumes, id, &v)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return v, false, err
	}
	if err == nil && v.State == api.VolumeInUse && v.AttachedTo == instID {
		v.State, v.AttachedTo, v.ReadOnly = api.VolumeAvailable, "", false
		if err := tx.Put(tableVolumes, id, &v); err != nil {
			return v, false, err
		}
		released = true
	}
	var r instanceRecord
	if err := tx.Get(tableInstances, instID, &r); err != nil {
		return v, released, err
	}
	kept := r.Volumes[:0]
	for _, a := range r.Volumes {
		if a.VolumeID != id {
			kept = append(kept, a)
		}
	}
	r.Volumes = kept
	r.Revision++
	return v, released, tx.Put(tableInstances, r.ID, &r)
}

// volumeKey returns the plaintext data key for a launch, in locked memory
// the caller frees: unwrapped for a persistent volume, fresh for an
// instance-store one.
func (c *Controller) volumeKey(v volumeRecord) (*keymem.Buf, error) {
	if !v.Encrypted {
		return nil, nil
	}
	key, err := keymem.New(volumeKeyBytes)
	if err != nil {
		return nil, err
	}
	if v.Kind == api.VolumePersistent {
		// The wrapped key is 64 bytes: GCM opens it straight into key.
		if p, err := c.keys.UnwrapTo(keys.Volumes, key.Bytes(), v.WrappedKey, []byte(v.ID)); err != nil || len(p) != volumeKeyBytes {
			key.Free()
			if err == nil {
				err = keywrap.ErrUnwrap
			}
			return nil, err
		}
		return key, nil
	}
	if _, err := rand.Read(key.Bytes()); err != nil {
		key.Free()
		return nil, err
	}
	return key, nil
}

// purgeDeletedVolumes destroys deleted volumes past their retention.
func (c *Controller) purgeDeletedVolumes(now time.Time) {
	var ids []string
	c.store.View(func(tx store.Tx) error {
		all, err := c.allVolumes(tx)
		for _, v := range all {
			if v.State == api.VolumeDeleted && v.PurgeAt != nil && v.PurgeAt.Before(now) {
				ids = append(ids, v.ID)
			}
		}
		return err
	})
	for _, id := range ids {
		c.purgeVolume(id)
	}
}
