package volumes

import (
	"crypto/rand"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/keywrap"
	"github.com/azote/azote/internal/store"
)

// LaunchKey returns the key the card of v needs now, in locked memory the
// caller frees (nil for a plaintext volume). A persistent volume's key is
// unwrapped. An instance-store volume gets a fresh key at each launch,
// kept in azoted's memory only so that a dead card can be restarted; it is
// forgotten when the machine ends (Erase).
//
// A restart must get the key the volume was written with: an
// instance-store key that is no longer in memory (azoted restarted since
// the launch) is ErrEphemeralKeyGone, never a fresh key, which would hand
// the guest noise for its data.
func (s *Service) LaunchKey(v Record, restart bool) (*keymem.Buf, error) {
	if !v.Encrypted {
		return nil, nil
	}
	if v.Kind == api.VolumePersistent {
		k, err := s.unwrap(v)
		if err == nil {
			s.cfg.Event("VolumeKeyUse", "volume/"+v.ID, map[string]any{"kind": v.Kind, "purpose": "unwrapped for its card", "restart": restart})
		}
		return k, err
	}
	s.keyMu.Lock()
	if k, ok := s.ephemeral[v.ID]; ok {
		s.keyMu.Unlock()
		return keymem.Copy(k.Bytes())
	}
	if restart {
		s.keyMu.Unlock()
		return nil, ErrEphemeralKeyGone
	}
	k, err := fresh()
	if err != nil {
		s.keyMu.Unlock()
		return nil, err
	}
	kept, err := keymem.Copy(k.Bytes())
	if err != nil {
		s.keyMu.Unlock()
		k.Free()
		return nil, err
	}
	s.ephemeral[v.ID] = kept
	s.keyMu.Unlock()
	s.cfg.Event("VolumeKeyUse", "volume/"+v.ID, map[string]any{"kind": v.Kind, "purpose": "instance-store key made for this launch"})
	return k, nil
}

// unwrap returns the plaintext data key of persistent volume v: through
// the KMS (the volume's grant), or the host key for a volume not moved
// under KMS yet.
func (s *Service) unwrap(v Record) (*keymem.Buf, error) {
	if v.DataKey != nil {
		if s.cfg.DataKeys == nil {
			return nil, fmt.Errorf("volume %s: its data key is under KMS key %s, and this host has no KMS", v.ID, v.KMSKeyID)
		}
		k, err := s.cfg.DataKeys.Open(v.KMSKeyID, v.DataKey, v.ID)
		if err != nil {
			return nil, fmt.Errorf("volume %s: its KMS key %s: %w", v.ID, v.KMSKeyID, err)
		}
		if len(k.Bytes()) != KeyBytes {
			k.Free()
			return nil, fmt.Errorf("volume %s: its data key has %d bytes", v.ID, len(k.Bytes()))
		}
		return k, nil
	}
	key, err := keymem.New(KeyBytes)
	if err != nil {
		return nil, err
	}
	// The wrapped key is 64 bytes: GCM opens it straight into key.
	if p, err := s.cfg.Keys.UnwrapTo(keys.Volumes, key.Bytes(), v.WrappedKey, []byte(v.ID)); err != nil || len(p) != KeyBytes {
		key.Free()
		if err == nil {
			err = keywrap.ErrUnwrap
		}
		return nil, err
	}
	return key, nil
}

// fresh makes a random key in locked memory.
func fresh() (*keymem.Buf, error) {
	key, err := keymem.New(KeyBytes)
	if err != nil {
		return nil, err
	}
	if _, err := rand.Read(key.Bytes()); err != nil {
		key.Free()
		return nil, err
	}
	return key, nil
}

// KeepKey holds key as the instance-store key of volume id for this
// launch: one a restarted azoted recovered from the volume's live card.
// The service takes key over.
func (s *Service) KeepKey(v Record, key *keymem.Buf) {
	s.keyMu.Lock()
	if old, ok := s.ephemeral[v.ID]; ok {
		old.Free()
	}
	s.ephemeral[v.ID] = key
	s.keyMu.Unlock()
	s.cfg.Event("VolumeKeyUse", "volume/"+v.ID, map[string]any{"kind": v.Kind, "purpose": "instance-store key recovered from its live card after an azoted restart"})
}

