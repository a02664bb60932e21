package kms

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/audit"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/kms/material"
	"github.com/azote/azote/internal/store"
)

// Limits, as KMS has them.
const (
	maxDescription     = 8192
	maxTags            = 50
	minWindowDays      = 7
	maxWindowDays      = 30
	defaultWindowDays  = 30
	defaultRotation    = 365
	minRotation        = 90
	maxRotation        = 2560
	maxOnDemandRotates = 10
)

func unmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }

// newKeyID is a key id: a random UUID, as KMS's.
func newKeyID() string { return audit.NewUUID() }

func (s *Service) createKey(cl *call, req *api.CreateKeyRequest) (*api.CreateKeyResponse, error) {
	spec := req.KeySpec
	if spec == "" {
		spec = req.CustomerMasterKeySpec
	}
	if spec == "" {
		spec = api.KeySpecSymmetricDefault
	}
	if req.KeySpec != "" && req.CustomerMasterKeySpec != "" && req.KeySpec != req.CustomerMasterKeySpec {
		return nil, kmsErr(api.CodeKMSValidation, "KeySpec and CustomerMasterKeySpec differ")
	}
	usage := req.KeyUsage
	if usage == "" {
		usage = api.KeyUsageEncryptDecrypt
	}
	if err := material.ValidPair(material.Spec(spec), material.Usage(usage)); err != nil {
		if errors.Is(err, material.ErrUnsupported) {
			return nil, kmsErr(api.CodeKMSValidation, "key spec %s with key usage %s is not supported: %v", spec, usage, err)
		}
		return nil, kmsErr(api.CodeKMSValidation, "%v", err)
	}
	origin := req.Origin
	if origin == "" {
		origin = api.OriginAWSKMS
	}
	switch {
	case req.MultiRegion:
		return nil, kmsErr(api.CodeKMSUnsupported, "multi-Region keys are not supported: azote is one region")
	case req.CustomKeyStoreId != "" || req.XksKeyId != "" || origin == "AWS_CLOUDHSM" || origin == "EXTERNAL_KEY_STORE":
		return nil, kmsErr(api.CodeKMSUnsupported, "custom key stores are not supported")
	case origin != api.OriginAWSKMS && origin != api.OriginExternal:
		return nil, kmsErr(api.CodeKMSValidation, "Origin %q: want AWS_KMS or EXTERNAL", origin)
	}
	if len(req.Description) > maxDescription {
		return nil, kmsErr(api.CodeKMSValidation, "Description is longer than %d characters", maxDescription)
	}
	tags, err := tagMap(nil, req.Tags)
	if err != nil {
		return nil, err
	}
	for k, v := range tags {
		cl.set("aws:RequestTag/"+k, v)
	}
	if len(tags) > 0 {
		cl.set("aws:TagKeys", sortedKeys(tags)...)
	}
	cl.set("kms:KeySpec", spec)
	cl.set("kms:KeyUsage", usage)
	cl.set("kms:KeyOrigin", origin)
	if err := s.authorizeAccount(cl, "CreateKey"); err != nil {
		return nil, err
	}
	id := newKeyID()
	pol := req.Policy
	if pol == "" {
		pol = s.defaultPolicy()
	} else if !req.BypassPolicyLockoutSafetyCheck {
		if err := s.lockoutCheck(cl, id, pol); err != nil {
			return nil, err
		}
	} else if _, err := s.keyPolicy(pol); err != nil {
		return nil, err
	}
	k := keyRecord{ID: id, Created: s.now(), Description: req.Description, Usage: usage, Spec: spec, Origin: origin,
		State: api.KeyStateEnabled, Policy: pol, Tags: tags}
	if origin == api.OriginExternal {
		k.State = api.KeyStatePendingImport
	} else if err := s.addVersion(&k, ""); err != nil {
		return nil, err
	}
	cl.resources = append(cl.resources, s.keyARN(id))
	// One transaction: a key exists whole, with its material, or not at
	// all (a crash before it commits leaves nothing).
	if err := s.cfg.Store.Update(func(tx store.Tx) error { return tx.Create(KeysTable, id, &k) }); err != nil {
		return nil, err
	}
	s.log.Info("kms key created", "key", id, "spec", spec, "usage", usage, "origin", origin)
	return &api.CreateKeyResponse{KeyMetadata: s.metadata(&k)}, nil
}

