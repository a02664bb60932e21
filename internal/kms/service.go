package kms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/iam"
	"github.com/azote/azote/internal/iam/policy"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/store"
)

// Store tables of the KMS.
const (
	KeysTable    = "kms_keys"
	AliasesTable = "kms_aliases"
	GrantsTable  = "kms_grants"
)

// IAM is what the KMS asks of the IAM: identity policies evaluated
// together with a key policy, and identity policies alone for the
// actions on no key (CreateKey, ListKeys, GenerateRandom).
type IAM interface {
	AuthorizeKey(c *api.Caller, action, keyARN string, extra map[string][]string, keyPolicy *policy.Document) iam.KeyDecision
	Authorize(c *api.Caller, action, resource string, extra map[string][]string, resourcePolicies []policy.Named) iam.Decision
	AccountID() string
}

// Config configures the KMS.
type Config struct {
	Store  store.Store
	Keys   keys.Wrapper // wraps key material under keys.KMS (the host root key)
	IAM    IAM
	Region string
	Log    *slog.Logger
	Now    func() time.Time
	// Event, when set, records the calls the KMS makes for azote's
	// services (volumes' data keys and grants) in the audit trail, as
	// the gateway records those made through the API.
	Event func(c *api.Caller, name, keyARN string, data map[string]any)
}

// Service is the KMS: the owner of KMS keys, aliases and grants.
type Service struct {
	cfg Config
	log *slog.Logger

	// mu serialises changes, so that checks and writes are one step even
	// on a store whose transactions retry.
	mu sync.Mutex

	// cache holds unwrapped material by key id and version: the AEAD of
	// a symmetric key (its round keys), the bytes of the others in
	// locked memory. A key's entries go when it is disabled, deleted or
	// its material is replaced.
	cacheMu sync.Mutex
	cache   map[materialRef]*unwrapped
	// policies caches parsed key policies by their text.
	policies sync.Map // string → *policy.Document
	records  recordCache
}

// recordCache keeps the last decoding of each key record with the bytes
// it came from, so that a call reading a key whose record has not changed
// copies it instead of decoding its JSON again (the record carries the
// key policy and the wrapped material of every version: decoding it was
// a tenth of azoted's CPU under bench/kms). The store stays the truth: a
// record is used only when its stored bytes equal the cached ones, so a
// write by any path, a rolled-back transaction or another process cannot
// make it stale. It holds nothing the store does not (material only
// wrapped).
type recordCache struct {
	mu      sync.Mutex
	entries map[string]*cachedRecord
}

type cachedRecord struct {
	raw []byte
	rec keyRecord
}

// recordCacheSize bounds the cache; past it, an arbitrary entry goes.
const recordCacheSize = 4096

// decoder returns what tx.Get decodes key id's record with into k.
func (c *recordCache) decoder(id string, k *keyRecord) json.Unmarshaler {
	return &recordDecoder{c: c, id: id, k: k}
}

type recordDecoder struct {
	c  *recordCache
	id string
	k  *keyRecord
}

func (d *recordDecoder) UnmarshalJSON(raw []byte) error {
	c := d.c
	c.mu.Lock()
	e, ok := c.entries[d.id]
	c.mu.Unlock()
	if ok && bytes.Equal(e.raw, raw) {
		*d.k = e.rec.clone()
		return nil
	}
	var k keyRecord
	if err := json.Unmarshal(raw, &k); err != nil {
		return err
	}
	*d.k = k.clone()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]*cachedRecord{}
	}
	if _, ok := c.entries[d.id]; !ok && len(c.entries) >= recordCacheSize {
		for victim := range c.entries {
			delete(c.entries, victim)
			break
		}
	}
	c.entries[d.id] = &cachedRecord{raw: bytes.Clone(raw), rec: k}
	return nil
}

// clone copies k so that a caller changing the copy's tags, versions or
// import state changes nothing another caller holds.
func (k keyRecord) clone() keyRecord {
	k.Tags = maps.Clone(k.Tags)
	k.Versions = slices.Clone(k.Versions)
	for i := range k.Versions {
		k.Versions[i].Wrapped = slices.Clone(k.Versions[i].Wrapped)
	}
	if k.Import != nil {
		imp := *k.Import
		imp.Token = slices.Clone(imp.Token)
		imp.Wrapped = slices.Clone(imp.Wrapped)
		k.Import = &imp
	}
	return k
}

type materialRef struct {
	key     string
	version uint32
}

