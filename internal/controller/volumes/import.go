package volumes

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/store"
)

// Refusals of an import whose upload is not what it declared.
var (
	ErrIncompleteUpload = errors.New("upload shorter or longer than declared")
	ErrDigestMismatch   = errors.New("upload digest mismatch")
)

// ImportFunc writes length bytes of r, whose SHA-256 must be digest
// (hex), into the new volume file f, encrypted under key (nil:
// plaintext), without azoted keeping any of it: the fill card does the
// writing. A stream that is not what was declared is an error wrapping
// ErrIncompleteUpload or ErrDigestMismatch.
type ImportFunc func(ctx context.Context, f *os.File, key []byte, length int64, digest string, r io.Reader) error

// ImportSize is the size of a volume imported from a disk of length
// bytes: length rounded up to 4 KiB, at least MinBytes.
func ImportSize(length int64) int64 { return max((length+4095)&^4095, MinBytes) }

// Import makes a persistent volume holding the disk in body. The record
// is stored first, in state creating (so the name is taken, the volume
// shows in a list, and a restart finds it: RemoveUnfinishedImports), then
// the fill card writes the file, and the volume becomes available. Any
// failure on the way (a body cut short, a wrong digest, the caller gone,
// the card dead, a full disk) removes the record and the file: nothing
// half-made is left.
func (s *Service) Import(ctx context.Context, req api.ImportVolumeRequest, body io.Reader) (api.Volume, error) {
	if req.Name != "" && !api.ValidName(req.Name) {
		return api.Volume{}, refusal.New(refusal.ErrInvalidName, "volume name %q: %s", req.Name, api.NameRule)
	}
	if d, err := hex.DecodeString(req.SHA256); err != nil || len(d) != 32 {
		return api.Volume{}, refusal.New(refusal.ErrInvalidParameter, "sha256 %q: want the 64 hex digits of the disk's SHA-256", req.SHA256)
	}
	if req.Length <= 0 || req.Length > MaxImageBytes {
		return api.Volume{}, refusal.New(ErrInvalidSize, "length %d: an imported disk must be from 1 byte to 256 GiB", req.Length)
	}
	if req.SizeBytes == 0 {
		req.SizeBytes = ImportSize(req.Length)
	}
	if req.SizeBytes < req.Length || req.SizeBytes < MinBytes || req.SizeBytes > MaxImageBytes || req.SizeBytes%4096 != 0 {
		return api.Volume{}, refusal.New(ErrInvalidSize, "size %d: an imported volume is written whole (every sector encrypted); want a multiple of 4 KiB from the disk's %d bytes (and 1 MiB) to 256 GiB", req.SizeBytes, req.Length)
	}
	if !req.Plaintext {
		if err := cardproto.EncryptionAvailable(); err != nil {
			return api.Volume{}, refusal.New(refusal.ErrInvalidParameter, "encrypted volume refused: %v; import it with --plaintext, or on a host whose CPU has AES-NI", err)
		}
	}
	release, err := s.reserve(req.SizeBytes)
	if err != nil {
		return api.Volume{}, err
	}
	reserved := true
	defer func() {
		if reserved {
			release()
		}
	}()
	id := api.NewID(api.VolumeIDPrefix)
	name := req.Name
	if name == "" {
		name = id
	}
	v := Record{Volume: api.Volume{
		ID: id, Name: name, Kind: api.VolumePersistent, State: api.VolumeCreating, SizeBytes: req.SizeBytes,
		Encrypted: !req.Plaintext, DeletionProtection: req.DeletionProtection, CreatedAt: time.Now().UTC(),
	}}
	var key []byte // in locked memory, freed on return
	if v.Encrypted {
		v.Cipher = "aes-xts-plain64"
		var free func()
		if key, free, err = s.newKey(ctx, &v, req.KMSKeyID); err != nil {
			return api.Volume{}, err
		}
		defer free()
	}
	if err := os.MkdirAll(s.cfg.Dir, 0o700); err != nil {
		return api.Volume{}, err
	}
	f, err := os.OpenFile(s.File(id), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return api.Volume{}, err
	}
	defer f.Close()
	if err := f.Truncate(req.SizeBytes); err != nil {
		os.Remove(s.File(id))
		return api.Volume{}, err
	}
	err = s.db.Update(func(tx store.Tx) error { return createTx(tx, &v) })
	if err != nil {
		os.Remove(s.File(id))
		s.dropKey(&v)
		return api.Volume{}, err
	}
	// The record counts the volume against the quota from here on.
	release()
	reserved = false
	s.log.Info("volume import started", "id", id, "size", v.SizeBytes, "length", req.Length, "encrypted", v.Encrypted)
	if key != nil {
		s.cfg.Event("VolumeKeyUse", "volume/"+id, map[string]any{"kind": v.Kind, "purpose": "handed to the fill card of an import"})
	}
	err = s.cfg.Import(ctx, f, key, req.Length, req.SHA256, body)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = s.db.Update(func(tx store.Tx) error {
			cur, err := GetTx(tx, id)
			if err != nil {
				return err
			}
			if cur.State != api.VolumeCreating {
				return refusal.New(ErrIncorrectState, "volume %s became %s while it was imported", id, cur.State)
			}
			cur.State = api.VolumeAvailable
			v = cur
			return tx.Put(Table, id, &cur)
		})
	}
	if err != nil {
		s.removeImport(id)
		s.log.Info("volume import failed; volume removed", "id", id, "err", err)
		return api.Volume{}, err
	}
	s.log.Info("volume imported", "id", id, "size", v.SizeBytes, "length", req.Length, "encrypted", v.Encrypted)
	return v.Volume, nil
}

// createTx stores the new volume v unless a live volume has its name.
func createTx(tx store.Tx, v *Record) error {
	if err := nameFreeTx(tx, v.Name); err != nil {
		return err
	}
	return tx.Create(Table, v.ID, v)
}

// nameFreeTx refuses a name a live volume has.
func nameFreeTx(tx store.Tx, name string) error {
	all, err := allTx(tx)
	if err != nil {
		return err
	}
	for _, x := range all {
		if x.Name == name && x.State != api.VolumeDeleted {
			return refusal.New(refusal.ErrNameInUse, "a volume named %q exists (%s)", name, x.ID)
		}
	}
	return nil
}

// removeImport removes the record (if still creating) and the file of
// an import that did not finish. The file goes first: a crash between
// the two leaves a creating record, which the next start removes.
func (s *Service) removeImport(id string) {
	if err := os.Remove(s.File(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("removing an unfinished import's file", "id", id, "err", err)
	}
	var gone Record
	err := s.db.Update(func(tx store.Tx) error {
		cur, err := GetTx(tx, id)
		if err != nil || cur.State != api.VolumeCreating {
			return err
		}
		gone = cur
		return tx.Delete(Table, id)
	})
	s.dropKey(&gone)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Warn("removing an unfinished import's record", "id", id, "err", err)
	}
}

// RemoveUnfinishedImports removes the volumes a crash left in state
// creating, record and file: their import's request died with the
// azoted that served it. It runs before the API serves, so no import is
// in flight.
func (s *Service) RemoveUnfinishedImports() error {
	var ids []string
	err := s.db.View(func(tx store.Tx) error {
		all, err := allTx(tx)
		for _, v := range all {
			if v.State == api.VolumeCreating {
				ids = append(ids, v.ID)
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		s.removeImport(id)
		s.log.Info("removed a volume whose import a restart interrupted", "id", id)
	}
	return nil
}
