package volumes

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/controller/images"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/store"
)

// Table is the store table of volume records (Record, by id).
const Table = "volumes"

// Volume limits.
const (
	MinBytes = 1 << 20
	MaxBytes = 64 << 40
	// MaxImageBytes bounds a volume made from an image, which Create
	// writes whole before it answers.
	MaxImageBytes = 256 << 30
	// KeyBytes is a data key: AES-256-XTS takes two 256-bit keys.
	KeyBytes = 64
)

// Refusals of this package.
var (
	ErrNotFound          = errors.New("volume not found")
	ErrInUse             = errors.New("volume in use")
	ErrIncorrectState    = errors.New("incorrect volume state")
	ErrInvalidSize       = errors.New("invalid volume size")
	ErrDeletionProtected = errors.New("volume deletion protected")
)

// ErrEphemeralKeyGone refuses to restart the card of an instance-store
// volume whose key this azoted does not hold.
var ErrEphemeralKeyGone = errors.New("the instance-store key of this launch is gone (azoted restarted since); the volume cannot be served again until the instance is stopped and started")

// Record is the stored volume: the public view plus, for persistent
// volumes, the data key in wrapped form only.
type Record struct {
	api.Volume
	// WrappedKey is a data key wrapped by the host key: volumes made
	// before they used KMS, moved under KMS at start (MigrateKeys).
	WrappedKey []byte `json:"wrapped_key,omitempty"`
	// DataKey is the data key's KMS ciphertext, under Volume.KMSKeyID,
	// bound to the volume's id; the host decrypts it through the
	// volume's grant.
	DataKey []byte `json:"data_key,omitempty"`
}

// DataKeys is the KMS as the volume owner uses it.
type DataKeys interface {
	// New makes volume id's data key under the KMS key ref (the
	// account's default volume key when "") for the caller c, who must
	// be allowed to use the key, with the host's grant to decrypt it. A
	// nil c is azoted itself (a call from no API request).
	New(c *api.Caller, ref, volumeID string) (keyARN string, ciphertext []byte, plain *keymem.Buf, err error)
	// Open decrypts a volume's data key for its card, as the host.
	Open(keyARN string, ciphertext []byte, volumeID string) (*keymem.Buf, error)
	// Retire ends the volume's grant: its data key can no longer be
	// decrypted by anyone.
	Retire(keyARN, volumeID string) error
	// Usable refuses a KMS key that cannot decrypt now.
	Usable(keyARN string) error
	// Adopt moves a data key wrapped by the host key under the default
	// volume key.
	Adopt(plain []byte, volumeID string) (keyARN string, ciphertext []byte, err error)
}

// FillFunc writes the root filesystem of img into the new volume file f,
// encrypted under key (nil: plaintext), without azoted seeing either.
type FillFunc func(ctx context.Context, f *os.File, img api.Image, key []byte) error

// Config is what the volume owner is given at wiring.
type Config struct {
	Dir       string        // the volume files
	Retention time.Duration // how long a deleted persistent volume stays recoverable
	Quota     int64         // provisioned bytes of all volumes with a file
	Store     store.Store
	Keys      keys.Wrapper
	// DataKeys, when set, makes and opens persistent volumes' data keys
	// (the KMS); without it they are wrapped by Keys alone.
	DataKeys DataKeys
	Images   *images.Service
	Fill     FillFunc
	Import   ImportFunc
	// Event records a security decision (key use, crypto-erase) in the
	// audit trail.
	Event func(name, resource string, data map[string]any)
	Log   *slog.Logger
}

// Service is the owner of volume records, files and keys.
type Service struct {
	cfg Config
	db  store.Store
	log *slog.Logger

	quotaMu  sync.Mutex
	reserved int64 // bytes of volumes being created

	keyMu sync.Mutex
	// ephemeral are the keys of the instance-store volumes of running
	// instances: in memory only, forgotten when the machine ends.
	ephemeral map[string]*keymem.Buf
}