// ForgetKey frees the instance-store key of volume id, if held.
func (s *Service) ForgetKey(id string) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if k, ok := s.ephemeral[id]; ok {
		k.Free()
		delete(s.ephemeral, id)
	}
}

// Erase ends the data of the instance-store volume id when the machine of
// instance instID ends: its key is forgotten and its blocks freed
// (crypto-erase; the next launch starts from zeros under a new key).
// Other volumes are left alone.
func (s *Service) Erase(id, instID string) {
	v, err := s.Get(id)
	if err != nil || v.Kind != api.VolumeInstanceStore {
		return
	}
	s.ForgetKey(v.ID)
	s.cfg.Event("CryptoErase", "volume/"+v.ID, map[string]any{"kind": v.Kind, "instanceId": instID, "reason": "instance-store key destroyed and file discarded"})
	if err := discardFile(s.File(v.ID), v.SizeBytes); err != nil {
		s.log.Warn("discarding an instance-store file", "volume", v.ID, "err", err)
	}
}

// MakeWhole readies the file of v for a launch: an instance-store file a
// crash left short (in the middle of a discard) is made its size again.
func (s *Service) MakeWhole(v Record) error {
	if v.Kind != api.VolumeInstanceStore {
		return nil
	}
	if fi, err := os.Stat(s.File(v.ID)); err == nil && fi.Size() != v.SizeBytes {
		return os.Truncate(s.File(v.ID), v.SizeBytes)
	}
	return nil
}

// discardFile frees the blocks of the file at path, leaving it size bytes
// long (reading zeros). Punching one hole keeps the size at every moment;
// where the filesystem cannot, it is truncated to zero and back.
func discardFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, size)
	if err == nil {
		return nil
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	return f.Truncate(size)
}

// MigrateKeys moves the data keys that the host key wraps (volumes made
// before volumes used KMS) under the account's default KMS volume key,
// one volume per transaction, each audited; the data itself is not
// touched, since the data key stays the same. A crash between the KMS
// call and the record update leaves the volume as it was, and the next
// start moves it again (its first grant stays, named after the volume).
func (s *Service) MigrateKeys() (int, error) {
	if s.cfg.DataKeys == nil {
		return 0, nil
	}
	var todo []Record
	err := s.db.View(func(tx store.Tx) error {
		all, err := allTx(tx)
		for _, v := range all {
			if v.WrappedKey != nil && v.DataKey == nil && v.State != api.VolumeDeleted {
				todo = append(todo, v)
			}
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, v := range todo {
		key, err := s.unwrap(v)
		if err != nil {
			return n, fmt.Errorf("volume %s: %w", v.ID, err)
		}
		arn, ct, err := s.cfg.DataKeys.Adopt(key.Bytes(), v.ID)
		key.Free()
		if err != nil {
			return n, fmt.Errorf("volume %s: %w", v.ID, err)
		}
		_, err = s.update(v.ID, func(_ store.Tx, cur *Record) error {
			cur.DataKey, cur.KMSKeyID, cur.WrappedKey = ct, arn, nil
			return nil
		})
		if err != nil {
			return n, err
		}
		s.cfg.Event("VolumeKeyMigrated", "volume/"+v.ID, map[string]any{"kmsKeyId": arn, "reason": "the data key wrapped by the host key is now under the default KMS volume key"})
		n++
	}
	return n, nil
}

// KeyUsable refuses a volume whose KMS key cannot be used now, saying
// why (the KMS's exception and sentence), so that a launch fails with
// the reason rather than in its card.
func (s *Service) KeyUsable(v Record) error {
	if v.DataKey == nil || s.cfg.DataKeys == nil {
		return nil
	}
	if err := s.cfg.DataKeys.Usable(v.KMSKeyID); err != nil {
		return refusal.New(ErrIncorrectState, "volume %s cannot be attached: %v", v.ID, err)
	}
	return nil
}
