package iam

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/iam/policy"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/store"
)

// sealer protects IAM's secrets at rest under the keys.IAM wrapping key
// (the host key; later the KMS).
type sealer struct{ w keys.Wrapper }

func (s sealer) Wrap(plaintext, context []byte) ([]byte, error) {
	return s.w.Wrap(keys.IAM, plaintext, context)
}

func (s sealer) Unwrap(wrapped, context []byte) ([]byte, error) {
	return s.w.Unwrap(keys.IAM, wrapped, context)
}

// Service is the IAM of one account.
type Service struct {
	st        store.Store
	seal      sealer
	now       func() time.Time
	accountID string // fixed at creation; read on every request

	// tokens seals session tokens; its key is stored sealed in tMeta.
	tokens cipher.AEAD

	// instanceLifetime overrides InstanceCredentialLifetime (ns; 0: not).
	instanceLifetime atomic.Int64

	// gen counts IAM writes; caches keyed by it never serve stale
	// permissions.
	gen atomic.Uint64

	mu sync.Mutex
	// secrets caches unsealed access-key secrets by key id.
	secrets map[string]cachedKey
	// identities caches the resolved identity policies of a principal.
	identities map[string]cachedPolicies

	// mfaMu serialises MFA verification so a code cannot be accepted
	// twice by two concurrent requests.
	mfaMu sync.Mutex
}

type cachedKey struct {
	gen    uint64
	key    api.AccessKey
	user   api.User
	secret string
}

type cachedPolicies struct {
	gen      uint64
	policies []policy.Named
}

// Open loads (or on first start creates) the account of the host.
func Open(st store.Store, w keys.Wrapper, region string, now func() time.Time) (*Service, error) {
	if now == nil {
		now = time.Now
	}
	seal := sealer{w}
	s := &Service{st: st, seal: seal, now: now, secrets: map[string]cachedKey{}, identities: map[string]cachedPolicies{}}
	err := st.Update(func(tx store.Tx) error {
		var a Account
		switch err := tx.Get(tAccount, "account", &a); {
		case errors.Is(err, store.ErrNotFound):
			id, err := randomDigits(12)
			if err != nil {
				return err
			}
			a = Account{ID: id, Region: region, CreatedAt: now().UTC()}
			if err := tx.Put(tAccount, "account", a); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		var sealed []byte
		switch err := tx.Get(tMeta, "token-key", &sealed); {
		case errors.Is(err, store.ErrNotFound):
			key := make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				return err
			}
			if sealed, err = seal.Wrap(key, []byte("azote-sts-token-key")); err != nil {
				return err
			}
			clear(key)
			if err := tx.Put(tMeta, "token-key", sealed); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		key, err := seal.Unwrap(sealed, []byte("azote-sts-token-key"))
		if err != nil {
			return fmt.Errorf("iam: session token key: %w", err)
		}
		defer clear(key)
		block, err := aes.NewCipher(key)
		if err != nil {
			return err
		}
		if s.tokens, err = cipher.NewGCM(block); err != nil {
			return err
		}
		s.accountID = a.ID
		return s.bindStoredTrust(tx)
	})
	if err != nil {
		return nil, err
	}
	a, err := s.Account()
	if err != nil {
		return nil, err
	}
	s.accountID = a.ID
	return s, nil
}

// Account returns the account record.
func (s *Service) Account() (Account, error) {
	var a Account
	err := s.st.View(func(tx store.Tx) error { return tx.Get(tAccount, "account", &a) })
	return a, err
}

// AccountID is the 12-digit account id.
func (s *Service) AccountID() string { return s.accountID }

func (s *Service) arn(service, resource string) string {
	return api.MakeARN(service, s.AccountID(), resource)
}

// RootARN is the ARN of the account root.
func (s *Service) RootARN() string { return s.arn("iam", "root") }

// update runs fn in a write transaction and invalidates the caches.
func (s *Service) update(fn func(tx store.Tx) error) error {
	err := s.st.Update(fn)
	s.gen.Add(1)
	return err
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9+=,.@_-]{1,64}$`)

func checkName(kind, name string) error {
	if !nameRE.MatchString(name) {
		return api.Errorf(api.CodeInvalidName, "%s name %q: 1-64 characters of letters, digits and +=,.@_-", kind, shown(name))
	}
	return nil
}

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// newID returns prefix followed by n random characters (AWS unique-id
// style: AIDA users, AGPA groups, AROA roles, ANPA policies, AKIA keys,
// ASIA session keys).
func newID(prefix string, n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return prefix + string(b), nil
}

func newSecret() (string, error) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	b := make([]byte, 40)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = alphabet[b[i]&63]
	}
	return string(b), nil
}

func randomDigits(n int) (string, error) {
	out := make([]byte, n)
	for i := range out {
		d, err := rand.Int(rand.Reader, big.NewInt(10))
		if err != nil {
			return "", err
		}
		out[i] = byte('0' + d.Int64())
	}
	if out[0] == '0' {
		out[0] = '1'
	}
	return string(out), nil
}

func notFound(kind, name string) error {
	return api.Errorf(api.CodeNoSuchEntity, "%s %s does not exist", kind, name)
}

func exists(kind, name string) error {
	return api.Errorf(api.CodeEntityAlreadyExists, "%s %s already exists", kind, name)
}