// New returns the volume owner.
func New(cfg Config) *Service {
	return &Service{cfg: cfg, db: cfg.Store, log: cfg.Log, ephemeral: map[string]*keymem.Buf{}}
}

// Close forgets every instance-store key.
func (s *Service) Close() {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	for id, k := range s.ephemeral {
		k.Free()
		delete(s.ephemeral, id)
	}
}

// newKey makes the data key of the new volume v in locked memory: under
// the KMS key ref for the caller of ctx (Config.DataKeys), or wrapped by
// the host key. free releases it.
func (s *Service) newKey(ctx context.Context, v *Record, ref string) (key []byte, free func(), err error) {
	if s.cfg.DataKeys != nil {
		arn, ct, plain, err := s.cfg.DataKeys.New(api.CallerFrom(ctx), ref, v.ID)
		if err != nil {
			return nil, nil, err
		}
		v.KMSKeyID, v.DataKey = arn, ct
		return plain.Bytes(), plain.Free, nil
	}
	if ref != "" {
		return nil, nil, refusal.New(refusal.ErrInvalidParameter, "this host has no KMS to make a data key under %s", ref)
	}
	kb, err := keymem.New(KeyBytes)
	if err != nil {
		return nil, nil, err
	}
	key = kb.Bytes()
	if _, err := rand.Read(key); err != nil {
		kb.Free()
		return nil, nil, err
	}
	if v.WrappedKey, err = s.cfg.Keys.Wrap(keys.Volumes, key, []byte(v.ID)); err != nil {
		kb.Free()
		return nil, nil, err
	}
	return key, kb.Free, nil
}

// dropKey ends the KMS grant of a volume that was not made after all, or
// is purged.
func (s *Service) dropKey(v *Record) {
	if v.DataKey == nil || s.cfg.DataKeys == nil {
		return
	}
	if err := s.cfg.DataKeys.Retire(v.KMSKeyID, v.ID); err != nil {
		s.log.Warn("retiring a volume's KMS grant", "volume", v.ID, "key", v.KMSKeyID, "err", err)
	}
}

// File is the backing file of volume id.
func (s *Service) File(id string) string { return filepath.Join(s.cfg.Dir, id+".img") }

func allTx(tx store.Tx) ([]Record, error) {
	out, err := store.All[Record](tx, Table)
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, err
}

// GetTx reads the record of volume id.
func GetTx(tx store.Tx, id string) (Record, error) {
	var v Record
	err := tx.Get(Table, id, &v)
	return v, err
}

// Get reads the record of volume id.
func (s *Service) Get(id string) (Record, error) {
	var v Record
	err := s.db.View(func(tx store.Tx) error {
		var err error
		v, err = GetTx(tx, id)
		return err
	})
	return v, err
}

// ResolveTx finds a volume by id, then by name. A live volume wins; a
// name that only deleted volumes have names the most recently deleted one
// (so it can be restored by name).
func ResolveTx(tx store.Tx, ref string) (Record, error) {
	var v Record
	if err := tx.Get(Table, ref, &v); err == nil {
		return v, nil
	}
	all, err := allTx(tx)
	if err != nil {
		return v, err
	}
	var deleted *Record
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
	return v, refusal.New(ErrNotFound, "no volume %q", ref)
}

// Resolve finds a volume by id, then by name (ResolveTx).
func (s *Service) Resolve(ref string) (Record, error) {
	var v Record
	err := s.db.View(func(tx store.Tx) error {
		var err error
		v, err = ResolveTx(tx, ref)
		return err
	})
	return v, err
}

