package volumes

import (
	"crypto/rand"
	"os"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/keywrap"
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

// unwrap returns the plaintext data key of persistent volume v.
func (s *Service) unwrap(v Record) (*keymem.Buf, error) {
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
