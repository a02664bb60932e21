package kms

import (
	"encoding/base64"
	"errors"
	"sort"
	"strings"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/store"
)

// pageLimit checks a Limit member: 1 to max, def when absent.
func pageLimit(limit, max, def int32) (int, error) {
	switch {
	case limit == 0:
		return int(def), nil
	case limit < 1 || limit > max:
		return 0, kmsErr(api.CodeKMSValidation, "Limit %d: want 1 to %d", limit, max)
	}
	return int(limit), nil
}

// paginate returns the page of the sorted ids after marker, and the
// marker of the next page ("" when this is the last). A marker is the
// last id of the page before, encoded; one this service did not make is
// InvalidMarkerException.
func paginate(ids []string, marker string, limit int) ([]string, string, error) {
	start := 0
	if marker != "" {
		last, err := base64.RawURLEncoding.DecodeString(marker)
		if err != nil || len(last) == 0 {
			return nil, "", kmsErr(api.CodeKMSInvalidMarker, "the marker is not one this service gave")
		}
		start = sort.SearchStrings(ids, string(last))
		if start < len(ids) && ids[start] == string(last) {
			start++
		}
	}
	end := min(start+limit, len(ids))
	page := ids[start:end]
	next := ""
	if end < len(ids) {
		next = base64.RawURLEncoding.EncodeToString([]byte(ids[end-1]))
	}
	return page, next, nil
}

func checkAliasName(name string) error {
	if !aliasRE.MatchString(name) {
		return kmsErr(api.CodeKMSInvalidAliasName, "alias name %q: want alias/ then 1-250 letters, digits, '/', '_' or '-'", name)
	}
	if strings.HasPrefix(name, "alias/aws/") {
		return kmsErr(api.CodeKMSInvalidAliasName, "alias names beginning with alias/aws/ are reserved")
	}
	return nil
}

// createAlias needs kms:CreateAlias on the alias (as an IAM action) and
// on the key (its key policy), as KMS does.
func (s *Service) createAlias(cl *call, req *api.AliasRequest) (*struct{}, error) {
	if err := checkAliasName(req.AliasName); err != nil {
		return nil, err
	}
	if strings.HasPrefix(req.AliasName, "alias/azote/") {
		return nil, kmsErr(api.CodeKMSInvalidAliasName, "alias names beginning with alias/azote/ are azote's own")
	}
	return &struct{}{}, s.setAlias(cl, req, "CreateAlias", false)
}

func (s *Service) updateAlias(cl *call, req *api.AliasRequest) (*struct{}, error) {
	if err := checkAliasName(req.AliasName); err != nil {
		return nil, err
	}
	return &struct{}{}, s.setAlias(cl, req, "UpdateAlias", true)
}

func (s *Service) setAlias(cl *call, req *api.AliasRequest, op string, update bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.cfg.IAM.Authorize(cl.caller, "kms:"+op, s.aliasARN(req.AliasName), map[string][]string{"kms:calleraccount": {cl.caller.AccountID}}, nil); !d.Allowed {
		return kmsErr(api.CodeKMSAccessDenied, "User: %s is not authorized to perform: kms:%s on resource: %s because %s", cl.caller.ARN, op, s.aliasARN(req.AliasName), d.Reason)
	}
	cl.resources = append(cl.resources, s.aliasARN(req.AliasName))
	return s.cfg.Store.Update(func(tx store.Tx) error {
		r, err := s.resolve(tx, req.TargetKeyId, false)
		if err != nil {
			return err
		}
		if err := s.authorize(inTx(tx), cl, op, r, nil); err != nil {
			return err
		}
		if r.key.State == api.KeyStatePendingDeletion {
			return invalidState(&r.key)
		}
		now := s.now()
		var a aliasRecord
		err = tx.Get(AliasesTable, req.AliasName, &a)
		switch {
		case err == nil && !update:
			return kmsErr(api.CodeKMSAlreadyExists, "An alias with the name %s already exists", s.aliasARN(req.AliasName))
		case errors.Is(err, store.ErrNotFound) && update:
			return kmsErr(api.CodeKMSNotFound, "Alias %s is not found.", s.aliasARN(req.AliasName))
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return err
		}
		if update {
			// The key the alias leaves must allow it too, and be of the
			// same type and usage (KMS's rule).
			old, err := s.resolve(tx, a.KeyID, false)
			if err != nil {
				return err
			}
			if err := s.authorize(inTx(tx), cl, op, old, nil); err != nil {
				return err
			}
			if old.key.Spec != r.key.Spec || old.key.Usage != r.key.Usage {
				return kmsErr(api.CodeKMSValidation, "an alias moves only between keys of the same key spec and usage (%s/%s, not %s/%s)", old.key.Spec, old.key.Usage, r.key.Spec, r.key.Usage)
			}
			a.KeyID, a.Updated = r.key.ID, now
		} else {
			a = aliasRecord{Name: req.AliasName, KeyID: r.key.ID, Created: now, Updated: now}
		}
		return tx.Put(AliasesTable, a.Name, &a)
	})
}