type unwrapped struct {
	aead cipher.AEAD
	buf  *keymem.Buf
	n    int // bytes of material in buf
}

// New returns the KMS over cfg's store.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: cfg.Log, cache: map[materialRef]*unwrapped{}}
}

// Close forgets every unwrapped key.
func (s *Service) Close() {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	for ref, m := range s.cache {
		m.free()
		delete(s.cache, ref)
	}
}

func (m *unwrapped) free() {
	if m.buf != nil {
		m.buf.Free()
	}
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

// keyRecord is a KMS key as stored. Its material exists only wrapped
// under the host root key (Versions[i].Wrapped).
type keyRecord struct {
	ID          string            `json:"id"`
	Created     time.Time         `json:"created"`
	Description string            `json:"description"`
	Usage       string            `json:"usage"`
	Spec        string            `json:"spec"`
	Origin      string            `json:"origin"`
	State       string            `json:"state"`
	Policy      string            `json:"policy"`
	Tags        map[string]string `json:"tags,omitempty"`
	// Deletion is when a key pending deletion is deleted; Window its
	// waiting period in days.
	Deletion time.Time `json:"deletion,omitzero"`
	Window   int32     `json:"window,omitempty"`
	// Rotation: automatic rotation every RotationDays once enabled.
	RotationEnabled bool      `json:"rotation_enabled,omitempty"`
	RotationDays    int32     `json:"rotation_days,omitempty"`
	NextRotation    time.Time `json:"next_rotation,omitzero"`
	// Versions are the key's material, oldest first; the last encrypts.
	Versions []keyVersion `json:"versions,omitempty"`
	// Import is the pending import of an EXTERNAL key.
	Import *importState `json:"import,omitempty"`
	// ValidTo is when imported material expires (zero: never).
	ValidTo time.Time `json:"valid_to,omitzero"`
	// ForService names the azote service a key is managed for
	// (alias/azote/volumes): its grants are for an AWS resource.
	ForService string `json:"for_service,omitempty"`
}

type keyVersion struct {
	// MaterialID identifies the material (KeyMaterialId), hex.
	MaterialID string    `json:"material_id"`
	Created    time.Time `json:"created"`
	Wrapped    []byte    `json:"wrapped"`
	// Rotation is how the version came: "" for the first,
	// AUTOMATIC or ON_DEMAND after.
	Rotation string `json:"rotation,omitempty"`
}

type importState struct {
	Token      []byte    `json:"token"`
	Wrapped    []byte    `json:"wrapped"` // the wrapping private key, wrapped
	Algorithm  string    `json:"algorithm"`
	KeySpec    string    `json:"key_spec"`
	ValidUntil time.Time `json:"valid_until"`
}

type aliasRecord struct {
	Name    string    `json:"name"`
	KeyID   string    `json:"key_id"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

type grantRecord struct {
	ID          string                `json:"id"`
	KeyID       string                `json:"key_id"`
	Token       string                `json:"token"`
	Name        string                `json:"name,omitempty"`
	Grantee     string                `json:"grantee"`
	Retiring    string                `json:"retiring,omitempty"`
	Operations  []string              `json:"operations"`
	Constraints *api.GrantConstraints `json:"constraints,omitempty"`
	Issuer      string                `json:"issuer"` // the account
	Created     time.Time             `json:"created"`
	ForService  string                `json:"for_service,omitempty"`
}

// kmsErr is an error of the KMS protocol, named by its exception.
func kmsErr(code api.Code, format string, args ...any) *api.Error {
	return api.Errorf(code, format, args...)
}

// keyARN is the ARN of key id.
func (s *Service) keyARN(id string) string {
	return api.ARN{Service: api.KMSService, Region: s.cfg.Region, Account: s.cfg.IAM.AccountID(), Resource: "key/" + id}.String()
}

func (s *Service) aliasARN(name string) string {
	return api.ARN{Service: api.KMSService, Region: s.cfg.Region, Account: s.cfg.IAM.AccountID(), Resource: name}.String()
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// aliasRE is an alias name as KMS allows it.
var aliasRE = regexp.MustCompile(`^alias/[a-zA-Z0-9/_-]{1,250}$`)

// keyRef is a KeyId member resolved: the key, and the alias it named
// (for kms:RequestAlias), if any.
type keyRef struct {
	key   keyRecord
	alias string
}

// resolve finds the key a KeyId member names: key id, key ARN, and,
// where allowAlias, alias name or alias ARN.
func (s *Service) resolve(tx store.Tx, ref string, allowAlias bool) (keyRef, error) {
	if ref == "" {
		return keyRef{}, kmsErr(api.CodeKMSValidation, "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null")
	}
	if len(ref) > 2048 {
		return keyRef{}, kmsErr(api.CodeKMSValidation, "keyId is longer than 2048 characters")
	}
	id, alias := ref, ""
	if strings.HasPrefix(ref, "arn:") {
		a, err := api.ParseARN(ref)
		if err != nil || a.Service != api.KMSService {
			return keyRef{}, kmsErr(api.CodeKMSInvalidARN, "%q is not a valid KMS ARN", ref)
		}
		if a.Account != s.cfg.IAM.AccountID() || a.Region != s.cfg.Region {
			return keyRef{}, kmsErr(api.CodeKMSNotFound, "key '%s' does not exist", ref)
		}
		switch {
		case strings.HasPrefix(a.Resource, "key/"):
			id = strings.TrimPrefix(a.Resource, "key/")
		case strings.HasPrefix(a.Resource, "alias/"):
			alias = a.Resource
		default:
			return keyRef{}, kmsErr(api.CodeKMSInvalidARN, "%q is not a key or alias ARN", ref)
		}
	} else if strings.HasPrefix(ref, "alias/") {
		alias = ref
	}
	if alias != "" {
		if !allowAlias {
			return keyRef{}, kmsErr(api.CodeKMSNotFound, "this operation takes a key id or key ARN, not the alias %s", alias)
		}
		var a aliasRecord
		if err := tx.Get(AliasesTable, alias, &a); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return keyRef{}, kmsErr(api.CodeKMSNotFound, "Alias %s is not found.", s.aliasARN(alias))
			}
			return keyRef{}, err
		}
		id = a.KeyID
	}
	if !uuidRE.MatchString(id) {
		return keyRef{}, kmsErr(api.CodeKMSNotFound, "Invalid keyId '%s'", ref)
	}
	var k keyRecord
	if err := tx.Get(KeysTable, id, s.records.decoder(id, &k)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return keyRef{}, kmsErr(api.CodeKMSNotFound, "Key '%s' does not exist", s.keyARN(id))
		}
		return keyRef{}, err
	}
	return keyRef{key: k, alias: alias}, nil
}

// view runs fn in a read transaction.
func view[T any](s *Service, fn func(tx store.Tx) (T, error)) (T, error) {
	var out T
	err := s.cfg.Store.View(func(tx store.Tx) error {
		var err error
		out, err = fn(tx)
		return err
	})
	return out, err
}

// metadata is the KeyMetadata of k.
func (s *Service) metadata(k *keyRecord) api.KeyMetadata {
	m := api.KeyMetadata{
		AWSAccountId: s.cfg.IAM.AccountID(), KeyId: k.ID, Arn: s.keyARN(k.ID), CreationDate: api.EpochOf(k.Created),
		Enabled: k.State == api.KeyStateEnabled, Description: k.Description, KeyUsage: k.Usage, KeyState: k.State,
		Origin: k.Origin, KeyManager: "CUSTOMER", CustomerMasterKeySpec: k.Spec, KeySpec: k.Spec,
		EncryptionAlgorithms: encryptionAlgorithms(k), SigningAlgorithms: signingAlgorithms(k), MacAlgorithms: macAlgorithms(k),
	}
	if k.ForService != "" {
		m.KeyManager = "AWS"
	}
	if k.State == api.KeyStatePendingDeletion {
		m.DeletionDate = api.EpochOf(k.Deletion)
		w := k.Window
		m.PendingDeletionWindowInDays = &w
	}
	if k.Origin == api.OriginExternal {
		m.ExpirationModel = "KEY_MATERIAL_DOES_NOT_EXPIRE"
		if !k.ValidTo.IsZero() {
			m.ExpirationModel = "KEY_MATERIAL_EXPIRES"
			m.ValidTo = api.EpochOf(k.ValidTo)
		}
	}
	if n := len(k.Versions); n > 0 && k.Spec == api.KeySpecSymmetricDefault {
		m.CurrentKeyMaterialId = k.Versions[n-1].MaterialID
	}
	return m
}

// wrapContext binds wrapped material to its key and version.
func wrapContext(id string, version int) []byte {
	return []byte("kms key " + id + " version " + strconv.Itoa(version))
}

// materialOf returns the unwrapped material of version v of k, cached.
func (s *Service) materialOf(k *keyRecord, v int) (*unwrapped, error) {
	if v < 0 || v >= len(k.Versions) {
		return nil, fmt.Errorf("key %s has no material version %d", k.ID, v)
	}
	ref := materialRef{k.ID, uint32(v)}
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if m, ok := s.cache[ref]; ok {
		return m, nil
	}
	buf, err := keymem.New(len(k.Versions[v].Wrapped))
	if err != nil {
		return nil, err
	}
	p, err := s.cfg.Keys.UnwrapTo(keys.KMS, buf.Bytes(), k.Versions[v].Wrapped, wrapContext(k.ID, v))
	if err != nil {
		buf.Free()
		return nil, fmt.Errorf("key %s version %d: %w", k.ID, v, err)
	}
	m := &unwrapped{buf: buf, n: len(p)}
	if k.Spec == api.KeySpecSymmetricDefault {
		block, err := aes.NewCipher(p)
		if err == nil {
			m.aead, err = cipher.NewGCM(block)
		}
		if err != nil {
			buf.Free()
			return nil, err
		}
	}
	s.cache[ref] = m
	return m, nil
}

// bytes is the material's plaintext.
func (m *unwrapped) bytes() []byte { return m.buf.Bytes()[:m.n] }

// forget drops the cached material of key id.
func (s *Service) forget(id string) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	for ref, m := range s.cache {
		if ref.key == id {
			m.free()
			delete(s.cache, ref)
		}
	}
}

// keyPolicy parses (cached) a key's policy text.
func (s *Service) keyPolicy(text string) (*policy.Document, error) {
	if d, ok := s.policies.Load(text); ok {
		return d.(*policy.Document), nil
	}
	d, err := parseKeyPolicy(text)
	if err != nil {
		return nil, err
	}
	s.policies.Store(text, d)
	return d, nil
}

// parseKeyPolicy parses and validates a key policy, as KMS refuses one
// it cannot use.
func parseKeyPolicy(text string) (*policy.Document, error) {
	if len(text) > 32768 {
		return nil, kmsErr(api.CodeKMSMalformedPolicy, "the key policy is longer than 32768 bytes")
	}
	d, err := policy.Parse(keyPolicySids([]byte(text)))
	if err != nil {
		return nil, kmsErr(api.CodeKMSMalformedPolicy, "%v", err)
	}
	if err := d.Validate(policy.Resource); err != nil {
		return nil, kmsErr(api.CodeKMSMalformedPolicy, "%v", err)
	}
	return d, nil
}

// defaultPolicy is the key policy KMS gives a key created without one:
// the account (its IAM policies) may do everything with it.
func (s *Service) defaultPolicy() string {
	doc := map[string]any{
		"Version": "2012-10-17",
		"Id":      "key-default-1",
		"Statement": []any{map[string]any{
			"Sid":       "Enable IAM User Permissions",
			"Effect":    "Allow",
			"Principal": map[string]any{"AWS": api.MakeARN("iam", s.cfg.IAM.AccountID(), "root")},
			"Action":    "kms:*",
			"Resource":  "*",
		}},
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	return string(b)
}

// keyPolicySids returns the policy with each statement's Sid cut to its
// letters and digits: key policies, like other resource policies, allow
// Sids IAM refuses ("Enable IAM User Permissions", AWS's own default),
// and a Sid only names a statement. The text stored and returned is the
// caller's; anything that is not a policy is returned as it is, for the
// parser to refuse.
func keyPolicySids(text []byte) []byte {
	var doc map[string]json.RawMessage
	if json.Unmarshal(text, &doc) != nil {
		return text
	}
	raw, ok := doc["Statement"]
	if !ok {
		return text
	}
	var list []map[string]json.RawMessage
	single := false
	if json.Unmarshal(raw, &list) != nil {
		var one map[string]json.RawMessage
		if json.Unmarshal(raw, &one) != nil {
			return text
		}
		list, single = []map[string]json.RawMessage{one}, true
	}
	for _, st := range list {
		var sid string
		if r, ok := st["Sid"]; ok && json.Unmarshal(r, &sid) == nil {
			clean := strings.Map(func(r rune) rune {
				if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
					return r
				}
				return -1
			}, sid)
			st["Sid"], _ = json.Marshal(clean)
		}
	}
	var out []byte
	var err error
	if single {
		out, err = json.Marshal(list[0])
	} else {
		out, err = json.Marshal(list)
	}
	if err != nil {
		return text
	}
	doc["Statement"] = out
	if b, err := json.Marshal(doc); err == nil {
		return b
	}
	return text
}