// addVersion makes new material for k and appends it, wrapped.
func (s *Service) addVersion(k *keyRecord, rotation string) error {
	m, err := material.Generate(material.Spec(k.Spec))
	if err != nil {
		return err
	}
	defer clear(m)
	return s.appendMaterial(k, m, rotation)
}

// appendMaterial wraps m as k's next version.
func (s *Service) appendMaterial(k *keyRecord, m []byte, rotation string) error {
	v := len(k.Versions)
	wrapped, err := s.cfg.Keys.Wrap(keys.KMS, m, wrapContext(k.ID, v))
	if err != nil {
		return err
	}
	var mid [32]byte
	rand.Read(mid[:])
	k.Versions = append(k.Versions, keyVersion{MaterialID: hex.EncodeToString(mid[:]), Created: s.now(), Wrapped: wrapped, Rotation: rotation})
	return nil
}

// change resolves a key by id or ARN, authorises op on it, and stores
// what fn makes of it, in one transaction.
func (s *Service) change(cl *call, ref, op string, allowAlias bool, fn func(k *keyRecord) error) (keyRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out keyRecord
	err := s.cfg.Store.Update(func(tx store.Tx) error {
		r, err := s.resolve(tx, ref, allowAlias)
		if err != nil {
			return err
		}
		if err := s.authorize(inTx(tx), cl, op, r, nil); err != nil {
			return err
		}
		k := r.key
		if err := fn(&k); err != nil {
			return err
		}
		out = k
		return tx.Put(KeysTable, k.ID, &k)
	})
	return out, err
}

// read resolves a key and authorises op on it.
func (s *Service) read(cl *call, ref, op string, allowAlias bool, enc map[string]string) (keyRecord, error) {
	r, err := view(s, func(tx store.Tx) (keyRef, error) { return s.resolve(tx, ref, allowAlias) })
	if err != nil {
		return keyRecord{}, err
	}
	// Outside the read transaction (authorize says why).
	if err := s.authorize(s.cfg.Store.View, cl, op, r, enc); err != nil {
		return keyRecord{}, err
	}
	return r.key, nil
}

func (s *Service) describeKey(cl *call, req *api.KeyIDRequest) (*api.DescribeKeyResponse, error) {
	cl.grantTokens = req.GrantTokens
	k, err := s.read(cl, req.KeyId, "DescribeKey", true, nil)
	if err != nil {
		return nil, err
	}
	return &api.DescribeKeyResponse{KeyMetadata: s.metadata(&k)}, nil
}