// Create makes a volume. The backing file is sparse; a persistent volume
// gets its data key now, stored only wrapped. A volume made from an image
// is filled (Config.Fill) before its record is stored: a failure at any
// step leaves neither file nor record.
func (s *Service) Create(ctx context.Context, req api.CreateVolumeRequest) (api.Volume, error) {
	if req.Name != "" && !api.ValidName(req.Name) {
		return api.Volume{}, refusal.New(refusal.ErrInvalidName, "volume name %q: %s", req.Name, api.NameRule)
	}
	if req.SizeBytes < MinBytes || req.SizeBytes > MaxBytes || req.SizeBytes%4096 != 0 {
		return api.Volume{}, refusal.New(ErrInvalidSize, "size %d: want a multiple of 4 KiB from 1 MiB to 64 TiB", req.SizeBytes)
	}
	if req.Kind != api.VolumeInstanceStore && req.Kind != api.VolumePersistent {
		return api.Volume{}, refusal.New(refusal.ErrInvalidParameter, "kind %q: want %s or %s", req.Kind, api.VolumeInstanceStore, api.VolumePersistent)
	}
	if !req.Plaintext {
		if err := cardproto.EncryptionAvailable(); err != nil {
			return api.Volume{}, refusal.New(refusal.ErrInvalidParameter, "encrypted volume refused: %v; create it with --plaintext, or on a host whose CPU has AES-NI", err)
		}
	}
	if req.IOPS < 0 || req.ThroughputMiB < 0 || req.IOPS > 1e9 || req.ThroughputMiB > 1<<20 {
		return api.Volume{}, refusal.New(refusal.ErrInvalidParameter, "iops must be 0 to 10^9 and throughput 0 to 1048576 MiB/s")
	}
	if e := api.ValidateTags(req.Tags); e != nil {
		return api.Volume{}, e
	}
	if req.Image != "" && (req.SizeBytes < 32<<20 || req.SizeBytes > MaxImageBytes) {
		return api.Volume{}, refusal.New(ErrInvalidSize, "size %d: a volume made from an image is written whole at creation (every sector encrypted) and must be from 32 MiB to 256 GiB", req.SizeBytes)
	}
	var img api.Image
	if req.Image != "" {
		if req.Kind != api.VolumePersistent {
			return api.Volume{}, refusal.New(refusal.ErrInvalidParameter, "a volume made from an image must be persistent")
		}
		var err error
		if img, err = s.cfg.Images.Resolve(req.Image); err != nil {
			return api.Volume{}, err
		}
	}
	// The quota is taken before anything is made; a refusal leaves nothing.
	release, err := s.reserve(req.SizeBytes)
	if err != nil {
		return api.Volume{}, err
	}
	defer release()
	id := api.NewID(api.VolumeIDPrefix)
	name := req.Name
	if name == "" {
		name = id
	}
	v := Record{Volume: api.Volume{
		ID: id, Name: name, Kind: req.Kind, State: api.VolumeAvailable, SizeBytes: req.SizeBytes,
		IOPS: req.IOPS, ThroughputMiB: req.ThroughputMiB, Encrypted: !req.Plaintext, DirectIO: req.DirectIO,
		DeletionProtection: req.DeletionProtection, CreatedAt: time.Now().UTC(), Tags: req.Tags,
	}}
	if v.Encrypted {
		v.Cipher = "aes-xts-plain64"
	}
	var key []byte // in locked memory, freed on return
	if v.Encrypted && v.Kind == api.VolumePersistent {
		var free func()
		if key, free, err = s.newKey(ctx, &v, req.KMSKeyID); err != nil {
			return api.Volume{}, err
		}
		defer free()
	} else if req.KMSKeyID != "" {
		return api.Volume{}, refusal.New(refusal.ErrInvalidParameter, "a KMS key is for encrypted persistent volumes (an instance-store key lives only in its card)")
	}
	v.SourceImage = img.ID
	if err := os.MkdirAll(s.cfg.Dir, 0o700); err != nil {
		return api.Volume{}, err
	}
	f, err := os.OpenFile(s.File(id), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return api.Volume{}, err
	}
	err = f.Truncate(req.SizeBytes)
	if err == nil && img.ID != "" {
		err = s.cfg.Fill(ctx, f, img, key)
	}
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err == nil {
		err = s.db.Update(func(tx store.Tx) error { return createTx(tx, &v) })
	}
	if err != nil {
		os.Remove(s.File(id))
		s.dropKey(&v)
		return api.Volume{}, err
	}
	s.log.Info("volume created", "id", id, "kind", v.Kind, "size", v.SizeBytes, "encrypted", v.Encrypted, "kms_key", v.KMSKeyID)
	return v.Volume, nil
}

