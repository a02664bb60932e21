package kms

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"regexp"
	"slices"
	"sort"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/store"
)

// Key policies and tags.

func (s *Service) getKeyPolicy(cl *call, req *api.KeyPolicyRequest) (*api.GetKeyPolicyResponse, error) {
	if req.PolicyName != "" && req.PolicyName != "default" {
		return nil, kmsErr(api.CodeKMSNotFound, "a key has one policy, named default")
	}
	k, err := s.read(cl, req.KeyId, "GetKeyPolicy", false, nil)
	if err != nil {
		return nil, err
	}
	return &api.GetKeyPolicyResponse{Policy: k.Policy, PolicyName: "default"}, nil
}

func (s *Service) putKeyPolicy(cl *call, req *api.KeyPolicyRequest) (*struct{}, error) {
	if req.PolicyName != "" && req.PolicyName != "default" {
		return nil, kmsErr(api.CodeKMSNotFound, "a key has one policy, named default")
	}
	if _, err := s.keyPolicy(req.Policy); err != nil {
		return nil, err
	}
	cl.set("kms:BypassPolicyLockoutSafetyCheck", boolString(req.BypassPolicyLockoutSafetyCheck))
	_, err := s.change(cl, req.KeyId, "PutKeyPolicy", false, func(k *keyRecord) error {
		if !req.BypassPolicyLockoutSafetyCheck {
			if err := s.lockoutCheck(cl, k.ID, req.Policy); err != nil {
				return err
			}
		}
		k.Policy = req.Policy
		return nil
	})
	return &struct{}{}, err
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func (s *Service) listKeyPolicies(cl *call, req *api.ListKeyPoliciesRequest) (*api.ListKeyPoliciesResponse, error) {
	if _, err := pageLimit(req.Limit, 1000, 100); err != nil {
		return nil, err
	}
	if _, err := s.read(cl, req.KeyId, "ListKeyPolicies", false, nil); err != nil {
		return nil, err
	}
	return &api.ListKeyPoliciesResponse{PolicyNames: []string{"default"}}, nil
}

func (s *Service) tagResource(cl *call, req *api.TagResourceRequest) (*struct{}, error) {
	for _, t := range req.Tags {
		cl.set("aws:RequestTag/"+t.TagKey, t.TagValue)
	}
	_, err := s.change(cl, req.KeyId, "TagResource", false, func(k *keyRecord) error {
		if k.State == api.KeyStatePendingDeletion {
			return invalidState(k)
		}
		tags, err := tagMap(k.Tags, req.Tags)
		if err != nil {
			return err
		}
		k.Tags = tags
		return nil
	})
	return &struct{}{}, err
}

func (s *Service) untagResource(cl *call, req *api.UntagResourceRequest) (*struct{}, error) {
	if len(req.TagKeys) > 0 {
		cl.set("aws:TagKeys", req.TagKeys...)
	}
	_, err := s.change(cl, req.KeyId, "UntagResource", false, func(k *keyRecord) error {
		if k.State == api.KeyStatePendingDeletion {
			return invalidState(k)
		}
		for _, t := range req.TagKeys {
			delete(k.Tags, t)
		}
		if len(k.Tags) == 0 {
			k.Tags = nil
		}
		return nil
	})
	return &struct{}{}, err
}

func (s *Service) listResourceTags(cl *call, req *api.ListResourceTagsRequest) (*api.ListResourceTagsResponse, error) {
	limit, err := pageLimit(req.Limit, 50, 50)
	if err != nil {
		return nil, err
	}
	k, err := s.read(cl, req.KeyId, "ListResourceTags", false, nil)
	if err != nil {
		return nil, err
	}
	page, next, err := paginate(sortedKeys(k.Tags), req.Marker, limit)
	if err != nil {
		return nil, err
	}
	out := &api.ListResourceTagsResponse{Tags: []api.KMSTag{}, NextMarker: next, Truncated: next != ""}
	for _, t := range page {
		out.Tags = append(out.Tags, api.KMSTag{TagKey: t, TagValue: k.Tags[t]})
	}
	return out, nil
}

// Grants.

var grantNameRE = regexp.MustCompile(`^[a-zA-Z0-9:/_-]{1,256}$`)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Service) createGrant(cl *call, req *api.CreateGrantRequest) (*api.CreateGrantResponse, error) {
	cl.grantTokens = req.GrantTokens
	if req.GranteePrincipal == "" || len(req.GranteePrincipal) > 256 || len(req.RetiringPrincipal) > 256 {
		return nil, kmsErr(api.CodeKMSValidation, "GranteePrincipal must be 1 to 256 characters")
	}
	if len(req.Operations) == 0 {
		return nil, kmsErr(api.CodeKMSValidation, "Operations must name at least one operation")
	}
	for _, o := range req.Operations {
		if !slices.Contains(grantOperations, o) {
			return nil, kmsErr(api.CodeKMSValidation, "%q is not an operation a grant can allow", o)
		}
	}
	if req.Name != "" && !grantNameRE.MatchString(req.Name) {
		return nil, kmsErr(api.CodeKMSValidation, "grant Name %q: 1-256 letters, digits and :/_-", req.Name)
	}
	if c := req.Constraints; c != nil && c.EncryptionContextEquals != nil && c.EncryptionContextSubset != nil {
		return nil, kmsErr(api.CodeKMSValidation, "give EncryptionContextEquals or EncryptionContextSubset, not both")
	}
	cl.set("kms:GrantOperations", req.Operations...)
	cl.set("kms:GranteePrincipal", req.GranteePrincipal)
	if req.RetiringPrincipal != "" {
		cl.set("kms:RetiringPrincipal", req.RetiringPrincipal)
	}
	// A grant made through the API is never one for an AWS resource:
	// only azote's own services (volumes) make those.
	cl.set("kms:GrantIsForAWSResource", boolString(cl.viaService != ""))
	if c := req.Constraints; c != nil {
		for k, v := range c.EncryptionContextEquals {
			cl.set("kms:GrantConstraintType", "EncryptionContextEquals")
			cl.set("kms:EncryptionContext:"+k, v)
		}
		for k, v := range c.EncryptionContextSubset {
			cl.set("kms:GrantConstraintType", "EncryptionContextSubset")
			cl.set("kms:EncryptionContext:"+k, v)
		}
	}
	g := grantRecord{ID: randomHex(32), Token: base64.RawURLEncoding.EncodeToString([]byte(randomHex(48))), Name: req.Name,
		Grantee: req.GranteePrincipal, Retiring: req.RetiringPrincipal, Operations: slices.Clone(req.Operations),
		Constraints: req.Constraints, Issuer: s.cfg.IAM.AccountID(), Created: s.now(), ForService: cl.viaService}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.cfg.Store.Update(func(tx store.Tx) error {
		r, err := s.resolve(tx, req.KeyId, false)
		if err != nil {
			return err
		}
		if err := s.authorize(inTx(tx), cl, "CreateGrant", r, nil); err != nil {
			return err
		}
		if r.key.State == api.KeyStatePendingDeletion {
			return invalidState(&r.key)
		}
		if req.DryRun {
			return dryRun()
		}
		// A grant with the same name, grantee, operations and
		// constraints is the same grant (KMS's idempotence).
		var same *grantRecord
		tx.ForEach(GrantsTable, func(_ string, raw []byte) error {
			var o grantRecord
			if unmarshal(raw, &o) == nil && o.KeyID == r.key.ID && req.Name != "" && o.Name == req.Name &&
				o.Grantee == g.Grantee && o.Retiring == g.Retiring && slices.Equal(o.Operations, g.Operations) {
				same = &o
			}
			return nil
		})
		if same != nil {
			g = *same
			return nil
		}
		g.KeyID = r.key.ID
		return tx.Create(GrantsTable, g.ID, &g)
	})
	if err != nil {
		return nil, err
	}
	return &api.CreateGrantResponse{GrantToken: g.Token, GrantId: g.ID}, nil
}