func (s *Service) listKeys(cl *call, req *api.ListKeysRequest) (*api.ListKeysResponse, error) {
	if err := s.authorizeAccount(cl, "ListKeys"); err != nil {
		return nil, err
	}
	limit, err := pageLimit(req.Limit, 1000, 100)
	if err != nil {
		return nil, err
	}
	var ids []string
	err = s.cfg.Store.View(func(tx store.Tx) error {
		return tx.ForEach(KeysTable, func(key string, _ []byte) error {
			ids = append(ids, key)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(ids)
	page, next, err := paginate(ids, req.Marker, limit)
	if err != nil {
		return nil, err
	}
	out := &api.ListKeysResponse{Keys: []api.KeyListEntry{}, NextMarker: next, Truncated: next != ""}
	for _, id := range page {
		out.Keys = append(out.Keys, api.KeyListEntry{KeyId: id, KeyArn: s.keyARN(id)})
	}
	return out, nil
}

func (s *Service) updateKeyDescription(cl *call, req *api.UpdateKeyDescriptionRequest) (*struct{}, error) {
	if len(req.Description) > maxDescription {
		return nil, kmsErr(api.CodeKMSValidation, "Description is longer than %d characters", maxDescription)
	}
	_, err := s.change(cl, req.KeyId, "UpdateKeyDescription", false, func(k *keyRecord) error {
		if k.State == api.KeyStatePendingDeletion {
			return invalidState(k)
		}
		k.Description = req.Description
		return nil
	})
	return &struct{}{}, err
}

func invalidState(k *keyRecord) error {
	return kmsErr(api.CodeKMSInvalidState, "%s is %s", "key "+k.ID, k.State)
}

func (s *Service) enableKey(cl *call, req *api.KeyIDRequest) (*struct{}, error) {
	_, err := s.change(cl, req.KeyId, "EnableKey", false, func(k *keyRecord) error {
		switch k.State {
		case api.KeyStateEnabled:
		case api.KeyStateDisabled:
			k.State = api.KeyStateEnabled
		default:
			return invalidState(k)
		}
		return nil
	})
	return &struct{}{}, err
}

func (s *Service) disableKey(cl *call, req *api.KeyIDRequest) (*struct{}, error) {
	k, err := s.change(cl, req.KeyId, "DisableKey", false, func(k *keyRecord) error {
		switch k.State {
		case api.KeyStateDisabled:
		case api.KeyStateEnabled:
			k.State = api.KeyStateDisabled
		default:
			return invalidState(k)
		}
		return nil
	})
	if err == nil {
		s.forget(k.ID)
	}
	return &struct{}{}, err
}

func (s *Service) scheduleKeyDeletion(cl *call, req *api.ScheduleKeyDeletionRequest) (*api.ScheduleKeyDeletionResponse, error) {
	w := req.PendingWindowInDays
	if w == 0 {
		w = defaultWindowDays
	}
	if w < minWindowDays || w > maxWindowDays {
		return nil, kmsErr(api.CodeKMSValidation, "PendingWindowInDays %d: want %d to %d", w, minWindowDays, maxWindowDays)
	}
	cl.set("kms:ScheduleKeyDeletionPendingWindowInDays", itoa(w))
	k, err := s.change(cl, req.KeyId, "ScheduleKeyDeletion", false, func(k *keyRecord) error {
		if k.State == api.KeyStatePendingDeletion {
			return invalidState(k)
		}
		k.State, k.Window = api.KeyStatePendingDeletion, w
		k.Deletion = s.now().Add(time.Duration(w) * 24 * time.Hour)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.forget(k.ID)
	return &api.ScheduleKeyDeletionResponse{KeyId: s.keyARN(k.ID), DeletionDate: api.EpochOf(k.Deletion), KeyState: k.State, PendingWindowInDays: w}, nil
}

func (s *Service) cancelKeyDeletion(cl *call, req *api.KeyIDRequest) (*api.CancelKeyDeletionResponse, error) {
	k, err := s.change(cl, req.KeyId, "CancelKeyDeletion", false, func(k *keyRecord) error {
		if k.State != api.KeyStatePendingDeletion {
			return invalidState(k)
		}
		// As KMS: a cancelled deletion leaves the key disabled.
		k.State, k.Window, k.Deletion = api.KeyStateDisabled, 0, time.Time{}
		if len(k.Versions) == 0 {
			k.State = api.KeyStatePendingImport
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &api.CancelKeyDeletionResponse{KeyId: s.keyARN(k.ID)}, nil
}

// Sweep deletes the keys whose deletion date has passed (their material,
// aliases and grants with them: what they encrypted can no longer be
// decrypted by anyone) and rotates those whose rotation is due. azoted
// runs it periodically; it returns the ARNs of the keys deleted.
func (s *Service) Sweep() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var deleted []string
	err := s.cfg.Store.Update(func(tx store.Tx) error {
		var due []keyRecord
		err := tx.ForEach(KeysTable, func(_ string, raw []byte) error {
			var k keyRecord
			if err := unmarshal(raw, &k); err != nil {
				return err
			}
			if (k.State == api.KeyStatePendingDeletion && !now.Before(k.Deletion)) ||
				(k.RotationEnabled && k.State == api.KeyStateEnabled && !k.NextRotation.IsZero() && !now.Before(k.NextRotation)) ||
				(!k.ValidTo.IsZero() && !now.Before(k.ValidTo) && k.State != api.KeyStatePendingImport) {
				due = append(due, k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range due {
			switch {
			case k.State == api.KeyStatePendingDeletion:
				if err := s.deleteKeyTx(tx, k.ID); err != nil {
					return err
				}
				deleted = append(deleted, k.ID)
			case !k.ValidTo.IsZero() && !now.Before(k.ValidTo):
				// Expired imported material is deleted; the key waits
				// for new material.
				k.Versions, k.ValidTo, k.State = nil, time.Time{}, api.KeyStatePendingImport
				if err := tx.Put(KeysTable, k.ID, &k); err != nil {
					return err
				}
			default:
				if err := s.addVersion(&k, "AUTOMATIC"); err != nil {
					return err
				}
				k.NextRotation = now.Add(time.Duration(k.RotationDays) * 24 * time.Hour)
				if err := tx.Put(KeysTable, k.ID, &k); err != nil {
					return err
				}
			}
		}
		return nil
	})
	arns := make([]string, len(deleted))
	for i, id := range deleted {
		s.forget(id)
		s.log.Info("kms key deleted at the end of its waiting period", "key", id)
		arns[i] = s.keyARN(id)
	}
	return arns, err
}

// deleteKeyTx removes a key with its aliases and grants.
func (s *Service) deleteKeyTx(tx store.Tx, id string) error {
	var aliases, grants []string
	tx.ForEach(AliasesTable, func(name string, raw []byte) error {
		var a aliasRecord
		if unmarshal(raw, &a) == nil && a.KeyID == id {
			aliases = append(aliases, name)
		}
		return nil
	})
	tx.ForEach(GrantsTable, func(gid string, raw []byte) error {
		var g grantRecord
		if unmarshal(raw, &g) == nil && g.KeyID == id {
			grants = append(grants, gid)
		}
		return nil
	})
	for _, a := range aliases {
		if err := tx.Delete(AliasesTable, a); err != nil {
			return err
		}
	}
	for _, g := range grants {
		if err := tx.Delete(GrantsTable, g); err != nil {
			return err
		}
	}
	return tx.Delete(KeysTable, id)
}

func (s *Service) enableKeyRotation(cl *call, req *api.EnableKeyRotationRequest) (*struct{}, error) {
	days := req.RotationPeriodInDays
	if days == 0 {
		days = defaultRotation
	}
	if days < minRotation || days > maxRotation {
		return nil, kmsErr(api.CodeKMSValidation, "RotationPeriodInDays %d: want %d to %d", days, minRotation, maxRotation)
	}
	cl.set("kms:RotationPeriodInDays", itoa(days))
	_, err := s.change(cl, req.KeyId, "EnableKeyRotation", false, func(k *keyRecord) error {
		if err := rotatable(k); err != nil {
			return err
		}
		if k.State != api.KeyStateEnabled {
			return invalidState(k)
		}
		k.RotationEnabled, k.RotationDays = true, days
		k.NextRotation = s.now().Add(time.Duration(days) * 24 * time.Hour)
		return nil
	})
	return &struct{}{}, err
}

// rotatable refuses keys KMS does not rotate: asymmetric, HMAC and
// imported ones.
func rotatable(k *keyRecord) error {
	if k.Spec != api.KeySpecSymmetricDefault || k.Origin != api.OriginAWSKMS {
		return kmsErr(api.CodeKMSUnsupported, "key %s (%s, origin %s) cannot be rotated: only symmetric keys with material made by KMS", k.ID, k.Spec, k.Origin)
	}
	return nil
}

func (s *Service) disableKeyRotation(cl *call, req *api.KeyIDRequest) (*struct{}, error) {
	_, err := s.change(cl, req.KeyId, "DisableKeyRotation", false, func(k *keyRecord) error {
		if err := rotatable(k); err != nil {
			return err
		}
		if k.State == api.KeyStatePendingDeletion {
			return invalidState(k)
		}
		k.RotationEnabled, k.NextRotation = false, time.Time{}
		return nil
	})
	return &struct{}{}, err
}

func (s *Service) getKeyRotationStatus(cl *call, req *api.KeyIDRequest) (*api.GetKeyRotationStatusResponse, error) {
	k, err := s.read(cl, req.KeyId, "GetKeyRotationStatus", false, nil)
	if err != nil {
		return nil, err
	}
	out := &api.GetKeyRotationStatusResponse{KeyId: s.keyARN(k.ID), KeyRotationEnabled: k.RotationEnabled}
	if k.RotationEnabled {
		out.RotationPeriodInDays = k.RotationDays
		out.NextRotationDate = api.EpochOf(k.NextRotation)
	}
	return out, nil
}

func (s *Service) rotateKeyOnDemand(cl *call, req *api.KeyIDRequest) (*api.RotateKeyOnDemandResponse, error) {
	k, err := s.change(cl, req.KeyId, "RotateKeyOnDemand", false, func(k *keyRecord) error {
		if err := rotatable(k); err != nil {
			return err
		}
		if k.State != api.KeyStateEnabled {
			return invalidState(k)
		}
		n := 0
		for _, v := range k.Versions {
			if v.Rotation == "ON_DEMAND" {
				n++
			}
		}
		if n >= maxOnDemandRotates {
			return kmsErr(api.CodeKMSLimitExceeded, "key %s was rotated on demand %d times, the most KMS allows", k.ID, n)
		}
		return s.addVersion(k, "ON_DEMAND")
	})
	if err != nil {
		return nil, err
	}
	return &api.RotateKeyOnDemandResponse{KeyId: k.ID}, nil
}

func (s *Service) listKeyRotations(cl *call, req *api.ListKeyRotationsRequest) (*api.ListKeyRotationsResponse, error) {
	k, err := s.read(cl, req.KeyId, "ListKeyRotations", false, nil)
	if err != nil {
		return nil, err
	}
	if err := rotatable(&k); err != nil {
		return nil, err
	}
	limit, err := pageLimit(req.Limit, 1000, 100)
	if err != nil {
		return nil, err
	}
	var ids []string
	byID := map[string]keyVersion{}
	for i, v := range k.Versions {
		if i == 0 {
			continue
		}
		id := fmt.Sprintf("%08d", i)
		ids = append(ids, id)
		byID[id] = v
	}
	page, next, err := paginate(ids, req.Marker, limit)
	if err != nil {
		return nil, err
	}
	out := &api.ListKeyRotationsResponse{Rotations: []api.RotationsListEntry{}, NextMarker: next, Truncated: next != ""}
	for _, id := range page {
		v := byID[id]
		out.Rotations = append(out.Rotations, api.RotationsListEntry{KeyId: s.keyARN(k.ID), KeyMaterialId: v.MaterialID, RotationDate: api.EpochOf(v.Created), RotationType: v.Rotation})
	}
	return out, nil
}

// tagMap checks tags as KMS does and adds them to base.
func tagMap(base map[string]string, tags []api.KMSTag) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	seen := map[string]bool{}
	for _, t := range tags {
		if t.TagKey == "" || len(t.TagKey) > 128 || len(t.TagValue) > 256 {
			return nil, kmsErr(api.CodeKMSTag, "tag key must be 1-128 characters and its value at most 256")
		}
		if len(t.TagKey) >= 4 && (t.TagKey[:4] == "aws:" || t.TagKey[:4] == "AWS:") {
			return nil, kmsErr(api.CodeKMSTag, "tag keys beginning with aws: are reserved")
		}
		if seen[t.TagKey] {
			return nil, kmsErr(api.CodeKMSTag, "duplicate tag key %q", t.TagKey)
		}
		seen[t.TagKey] = true
		out[t.TagKey] = t.TagValue
	}
	if len(out) > maxTags {
		return nil, kmsErr(api.CodeKMSLimitExceeded, "a key has at most %d tags", maxTags)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
