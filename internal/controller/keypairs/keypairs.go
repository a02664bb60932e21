package keypairs

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/store"
)

// Table is the store table of key pairs (by id).
const Table = "key_pairs"

// Refusals of this package.
var (
	ErrNotFound = errors.New("key pair not found")
	// ErrInvalidFormat: the material is not one OpenSSH public key.
	ErrInvalidFormat = errors.New("invalid key format")
	// ErrUnsupportedType: a key other than ed25519 or RSA of at least
	// api.MinRSABits bits.
	ErrUnsupportedType = errors.New("unsupported key type")
)

// MaxPublicKeyMaterial bounds an imported key: an RSA key of MaxRSABits
// in authorized_keys form, with a comment, is well under it.
const MaxPublicKeyMaterial = 8 << 10

// MaxRSABits bounds an imported RSA modulus, so that no caller makes
// every later verification with the key slow.
const MaxRSABits = 16384

// Service is the owner of key pair records.
type Service struct {
	store store.Store
	now   func() time.Time

	// mu serialises changes, so that the name check and the write of a
	// new pair are one step even on a store whose transactions retry.
	mu sync.Mutex
}

// New returns the owner of the key pairs in st.
func New(st store.Store) *Service {
	return &Service{store: st, now: func() time.Time { return time.Now().UTC() }}
}

// Import records the public key of a pair the caller keeps.
func (s *Service) Import(req api.ImportKeyPairRequest) (api.KeyPair, error) {
	if err := validate(req.KeyName, req.Tags); err != nil {
		return api.KeyPair{}, err
	}
	pub, err := ParsePublicKey(req.PublicKeyMaterial)
	if err != nil {
		return api.KeyPair{}, err
	}
	kp := api.KeyPair{KeyName: req.KeyName, PublicKey: authorized(pub)}
	switch pub.Type() {
	case ssh.KeyAlgoED25519:
		kp.KeyType, kp.KeyFingerprint = api.KeyTypeED25519, ed25519Fingerprint(pub)
	case ssh.KeyAlgoRSA:
		kp.KeyType = api.KeyTypeRSA
		rk := pub.(ssh.CryptoPublicKey).CryptoPublicKey().(*rsa.PublicKey)
		if kp.KeyFingerprint, err = importedRSAFingerprint(rk); err != nil {
			return api.KeyPair{}, err
		}
	}
	return s.put(kp, req.Tags)
}

// Create makes a new pair and returns its private key, once: only the
// public key is kept.
func (s *Service) Create(req api.CreateKeyPairRequest) (api.CreateKeyPairResponse, error) {
	if err := validate(req.KeyName, req.Tags); err != nil {
		return api.CreateKeyPairResponse{}, err
	}
	kt := req.KeyType
	if kt == "" {
		kt = api.KeyTypeED25519
	}
	var priv any
	var block *pem.Block
	kp := api.KeyPair{KeyName: req.KeyName, KeyType: kt, Created: true}
	switch kt {
	case api.KeyTypeED25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return api.CreateKeyPairResponse{}, err
		}
		// OpenSSH's own format: the only PEM form ssh reads an ed25519
		// key in (EC2 answers the same).
		if block, err = ssh.MarshalPrivateKey(k, req.KeyName); err != nil {
			return api.CreateKeyPairResponse{}, err
		}
		priv = k
	case api.KeyTypeRSA:
		k, err := rsa.GenerateKey(rand.Reader, api.MinRSABits)
		if err != nil {
			return api.CreateKeyPairResponse{}, err
		}
		// PKCS#1, as EC2's "pem" format: ssh reads it, and openssl can
		// check the fingerprint from it.
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
		if kp.KeyFingerprint, err = createdRSAFingerprint(k); err != nil {
			return api.CreateKeyPairResponse{}, err
		}
		priv = k
	default:
		return api.CreateKeyPairResponse{}, refusal.New(refusal.ErrInvalidParameter, "key type %q: want %s or %s", kt, api.KeyTypeED25519, api.KeyTypeRSA)
	}
	pub, err := publicOf(priv)
	if err != nil {
		return api.CreateKeyPairResponse{}, err
	}
	kp.PublicKey = authorized(pub)
	if kt == api.KeyTypeED25519 {
		kp.KeyFingerprint = ed25519Fingerprint(pub)
	}
	kp, err = s.put(kp, req.Tags)
	if err != nil {
		return api.CreateKeyPairResponse{}, err
	}
	return api.CreateKeyPairResponse{KeyPair: kp, KeyMaterial: string(pem.EncodeToMemory(block))}, nil
}