func (s *Service) grantEntry(g *grantRecord) api.GrantListEntry {
	return api.GrantListEntry{KeyId: s.keyARN(g.KeyID), GrantId: g.ID, Name: g.Name, CreationDate: api.EpochOf(g.Created),
		GranteePrincipal: g.Grantee, RetiringPrincipal: g.Retiring, IssuingAccount: api.MakeARN("iam", g.Issuer, "root"),
		Operations: g.Operations, Constraints: g.Constraints}
}

// grants lists the grants keep says yes to, sorted by id.
func grantsWhere(tx store.Tx, keep func(*grantRecord) bool) ([]grantRecord, error) {
	var out []grantRecord
	err := tx.ForEach(GrantsTable, func(_ string, raw []byte) error {
		var g grantRecord
		if err := unmarshal(raw, &g); err != nil {
			return err
		}
		if keep(&g) {
			out = append(out, g)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

func (s *Service) pageGrants(gs []grantRecord, marker string, limit int) (*api.ListGrantsResponse, error) {
	ids := make([]string, len(gs))
	byID := map[string]*grantRecord{}
	for i := range gs {
		ids[i] = gs[i].ID
		byID[gs[i].ID] = &gs[i]
	}
	page, next, err := paginate(ids, marker, limit)
	if err != nil {
		return nil, err
	}
	out := &api.ListGrantsResponse{Grants: []api.GrantListEntry{}, NextMarker: next, Truncated: next != ""}
	for _, id := range page {
		out.Grants = append(out.Grants, s.grantEntry(byID[id]))
	}
	return out, nil
}

func (s *Service) listGrants(cl *call, req *api.ListGrantsRequest) (*api.ListGrantsResponse, error) {
	limit, err := pageLimit(req.Limit, 100, 50)
	if err != nil {
		return nil, err
	}
	r, err := view(s, func(tx store.Tx) (keyRef, error) { return s.resolve(tx, req.KeyId, false) })
	if err != nil {
		return nil, err
	}
	// Outside the read transaction (authorize says why).
	if err := s.authorize(s.cfg.Store.View, cl, "ListGrants", r, nil); err != nil {
		return nil, err
	}
	var gs []grantRecord
	err = s.cfg.Store.View(func(tx store.Tx) error {
		var err error
		gs, err = grantsWhere(tx, func(g *grantRecord) bool {
			return g.KeyID == r.key.ID && (req.GrantId == "" || g.ID == req.GrantId) &&
				(req.GranteePrincipal == "" || g.Grantee == req.GranteePrincipal)
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.pageGrants(gs, req.Marker, limit)
}

func (s *Service) listRetirableGrants(cl *call, req *api.ListRetirableGrantsRequest) (*api.ListGrantsResponse, error) {
	limit, err := pageLimit(req.Limit, 100, 50)
	if err != nil {
		return nil, err
	}
	if req.RetiringPrincipal == "" {
		return nil, kmsErr(api.CodeKMSValidation, "RetiringPrincipal is required")
	}
	if err := s.authorizeAccount(cl, "ListRetirableGrants"); err != nil {
		return nil, err
	}
	gs, err := view(s, func(tx store.Tx) ([]grantRecord, error) {
		return grantsWhere(tx, func(g *grantRecord) bool { return g.Retiring == req.RetiringPrincipal })
	})
	if err != nil {
		return nil, err
	}
	return s.pageGrants(gs, req.Marker, limit)
}

// retireGrant: by token, or by key and grant id. The retiring principal,
// the grantee when the grant lets it retire, or the account's own IAM
// (kms:RetireGrant through the key policy) may retire a grant.
func (s *Service) retireGrant(cl *call, req *api.RetireGrantRequest) (*struct{}, error) {
	if req.GrantToken == "" && (req.KeyId == "" || req.GrantId == "") {
		return nil, kmsErr(api.CodeKMSValidation, "give GrantToken, or KeyId and GrantId")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.cfg.Store.Update(func(tx store.Tx) error {
		gs, err := grantsWhere(tx, func(g *grantRecord) bool {
			if req.GrantToken != "" {
				return g.Token == req.GrantToken
			}
			return g.ID == req.GrantId
		})
		if err != nil {
			return err
		}
		if len(gs) == 0 {
			if req.GrantToken != "" {
				return kmsErr(api.CodeKMSInvalidGrantToken, "the grant token is not valid")
			}
			return kmsErr(api.CodeKMSInvalidGrantID, "grant %s does not exist", req.GrantId)
		}
		g := gs[0]
		r, err := s.resolve(tx, g.KeyID, false)
		if err != nil {
			return err
		}
		if req.KeyId != "" {
			named, err := s.resolve(tx, req.KeyId, false)
			if err != nil {
				return err
			}
			if named.key.ID != g.KeyID {
				return kmsErr(api.CodeKMSInvalidGrantID, "grant %s is not a grant of %s", g.ID, req.KeyId)
			}
		}
		cl.resources = appendUnique(cl.resources, s.keyARN(g.KeyID))
		allowed := principalIs(cl.caller, g.Retiring) || (principalIs(cl.caller, g.Grantee) && slices.Contains(g.Operations, "RetireGrant"))
		if !allowed {
			if err := s.authorize(inTx(tx), cl, "RetireGrant", r, nil); err != nil {
				return err
			}
		}
		if req.DryRun {
			return dryRun()
		}
		return tx.Delete(GrantsTable, g.ID)
	})
	return &struct{}{}, err
}

func (s *Service) revokeGrant(cl *call, req *api.RevokeGrantRequest) (*struct{}, error) {
	if req.GrantId == "" {
		return nil, kmsErr(api.CodeKMSValidation, "GrantId is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.cfg.Store.Update(func(tx store.Tx) error {
		r, err := s.resolve(tx, req.KeyId, false)
		if err != nil {
			return err
		}
		if err := s.authorize(inTx(tx), cl, "RevokeGrant", r, nil); err != nil {
			return err
		}
		var g grantRecord
		if err := tx.Get(GrantsTable, req.GrantId, &g); err != nil || g.KeyID != r.key.ID {
			if err == nil || errors.Is(err, store.ErrNotFound) {
				return kmsErr(api.CodeKMSNotFound, "grant %s of key %s does not exist", req.GrantId, r.key.ID)
			}
			return err
		}
		if req.DryRun {
			return dryRun()
		}
		return tx.Delete(GrantsTable, g.ID)
	})
	return &struct{}{}, err
}