// List returns every volume, oldest first.
func (s *Service) List() ([]api.Volume, error) {
	out := []api.Volume{}
	err := s.db.View(func(tx store.Tx) error {
		all, err := allTx(tx)
		for _, v := range all {
			out = append(out, v.Volume)
		}
		return err
	})
	return out, err
}

// update applies fn to the volume ref in one transaction.
func (s *Service) update(ref string, fn func(tx store.Tx, v *Record) error) (Record, error) {
	var v Record
	err := s.db.Update(func(tx store.Tx) error {
		var err error
		if v, err = ResolveTx(tx, ref); err != nil {
			return err
		}
		if err := fn(tx, &v); err != nil {
			return err
		}
		return tx.Put(Table, v.ID, &v)
	})
	return v, err
}

// Modify changes what may change of a volume (its deletion protection).
func (s *Service) Modify(ref string, req api.ModifyVolumeRequest) (api.Volume, error) {
	v, err := s.update(ref, func(_ store.Tx, v *Record) error {
		if req.DeletionProtection != nil {
			v.DeletionProtection = *req.DeletionProtection
		}
		return nil
	})
	return v.Volume, err
}

// Delete deletes a volume. A persistent volume moves to deleted and stays
// recoverable until its purge time; with now, or for an instance-store
// volume, its key and file are destroyed at once.
func (s *Service) Delete(ref string, now bool) (api.Volume, error) {
	purge := false
	v, err := s.update(ref, func(_ store.Tx, v *Record) error {
		if v.DeletionProtection {
			return refusal.New(ErrDeletionProtected, "volume %s has deletion protection; turn it off with: azote volume modify %s --deletion-protection=false", v.ID, v.ID)
		}
		if v.State == api.VolumeInUse {
			return refusal.New(ErrInUse, "volume %s is attached to %s", v.ID, v.AttachedTo)
		}
		if v.State == api.VolumeCreating {
			return refusal.New(ErrIncorrectState, "volume %s is being imported; cancelling the import removes it", v.ID)
		}
		if v.State == api.VolumeDeleted && !now {
			return refusal.New(ErrIncorrectState, "volume %s is already deleted; purge it with --now or restore it", v.ID)
		}
		t := time.Now().UTC()
		purgeAt := t.Add(s.cfg.Retention)
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
		return v.Volume, s.Purge(v.ID)
	}
	s.log.Info("volume deleted (recoverable)", "id", v.ID, "purge_at", v.PurgeAt)
	return v.Volume, nil
}

// Purge destroys the wrapped key (crypto-erase) and the file of a volume
// that is deleted and due. The check is in the same transaction as the
// removal: a restore that came first wins.
func (s *Service) Purge(id string) error {
	var v Record
	err := s.db.Update(func(tx store.Tx) error {
		if err := tx.Get(Table, id, &v); err != nil {
			return err
		}
		if v.State != api.VolumeDeleted || v.PurgeAt == nil || v.PurgeAt.After(time.Now()) {
			return refusal.New(ErrIncorrectState, "volume %s is %s, not due for purging", id, v.State)
		}
		return tx.Delete(Table, id)
	})
	if err != nil {
		return err
	}
	s.ForgetKey(id)
	// The record held the only copy of its data key's ciphertext; the
	// grant that let the host decrypt it goes too.
	s.dropKey(&v)
	err = os.Remove(s.File(id))
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	s.log.Info("volume purged", "id", id)
	return err
}

// PurgeDue destroys the deleted volumes past their retention.
func (s *Service) PurgeDue(now time.Time) {
	var ids []string
	s.db.View(func(tx store.Tx) error {
		all, err := allTx(tx)
		for _, v := range all {
			if v.State == api.VolumeDeleted && v.PurgeAt != nil && v.PurgeAt.Before(now) {
				ids = append(ids, v.ID)
			}
		}
		return err
	})
	for _, id := range ids {
		s.Purge(id)
	}
}

// Restore makes a deleted volume available again.
func (s *Service) Restore(ref string) (api.Volume, error) {
	v, err := s.update(ref, func(tx store.Tx, v *Record) error {
		if v.State != api.VolumeDeleted {
			return refusal.New(ErrIncorrectState, "volume %s is %s, not deleted", v.ID, v.State)
		}
		all, err := allTx(tx)
		if err != nil {
			return err
		}
		for _, x := range all {
			if x.ID != v.ID && x.Name == v.Name && x.State != api.VolumeDeleted {
				return refusal.New(refusal.ErrNameInUse, "a volume named %q exists (%s)", v.Name, x.ID)
			}
		}
		v.State, v.DeletedAt, v.PurgeAt = api.VolumeAvailable, nil, nil
		return nil
	})
	return v.Volume, err
}

// ClaimTx marks the volume ref in use by instance instID, inside the
// instance's transaction.
func ClaimTx(tx store.Tx, ref, instID string, readOnly bool) (Record, error) {
	v, err := ResolveTx(tx, ref)
	if err != nil {
		return v, err
	}
	if v.State != api.VolumeAvailable {
		if v.State == api.VolumeInUse {
			return v, refusal.New(ErrInUse, "volume %s is attached to %s", v.ID, v.AttachedTo)
		}
		return v, refusal.New(ErrIncorrectState, "volume %s is %s", v.ID, v.State)
	}
	v.State, v.AttachedTo, v.ReadOnly = api.VolumeInUse, instID, readOnly
	return v, tx.Put(Table, v.ID, &v)
}

// ReleaseTx makes volume id available if it is still attached to instID,
// and reports that it did. A record that is gone or attached elsewhere is
// left as it is.
func ReleaseTx(tx store.Tx, id, instID string) (v Record, released bool, err error) {
	err = tx.Get(Table, id, &v)
	if errors.Is(err, store.ErrNotFound) {
		return v, false, nil
	}
	if err != nil || v.State != api.VolumeInUse || v.AttachedTo != instID {
		return v, false, err
	}
	v.State, v.AttachedTo, v.ReadOnly = api.VolumeAvailable, "", false
	return v, true, tx.Put(Table, id, &v)
}

// EndTx releases volume id from the terminated instance instID. An
// instance-store volume dies with its instance: it is marked deleted and
// due in the same transaction, so a crash before the Purge the caller
// makes after the commit leaves it to PurgeDue, never available.
func EndTx(tx store.Tx, id, instID string) (purge bool, err error) {
	v, released, err := ReleaseTx(tx, id, instID)
	if err != nil || !released || v.Kind != api.VolumeInstanceStore {
		return false, err
	}
	now := time.Now().UTC()
	v.State, v.DeletedAt, v.PurgeAt = api.VolumeDeleted, &now, &now
	return true, tx.Put(Table, v.ID, &v)
}

// SweepFiles removes backing files no record names: a create or a purge
// cut short by a crash leaves them. It runs before the API serves, so no
// create is in flight.
func (s *Service) SweepFiles() error {
	known := map[string]bool{}
	err := s.db.View(func(tx store.Tx) error {
		all, err := allTx(tx)
		for _, v := range all {
			known[v.ID+".img"] = true
		}
		return err
	})
	if err != nil {
		return err
	}
	files, _ := os.ReadDir(s.cfg.Dir)
	for _, f := range files {
		if !known[f.Name()] {
			os.Remove(filepath.Join(s.cfg.Dir, f.Name()))
			s.log.Info("removed a volume file without a record", "file", f.Name())
		}
	}
	return nil
}