// put stores a new pair under a new id, its name unique.
func (s *Service) put(kp api.KeyPair, tags map[string]string) (api.KeyPair, error) {
	kp.ID, kp.Tags, kp.CreatedAt = api.NewID(api.KeyPairIDPrefix), tags, s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.store.Update(func(tx store.Tx) error {
		all, err := store.All[api.KeyPair](tx, Table)
		if err != nil {
			return err
		}
		for _, o := range all {
			if o.KeyName == kp.KeyName {
				return refusal.New(refusal.ErrNameInUse, "a key pair named %q exists (%s)", kp.KeyName, o.ID)
			}
		}
		return tx.Create(Table, kp.ID, &kp)
	})
	if err != nil {
		return api.KeyPair{}, err
	}
	return kp, nil
}

// List returns every key pair, oldest first.
func (s *Service) List() ([]api.KeyPair, error) {
	var all []api.KeyPair
	err := s.store.View(func(tx store.Tx) error {
		var err error
		all, err = store.All[api.KeyPair](tx, Table)
		return err
	})
	sort.Slice(all, func(i, j int) bool { return all[i].CreatedAt.Before(all[j].CreatedAt) })
	if all == nil {
		all = []api.KeyPair{}
	}
	return all, err
}

// Resolve finds a key pair by id or by name.
func (s *Service) Resolve(ref string) (api.KeyPair, error) {
	var kp api.KeyPair
	err := s.store.View(func(tx store.Tx) error {
		if err := tx.Get(Table, ref, &kp); err == nil || !errors.Is(err, store.ErrNotFound) {
			return err
		}
		all, err := store.All[api.KeyPair](tx, Table)
		if err != nil {
			return err
		}
		for _, o := range all {
			if o.KeyName == ref {
				kp = o
				return nil
			}
		}
		return refusal.New(ErrNotFound, "no key pair %q", ref)
	})
	return kp, err
}

// Delete removes the key pair id. Instances launched with it keep the
// public key they were launched with, as EC2's do.
func (s *Service) Delete(id string) (api.KeyPair, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var kp api.KeyPair
	err := s.store.Update(func(tx store.Tx) error {
		if err := tx.Get(Table, id, &kp); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return refusal.New(ErrNotFound, "no key pair %q", id)
			}
			return err
		}
		return tx.Delete(Table, id)
	})
	return kp, err
}

// ParsePublicKey reads one OpenSSH public key (authorized_keys form, no
// options) and refuses any type but ed25519 and RSA of api.MinRSABits to
// MaxRSABits bits.
func ParsePublicKey(material string) (ssh.PublicKey, error) {
	if len(material) > MaxPublicKeyMaterial {
		return nil, refusal.New(ErrInvalidFormat, "public key material of %d bytes: at most %d", len(material), MaxPublicKeyMaterial)
	}
	pub, _, opts, rest, err := ssh.ParseAuthorizedKey([]byte(material))
	if err != nil {
		return nil, refusal.New(ErrInvalidFormat, "public key material: not an OpenSSH public key (\"ssh-ed25519 AAAA… comment\")")
	}
	if len(opts) > 0 || strings.TrimSpace(string(rest)) != "" {
		return nil, refusal.New(ErrInvalidFormat, "public key material: exactly one key, without authorized_keys options")
	}
	switch pub.Type() {
	case ssh.KeyAlgoED25519:
		return pub, nil
	case ssh.KeyAlgoRSA:
		cp, ok := pub.(ssh.CryptoPublicKey)
		if !ok {
			return nil, refusal.New(ErrInvalidFormat, "public key material: unreadable RSA key")
		}
		rk, ok := cp.CryptoPublicKey().(*rsa.PublicKey)
		if !ok {
			return nil, refusal.New(ErrInvalidFormat, "public key material: unreadable RSA key")
		}
		if bits := rk.N.BitLen(); bits < api.MinRSABits || bits > MaxRSABits {
			return nil, refusal.New(ErrUnsupportedType, "an RSA key of %d bits: %d to %d are accepted", bits, api.MinRSABits, MaxRSABits)
		}
		return pub, nil
	}
	return nil, refusal.New(ErrUnsupportedType, "a %s key: only ed25519 and RSA (at least %d bits) are accepted", pub.Type(), api.MinRSABits)
}

// validate checks a new pair's name and tags.
func validate(name string, tags map[string]string) error {
	if name == "" {
		return refusal.New(refusal.ErrInvalidParameter, "key name: a name is required")
	}
	if !api.ValidName(name) {
		return refusal.New(refusal.ErrInvalidName, "key name %q: %s", name, api.NameRule)
	}
	if e := api.ValidateTags(tags); e != nil {
		return e
	}
	return nil
}

// authorized is a key's authorized_keys form without a comment.
func authorized(pub ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}
