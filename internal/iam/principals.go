package iam

import (
	"slices"
	"strings"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/iam/policy"
	"github.com/azote/azote/internal/store"
)

// A policy that names a user or role of this account as its Principal
// is stored with that identity's unique id in place of the ARN, as AWS
// does: the trust is in the identity, not the name. A user deleted and
// made again under the same name has a new id and does not inherit the
// old one's trusts; once the identity is gone, the stored policy shows
// its id (policies are shown with the ARN of every id that still
// exists). Session ARNs (sts assumed-role) and accounts are kept as
// written, and conditions compare the values they name (aws:PrincipalArn
// an ARN, aws:userid an id), as in AWS.

// principalKind tells whether arn is a user or role ARN of this
// account, and its name.
func (s *Service) principalKind(arn string) (kind, name string) {
	for _, k := range []string{KindUser, KindRole} {
		if n, ok := strings.CutPrefix(arn, s.arn("iam", k+"/")); ok && nameRE.MatchString(n) {
			return k, n
		}
	}
	return "", ""
}

// editPrincipals rewrites every AWS principal entry of doc through fn
// and returns the new text, or doc itself when nothing changed (so a
// policy keeps its author's layout).
func editPrincipals(doc string, fn func(entry string) (string, error)) (string, error) {
	d, err := policy.Parse([]byte(doc))
	if err != nil {
		return "", api.Errorf(api.CodeMalformedPolicyDocument, "%v", err)
	}
	changed := false
	for i := range d.Statements {
		st := &d.Statements[i]
		for _, pp := range []**policy.Principals{&st.Principal, &st.NotPrincipal} {
			if *pp == nil || len((*pp).AWS) == 0 {
				continue
			}
			p := **pp
			p.AWS = slices.Clone(p.AWS)
			for j, e := range p.AWS {
				n, err := fn(e)
				if err != nil {
					return "", err
				}
				if n != e {
					p.AWS[j], changed = n, true
				}
			}
			*pp = &p
		}
	}
	if !changed {
		return doc, nil
	}
	// d.MarshalJSON, not json.Marshal, which would escape "<" and ">"
	// in condition values and could take the text past MaxSize.
	out, err := d.MarshalJSON()
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// bindPrincipalsTx replaces each user or role of this account that doc
// names as a principal by its unique id. A name that no identity has
// goes to missing, which refuses it (MalformedPolicyDocument, as AWS
// answers "Invalid principal in policy") or says what to store instead.
func (s *Service) bindPrincipalsTx(tx store.Tx, doc string, missing func(kind, arn string) (string, error)) (string, error) {
	return editPrincipals(doc, func(e string) (string, error) {
		var id string
		var err error
		kind, name := s.principalKind(e)
		switch kind {
		case KindUser:
			var u api.User
			u, err = s.getUserTx(tx, name)
			id = u.UserID
		case KindRole:
			var r api.Role
			r, err = s.getRoleTx(tx, name)
			id = r.RoleID
		default:
			return e, nil
		}
		if api.IsCode(err, api.CodeNoSuchEntity) {
			return missing(kind, e)
		}
		return id, err
	})
}

// invalidPrincipal refuses a principal that does not exist.
func invalidPrincipal(_, arn string) (string, error) {
	return "", api.Errorf(api.CodeMalformedPolicyDocument, "invalid principal in policy: %s does not exist", shown(arn))
}

// principalARNsTx maps the unique id of every user and role to its ARN.
func principalARNsTx(tx store.Tx) (map[string]string, error) {
	users, err := store.All[api.User](tx, tUsers)
	if err != nil {
		return nil, err
	}
	roles, err := store.All[api.Role](tx, tRoles)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(users)+len(roles))
	for _, u := range users {
		m[u.UserID] = u.ARN
	}
	for _, r := range roles {
		m[r.RoleID] = r.ARN
	}
	return m, nil
}

// showPrincipals is doc as users see it: each unique id of an identity
// that exists shown as its ARN; the id of one that is gone stays.
func showPrincipals(doc string, arns map[string]string) string {
	out, err := editPrincipals(doc, func(e string) (string, error) {
		if a, ok := arns[e]; ok {
			return a, nil
		}
		return e, nil
	})
	if err != nil {
		return doc
	}
	return out
}

// showRolesTx renders the trust policies of roles for the caller.
func showRolesTx(tx store.Tx, roles []api.Role) ([]api.Role, error) {
	arns, err := principalARNsTx(tx)
	if err != nil {
		return nil, err
	}
	for i := range roles {
		roles[i].TrustPolicy = showPrincipals(roles[i].TrustPolicy, arns)
	}
	return roles, nil
}

// bindStoredTrust binds the trust policies stored by an azoted that kept
// principals by name, once, at start. A principal that no identity has
// by then is taken as deleted: it gets an id that no identity has, so
// no new identity under that name inherits the trust.
func (s *Service) bindStoredTrust(tx store.Tx) error {
	roles, err := store.All[api.Role](tx, tRoles)
	if err != nil {
		return err
	}
	gone := func(kind, _ string) (string, error) {
		if kind == KindRole {
			return newID("AROA", 17)
		}
		return newID("AIDA", 17)
	}
	for _, r := range roles {
		doc, err := s.bindPrincipalsTx(tx, r.TrustPolicy, gone)
		if api.IsCode(err, api.CodeMalformedPolicyDocument) {
			continue // never assumable; left for its owner to see
		}
		if err != nil {
			return err
		}
		if doc != r.TrustPolicy {
			r.TrustPolicy = doc
			if err := tx.Put(tRoles, r.RoleName, r); err != nil {
				return err
			}
		}
	}
	return nil
}
