package kms

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"slices"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/store"
)

// Data keys for azote's own services, as EBS uses KMS: a volume's data
// key is made under a KMS key the user may use, and only its ciphertext
// is kept with the volume; a grant lets the host decrypt it, for that
// volume alone (the grant's encryption-context constraint), for as long
// as the volume exists. Every call is authorised and audited like a call
// through the API, with the service named (kms:ViaService, invokedBy).

// HostPrincipal is the grantee of the grants azote's services make: the
// host acting for them.
const HostPrincipal = "compute.azote"

// DefaultVolumeAlias names the account's default key for volumes, made
// on first use, as EBS's aws/ebs.
const DefaultVolumeAlias = "alias/azote/volumes"

// DataKeyBytes bounds a service data key (a volume's XTS key is 64).
const DataKeyBytes = 64

// hostCaller is the host acting for a service.
func (s *Service) hostCaller() *api.Caller {
	return &api.Caller{Type: "AWSService", ARN: HostPrincipal, PrincipalID: HostPrincipal, AccountID: s.cfg.IAM.AccountID(), UserName: HostPrincipal}
}

// event records a call made for a service (Config.Event).
func (s *Service) event(c *api.Caller, name, keyID string, data map[string]any) {
	if s.cfg.Event != nil {
		s.cfg.Event(c, name, s.keyARN(keyID), data)
	}
}

// DataKey is a service data key: the KMS key's ARN, the ciphertext to
// keep, and the plaintext in locked memory (the caller frees it).
type DataKey struct {
	KeyARN     string
	Ciphertext []byte
	Plain      *keymem.Buf
}

// NewDataKey makes an n-byte data key for a resource of the service via,
// under the KMS key ref (DefaultVolumeAlias when ""), for the caller c:
// c must be allowed GenerateDataKeyWithoutPlaintext and CreateGrant on
// the key (kms:ViaService is via). The encryption context binds the key
// to its resource; a grant named grantName lets the host decrypt it with
// exactly that context.
func (s *Service) NewDataKey(c *api.Caller, via, ref string, enc map[string]string, n int, grantName string) (DataKey, error) {
	if n < 1 || n > DataKeyBytes {
		return DataKey{}, kmsErr(api.CodeKMSValidation, "a data key of %d bytes", n)
	}
	if ref == "" {
		if err := s.ensureDefaultKey(via); err != nil {
			return DataKey{}, err
		}
		ref = DefaultVolumeAlias
	}
	plain, err := keymem.New(n)
	if err != nil {
		return DataKey{}, err
	}
	rand.Read(plain.Bytes())
	s.mu.Lock()
	defer s.mu.Unlock()
	var out DataKey
	var keyID string
	err = s.cfg.Store.Update(func(tx store.Tx) error {
		r, err := s.resolve(tx, ref, true)
		if err != nil {
			return err
		}
		gen := &call{caller: c, viaService: via}
		gen.setContext(enc)
		if err := s.authorize(inTx(tx), gen, "GenerateDataKeyWithoutPlaintext", r, enc); err != nil {
			return err
		}
		grant := &call{caller: c, viaService: via}
		grant.set("kms:GrantOperations", "Decrypt", "RetireGrant")
		grant.set("kms:GranteePrincipal", HostPrincipal)
		grant.set("kms:GrantIsForAWSResource", "true")
		if err := s.authorize(inTx(tx), grant, "CreateGrant", r, nil); err != nil {
			return err
		}
		k := r.key
		if err := usable(&k); err != nil {
			return err
		}
		if k.Spec != api.KeySpecSymmetricDefault || k.Usage != api.KeyUsageEncryptDecrypt {
			return kmsErr(api.CodeKMSInvalidKeyUsage, "key %s (%s, %s) cannot make data keys: it must be a symmetric encryption key", k.ID, k.Spec, k.Usage)
		}
		ct, err := s.seal(&k, plain.Bytes(), enc)
		if err != nil {
			return err
		}
		keyID = k.ID
		out = DataKey{KeyARN: s.keyARN(k.ID), Ciphertext: ct}
		return s.putServiceGrant(tx, k.ID, via, grantName, enc)
	})
	if err != nil {
		plain.Free()
		return DataKey{}, err
	}
	out.Plain = plain
	s.event(c, "GenerateDataKeyWithoutPlaintext", keyID, map[string]any{"encryptionContext": enc, "invokedBy": via})
	s.event(c, "CreateGrant", keyID, map[string]any{"granteePrincipal": HostPrincipal, "operations": []string{"Decrypt", "RetireGrant"},
		"constraints": map[string]any{"encryptionContextEquals": enc}, "name": grantName, "invokedBy": via})
	return out, nil
}