func (s *Service) deleteAlias(cl *call, req *api.AliasRequest) (*struct{}, error) {
	if err := checkAliasName(req.AliasName); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.cfg.IAM.Authorize(cl.caller, "kms:DeleteAlias", s.aliasARN(req.AliasName), map[string][]string{"kms:calleraccount": {cl.caller.AccountID}}, nil); !d.Allowed {
		return nil, kmsErr(api.CodeKMSAccessDenied, "User: %s is not authorized to perform: kms:DeleteAlias on resource: %s because %s", cl.caller.ARN, s.aliasARN(req.AliasName), d.Reason)
	}
	cl.resources = append(cl.resources, s.aliasARN(req.AliasName))
	err := s.cfg.Store.Update(func(tx store.Tx) error {
		var a aliasRecord
		if err := tx.Get(AliasesTable, req.AliasName, &a); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return kmsErr(api.CodeKMSNotFound, "Alias %s is not found.", s.aliasARN(req.AliasName))
			}
			return err
		}
		r, err := s.resolve(tx, a.KeyID, false)
		if err != nil {
			return err
		}
		if err := s.authorize(inTx(tx), cl, "DeleteAlias", r, nil); err != nil {
			return err
		}
		return tx.Delete(AliasesTable, a.Name)
	})
	return &struct{}{}, err
}

func (s *Service) listAliases(cl *call, req *api.ListAliasesRequest) (*api.ListAliasesResponse, error) {
	limit, err := pageLimit(req.Limit, 100, 50)
	if err != nil {
		return nil, err
	}
	keyID := ""
	if req.KeyId != "" {
		// Listing a key's aliases is authorised by its key policy.
		k, err := s.read(cl, req.KeyId, "ListAliases", false, nil)
		if err != nil {
			return nil, err
		}
		keyID = k.ID
	} else if err := s.authorizeAccount(cl, "ListAliases"); err != nil {
		return nil, err
	}
	byName := map[string]aliasRecord{}
	var names []string
	err = s.cfg.Store.View(func(tx store.Tx) error {
		return tx.ForEach(AliasesTable, func(name string, raw []byte) error {
			var a aliasRecord
			if err := unmarshal(raw, &a); err != nil {
				return err
			}
			if keyID == "" || a.KeyID == keyID {
				byName[name] = a
				names = append(names, name)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	page, next, err := paginate(names, req.Marker, limit)
	if err != nil {
		return nil, err
	}
	out := &api.ListAliasesResponse{Aliases: []api.AliasListEntry{}, NextMarker: next, Truncated: next != ""}
	for _, n := range page {
		a := byName[n]
		out.Aliases = append(out.Aliases, api.AliasListEntry{AliasName: n, AliasArn: s.aliasARN(n), TargetKeyId: a.KeyID,
			CreationDate: api.EpochOf(a.Created), LastUpdatedDate: api.EpochOf(a.Updated)})
	}
	return out, nil
}
