package iam

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/store"
)

// MaxKeysPerUser is IAM's limit: two keys make rotation possible without
// ever allowing a pile of forgotten ones.
const MaxKeysPerUser = 2

func keyContext(id string) []byte { return []byte("azote-access-key:" + id) }

// keyRecord is an access key as stored: its secret sealed by the host key.
type keyRecord struct {
	api.AccessKey
	Sealed []byte `json:"SealedSecret,omitempty"`
}

func (s *Service) userKeysTx(tx store.Tx, user string) ([]api.AccessKey, error) {
	var out []api.AccessKey
	err := tx.ForEach(tKeys, func(_ string, raw []byte) error {
		var k keyRecord
		if err := json.Unmarshal(raw, &k); err != nil {
			return err
		}
		if k.UserName == user {
			out = append(out, k.AccessKey)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, err
}

// CreateAccessKey makes a key for a user. Root never gets one.
func (s *Service) CreateAccessKey(user string) (api.NewAccessKey, error) {
	if user == "" || user == "root" {
		return api.NewAccessKey{}, api.Errorf(api.CodeRootAccessKeysDisabled, "root has no access keys: use an IAM user, or an MFA session for root")
	}
	id, err := newID("AKIA", 16)
	if err != nil {
		return api.NewAccessKey{}, err
	}
	secret, err := newSecret()
	if err != nil {
		return api.NewAccessKey{}, err
	}
	sealed, err := s.seal.Wrap([]byte(secret), keyContext(id))
	if err != nil {
		return api.NewAccessKey{}, err
	}
	k := keyRecord{AccessKey: api.AccessKey{AccessKeyID: id, UserName: user, Status: api.StatusActive, CreatedAt: s.now().UTC()}, Sealed: sealed}
	err = s.update(func(tx store.Tx) error {
		if _, err := s.getUserTx(tx, user); err != nil {
			return err
		}
		keys, err := s.userKeysTx(tx, user)
		if err != nil {
			return err
		}
		if len(keys) >= MaxKeysPerUser {
			return api.Errorf(api.CodeLimitExceeded, "user %s already has %d access keys; delete one first", user, len(keys))
		}
		return tx.Create(tKeys, id, k)
	})
	if err != nil {
		return api.NewAccessKey{}, err
	}
	return api.NewAccessKey{AccessKey: k.AccessKey, SecretAccessKey: secret}, nil
}

// ListAccessKeys lists a user's keys (never their secrets).
func (s *Service) ListAccessKeys(user string) ([]api.AccessKey, error) {
	var out []api.AccessKey
	err := s.st.View(func(tx store.Tx) error {
		if _, err := s.getUserTx(tx, user); err != nil {
			return err
		}
		var err error
		out, err = s.userKeysTx(tx, user)
		return err
	})
	return out, err
}

func readKeyTx(tx store.Tx, id string) (keyRecord, error) {
	var k keyRecord
	if err := tx.Get(tKeys, id, &k); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return k, notFound("access key", shown(id))
		}
		return k, err
	}
	return k, nil
}

// getKeyTx reads a key of user. The owner is always checked: a call is
// authorised on the user it names, so a key of anyone else is not
// there for it (an empty user matches no key).
func (s *Service) getKeyTx(tx store.Tx, user, id string) (keyRecord, error) {
	k, err := readKeyTx(tx, id)
	if err != nil {
		return k, err
	}
	if k.UserName != user {
		return keyRecord{}, notFound("access key", shown(id)+" of user "+shown(user))
	}
	return k, nil
}

// KeyOwner returns the user an access key belongs to.
func (s *Service) KeyOwner(id string) (string, error) {
	k, err := view(s, func(tx store.Tx) (keyRecord, error) { return readKeyTx(tx, id) })
	return k.UserName, err
}

// UpdateAccessKey sets a key Active or Inactive.
func (s *Service) UpdateAccessKey(user, id, status string) error {
	if status != api.StatusActive && status != api.StatusInactive {
		return api.Errorf(api.CodeInvalidParameter, "status %q: Active or Inactive", status)
	}
	return s.update(func(tx store.Tx) error {
		k, err := s.getKeyTx(tx, user, id)
		if err != nil {
			return err
		}
		k.Status = status
		return tx.Put(tKeys, id, k)
	})
}

// DeleteAccessKey removes a key for good.
func (s *Service) DeleteAccessKey(user, id string) error {
	return s.update(func(tx store.Tx) error {
		if _, err := s.getKeyTx(tx, user, id); err != nil {
			return err
		}
		return tx.Delete(tKeys, id)
	})
}

// RotateAccessKey makes a new key and deactivates the old one in one
// step; the old key is deleted later, once nothing uses it.
func (s *Service) RotateAccessKey(user, oldID string) (api.NewAccessKey, error) {
	if _, err := s.ListAccessKeys(user); err != nil {
		return api.NewAccessKey{}, err
	}
	var old keyRecord
	if err := s.st.View(func(tx store.Tx) error {
		var err error
		old, err = s.getKeyTx(tx, user, oldID)
		return err
	}); err != nil {
		return api.NewAccessKey{}, err
	}
	nk, err := s.CreateAccessKey(user)
	if err != nil {
		return api.NewAccessKey{}, fmt.Errorf("rotating %s: %w", old.AccessKeyID, err)
	}
	if err := s.UpdateAccessKey(user, oldID, api.StatusInactive); err != nil {
		return api.NewAccessKey{}, err
	}
	return nk, nil
}

// longTermKey resolves an access key id to its secret and owner. The
// answer is cached until the next IAM write.
func (s *Service) longTermKey(id string) (api.AccessKey, api.User, string, error) {
	gen := s.gen.Load()
	s.mu.Lock()
	c, ok := s.secrets[id]
	s.mu.Unlock()
	if ok && c.gen == gen {
		return c.key, c.user, c.secret, nil
	}
	if !strings.HasPrefix(id, "AKIA") {
		return api.AccessKey{}, api.User{}, "", errUnknownKey
	}
	var k keyRecord
	var u api.User
	err := s.st.View(func(tx store.Tx) error {
		if err := tx.Get(tKeys, id, &k); err != nil {
			return err
		}
		var err error
		u, err = s.getUserTx(tx, k.UserName)
		return err
	})
	if err != nil {
		return api.AccessKey{}, api.User{}, "", errUnknownKey
	}
	secret, err := s.seal.Unwrap(k.Sealed, keyContext(id))
	if err != nil {
		return api.AccessKey{}, api.User{}, "", fmt.Errorf("iam: access key %s: %w", id, err)
	}
	s.mu.Lock()
	if len(s.secrets) > 10000 {
		s.secrets = map[string]cachedKey{}
	}
	s.secrets[id] = cachedKey{gen: gen, key: k.AccessKey, user: u, secret: string(secret)}
	s.mu.Unlock()
	return k.AccessKey, u, string(secret), nil
}