// putServiceGrant records the host's grant for one resource's data key.
func (s *Service) putServiceGrant(tx store.Tx, keyID, via, name string, enc map[string]string) error {
	g := grantRecord{ID: randomHex(32), KeyID: keyID, Token: randomHex(48), Name: name, Grantee: HostPrincipal, Retiring: HostPrincipal,
		Operations: []string{"Decrypt", "RetireGrant"}, Constraints: &api.GrantConstraints{EncryptionContextEquals: enc},
		Issuer: s.cfg.IAM.AccountID(), Created: s.now(), ForService: via}
	return tx.Create(GrantsTable, g.ID, &g)
}

// AdoptDataKey puts an existing data key (one wrapped by the host key
// before volumes used KMS) under the default key for via, with the
// host's grant, as azoted itself.
func (s *Service) AdoptDataKey(via string, plain []byte, enc map[string]string, grantName string) (DataKey, error) {
	if err := s.ensureDefaultKey(via); err != nil {
		return DataKey{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out DataKey
	var keyID string
	err := s.cfg.Store.Update(func(tx store.Tx) error {
		r, err := s.resolve(tx, DefaultVolumeAlias, true)
		if err != nil {
			return err
		}
		k := r.key
		if err := usable(&k); err != nil {
			return err
		}
		ct, err := s.seal(&k, plain, enc)
		if err != nil {
			return err
		}
		keyID = k.ID
		out = DataKey{KeyARN: s.keyARN(k.ID), Ciphertext: ct}
		return s.putServiceGrant(tx, k.ID, via, grantName, enc)
	})
	if err == nil {
		s.event(s.hostCaller(), "Encrypt", keyID, map[string]any{"encryptionContext": enc, "invokedBy": via,
			"reason": "a data key wrapped by the host key moved under the default KMS key"})
	}
	return out, err
}

// DecryptDataKey decrypts a service data key as the host, through the
// resource's grant, into locked memory. A key that is disabled, pending
// deletion or deleted refuses with its exception, which names why.
func (s *Service) DecryptDataKey(via, keyARN string, ciphertext []byte, enc map[string]string) (*keymem.Buf, error) {
	host := s.hostCaller()
	cl := &call{caller: host, viaService: via}
	k, p, err := s.open(cl, keyARN, "Decrypt", ciphertext, enc)
	if err != nil {
		return nil, err
	}
	defer clear(p)
	buf, err := keymem.Copy(p)
	if err != nil {
		return nil, err
	}
	s.event(host, "Decrypt", k.ID, map[string]any{"encryptionContext": enc, "invokedBy": via})
	return buf, nil
}

// RetireDataKeyGrant ends the host's grant named grantName on the key
// keyARN (the resource is gone).
func (s *Service) RetireDataKeyGrant(via, keyARN, grantName string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keyID string
	err := s.cfg.Store.Update(func(tx store.Tx) error {
		r, err := s.resolve(tx, keyARN, false)
		if api.IsCode(err, api.CodeKMSNotFound) {
			return nil // the key and its grants are gone already
		}
		if err != nil {
			return err
		}
		keyID = r.key.ID
		gs, err := grantsWhere(tx, func(g *grantRecord) bool {
			return g.KeyID == r.key.ID && g.Name == grantName && g.Grantee == HostPrincipal && g.ForService == via
		})
		if err != nil {
			return err
		}
		for _, g := range gs {
			if err := tx.Delete(GrantsTable, g.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && keyID != "" {
		s.event(s.hostCaller(), "RetireGrant", keyID, map[string]any{"name": grantName, "invokedBy": via})
	}
	return err
}

// ensureDefaultKey makes the account's default volume key and its alias
// if they do not exist yet.
func (s *Service) ensureDefaultKey(via string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var made string
	err := s.cfg.Store.Update(func(tx store.Tx) error {
		var a aliasRecord
		err := tx.Get(AliasesTable, DefaultVolumeAlias, &a)
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		id := newKeyID()
		k := keyRecord{ID: id, Created: s.now(), Description: "Default key that protects my azote volumes when no other key is given",
			Usage: api.KeyUsageEncryptDecrypt, Spec: api.KeySpecSymmetricDefault, Origin: api.OriginAWSKMS,
			State: api.KeyStateEnabled, Policy: s.servicePolicy(via), ForService: via}
		if err := s.addVersion(&k, ""); err != nil {
			return err
		}
		if err := tx.Create(KeysTable, id, &k); err != nil {
			return err
		}
		made = id
		now := s.now()
		return tx.Create(AliasesTable, DefaultVolumeAlias, &aliasRecord{Name: DefaultVolumeAlias, KeyID: id, Created: now, Updated: now})
	})
	if err == nil && made != "" {
		s.event(s.hostCaller(), "CreateKey", made, map[string]any{"alias": DefaultVolumeAlias, "invokedBy": via})
		s.log.Info("kms: the default volume key was made", "key", made, "alias", DefaultVolumeAlias)
	}
	return err
}

// GrantsOf lists the names of the host's grants on key keyARN, for tests
// and for the volume owner's consistency checks.
func (s *Service) GrantsOf(keyARN string) ([]string, error) {
	return view(s, func(tx store.Tx) ([]string, error) {
		r, err := s.resolve(tx, keyARN, false)
		if err != nil {
			return nil, err
		}
		gs, err := grantsWhere(tx, func(g *grantRecord) bool { return g.KeyID == r.key.ID && g.Grantee == HostPrincipal })
		var names []string
		for _, g := range gs {
			names = append(names, g.Name)
		}
		slices.Sort(names)
		return names, err
	})
}

// KeyUsable refuses a key that cannot decrypt now: gone
// (NotFoundException), disabled (DisabledException), pending deletion
// or import (KMSInvalidStateException).
func (s *Service) KeyUsable(keyARN string) error {
	k, err := view(s, func(tx store.Tx) (keyRecord, error) {
		r, err := s.resolve(tx, keyARN, false)
		return r.key, err
	})
	if err != nil {
		return err
	}
	return usable(&k)
}

// servicePolicy is the key policy of a service's default key, as AWS's
// aws/ebs: everyone of the account may use it through the service alone
// (kms:ViaService), and read its metadata directly; nobody may change,
// disable or delete it.
func (s *Service) servicePolicy(via string) string {
	acct := s.cfg.IAM.AccountID()
	doc := map[string]any{
		"Version": "2012-10-17",
		"Id":      "auto-azote-volumes",
		"Statement": []any{
			map[string]any{
				"Sid":       "Allow access through azote volumes for all principals in the account that are authorized to use them",
				"Effect":    "Allow",
				"Principal": map[string]any{"AWS": "*"},
				"Action":    []string{"kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:DescribeKey"},
				"Resource":  "*",
				"Condition": map[string]any{"StringEquals": map[string]any{"kms:CallerAccount": acct, "kms:ViaService": via}},
			},
			map[string]any{
				"Sid":       "Allow direct access to key metadata to the account",
				"Effect":    "Allow",
				"Principal": map[string]any{"AWS": api.MakeARN("iam", acct, "root")},
				"Action":    []string{"kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant"},
				"Resource":  "*",
			},
		},
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	return string(b)
}
