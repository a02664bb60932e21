package iam

import (
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strings"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/iam/policy"
	"github.com/azote/azote/internal/store"
)

// BuiltinARN is the ARN of an azote-defined managed policy.
func BuiltinARN(name string) string { return api.MakeARN("iam", api.BuiltinAccount, "policy/"+name) }

// RequireMFAPolicy is the customer-managed policy `azote init` attaches
// to the Administrators group: dangerous actions need an MFA session.
// Enrolling one's own MFA device stays possible without one, and
// EnableMFADevice refuses a user who already has a device, so a stolen
// key cannot replace the owner's device.
const RequireMFAPolicy = "RequireMFAForDangerousActions"

const requireMFADocument = `{
  "Version": "2012-10-17",
  "Statement": [{
    "Sid": "DenyDangerousWithoutMFA",
    "Effect": "Deny",
    "Action": [
      "compute:TerminateInstances", "compute:DeleteVolume", "compute:DeleteImage",
      "iam:CreateUser", "iam:DeleteUser", "iam:CreateRole", "iam:DeleteRole",
      "iam:CreateGroup", "iam:DeleteGroup", "iam:CreatePolicy", "iam:DeletePolicy",
      "iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:DeleteAccessKey", "iam:RotateAccessKey",
      "iam:Attach*", "iam:Detach*", "iam:Put*", "iam:Delete*Policy", "iam:Update*",
      "iam:AddUserToGroup", "iam:RemoveUserFromGroup", "iam:DeactivateMFADevice",
      "audit:Update*", "audit:Delete*"
    ],
    "Resource": "*",
    "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}
  }]
}`

// getTx reads one entity; a missing one is NoSuchEntity.
func getTx[T any](tx store.Tx, table, kind, name string) (T, error) {
	var v T
	if err := tx.Get(table, name, &v); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return v, notFound(kind, name)
		}
		return v, err
	}
	return v, nil
}

// create stores a new entity; a taken name is EntityAlreadyExists.
func (s *Service) create(table, kind, name string, v any) error {
	return s.update(func(tx store.Tx) error {
		if err := tx.Create(table, name, v); err != nil {
			if errors.Is(err, store.ErrExists) {
				return exists(kind, name)
			}
			return err
		}
		return nil
	})
}

// list reads a whole table.
func list[T any](s *Service, table string) ([]T, error) {
	var out []T
	err := s.st.View(func(tx store.Tx) error {
		var err error
		out, err = store.All[T](tx, table)
		return err
	})
	return out, err
}

// view reads one value in a read transaction.
func view[T any](s *Service, fn func(tx store.Tx) (T, error)) (T, error) {
	var out T
	err := s.st.View(func(tx store.Tx) error {
		var err error
		out, err = fn(tx)
		return err
	})
	return out, err
}

func parsePolicy(doc string, kind policy.Kind) (*policy.Document, error) {
	d, err := policy.Parse([]byte(doc))
	if err != nil {
		return nil, api.Errorf(api.CodeMalformedPolicyDocument, "%v", err)
	}
	if err := d.Validate(kind); err != nil {
		return nil, api.Errorf(api.CodeMalformedPolicyDocument, "%v", err)
	}
	return d, nil
}

// getPolicy finds a managed policy by ARN: built-in or customer.
func (s *Service) getPolicyTx(tx store.Tx, arn string) (api.ManagedPolicy, error) {
	if name, ok := strings.CutPrefix(arn, BuiltinARN("")); ok {
		d, ok := policy.Builtin(name)
		if !ok {
			return api.ManagedPolicy{}, notFound("policy", arn)
		}
		raw, _ := json.Marshal(d)
		return api.ManagedPolicy{PolicyName: name, PolicyID: "ANPABUILTIN" + strings.ToUpper(name), ARN: arn, Document: string(raw), BuiltIn: true}, nil
	}
	return getTx[api.ManagedPolicy](tx, tPolicies, "policy", arn)
}

func (s *Service) policyARN(nameOrARN string) string {
	if api.LooksLikeARN(nameOrARN) {
		return nameOrARN
	}
	if _, ok := policy.Builtin(nameOrARN); ok {
		return BuiltinARN(nameOrARN)
	}
	return s.arn("iam", "policy/"+nameOrARN)
}

// CreatePolicy stores a customer-managed policy.
func (s *Service) CreatePolicy(name, document string) (api.ManagedPolicy, error) {
	if err := checkName("policy", name); err != nil {
		return api.ManagedPolicy{}, err
	}
	if _, err := parsePolicy(document, policy.Identity); err != nil {
		return api.ManagedPolicy{}, err
	}
	if _, ok := policy.Builtin(name); ok {
		return api.ManagedPolicy{}, exists("policy", name)
	}
	id, err := newID("ANPA", 17)
	if err != nil {
		return api.ManagedPolicy{}, err
	}
	now := s.now().UTC()
	p := api.ManagedPolicy{PolicyName: name, PolicyID: id, ARN: s.arn("iam", "policy/"+name), Document: document, CreatedAt: now, UpdatedAt: now}
	return p, s.create(tPolicies, "policy", p.ARN, p)
}

// DeletePolicy removes a customer policy that nothing is attached to.
func (s *Service) DeletePolicy(arn string) error {
	arn = s.policyARN(arn)
	return s.update(func(tx store.Tx) error {
		p, err := s.getPolicyTx(tx, arn)
		if err != nil {
			return err
		}
		if p.BuiltIn {
			return api.Errorf(api.CodeInvalidParameter, "%s is built in and cannot be deleted", arn)
		}
		users, err := store.All[api.User](tx, tUsers)
		if err != nil {
			return err
		}
		groups, err := store.All[api.Group](tx, tGroups)
		if err != nil {
			return err
		}
		roles, err := store.All[api.Role](tx, tRoles)
		if err != nil {
			return err
		}
		for _, u := range users {
			if slices.Contains(u.Attached, arn) {
				return api.Errorf(api.CodeDeleteConflict, "policy is attached to user %s", u.UserName)
			}
		}
		for _, g := range groups {
			if slices.Contains(g.Attached, arn) {
				return api.Errorf(api.CodeDeleteConflict, "policy is attached to group %s", g.GroupName)
			}
		}
		for _, r := range roles {
			if slices.Contains(r.Attached, arn) {
				return api.Errorf(api.CodeDeleteConflict, "policy is attached to role %s", r.RoleName)
			}
		}
		return tx.Delete(tPolicies, arn)
	})
}

// GetPolicy returns a managed policy by name or ARN.
func (s *Service) GetPolicy(nameOrARN string) (api.ManagedPolicy, error) {
	return view(s, func(tx store.Tx) (api.ManagedPolicy, error) { return s.getPolicyTx(tx, s.policyARN(nameOrARN)) })
}

// ListPolicies lists built-in and customer policies.
func (s *Service) ListPolicies() ([]api.ManagedPolicy, error) {
	var out []api.ManagedPolicy
	for _, n := range policy.BuiltinNames() {
		p, err := s.GetPolicy(BuiltinARN(n))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	err := s.st.View(func(tx store.Tx) error {
		ps, err := store.All[api.ManagedPolicy](tx, tPolicies)
		out = append(out, ps...)
		return err
	})
	return out, err
}

// CreateUser adds a user with no permissions.
func (s *Service) CreateUser(name string) (api.User, error) {
	if err := checkName("user", name); err != nil {
		return api.User{}, err
	}
	id, err := newID("AIDA", 17)
	if err != nil {
		return api.User{}, err
	}
	u := api.User{UserName: name, UserID: id, ARN: s.arn("iam", "user/"+name), CreatedAt: s.now().UTC()}
	return u, s.create(tUsers, "user", name, u)
}

func (s *Service) getUserTx(tx store.Tx, name string) (api.User, error) {
	return getTx[api.User](tx, tUsers, "user", name)
}

// GetUser returns a user.
func (s *Service) GetUser(name string) (api.User, error) {
	return view(s, func(tx store.Tx) (api.User, error) { return s.getUserTx(tx, name) })
}

// ListUsers lists users by name.
func (s *Service) ListUsers() ([]api.User, error) { return list[api.User](s, tUsers) }

// DeleteUser removes a user that has no keys, MFA device, groups or
// policies left (as IAM does: nothing is removed implicitly).
func (s *Service) DeleteUser(name string) error {
	return s.update(func(tx store.Tx) error {
		u, err := s.getUserTx(tx, name)
		if err != nil {
			return err
		}
		keys, err := s.userKeysTx(tx, name)
		if err != nil {
			return err
		}
		switch {
		case len(keys) > 0:
			return api.Errorf(api.CodeDeleteConflict, "user %s still has %d access key(s)", name, len(keys))
		case u.MFASerial != "":
			return api.Errorf(api.CodeDeleteConflict, "user %s still has MFA device %s", name, u.MFASerial)
		case len(u.Groups) > 0:
			return api.Errorf(api.CodeDeleteConflict, "user %s is still in group(s) %s", name, strings.Join(u.Groups, ", "))
		case len(u.Attached) > 0 || len(u.Inline) > 0:
			return api.Errorf(api.CodeDeleteConflict, "user %s still has policies", name)
		}
		return tx.Delete(tUsers, name)
	})
}

// CreateGroup adds a group.
func (s *Service) CreateGroup(name string) (api.Group, error) {
	if err := checkName("group", name); err != nil {
		return api.Group{}, err
	}
	id, err := newID("AGPA", 17)
	if err != nil {
		return api.Group{}, err
	}
	g := api.Group{GroupName: name, GroupID: id, ARN: s.arn("iam", "group/"+name), CreatedAt: s.now().UTC()}
	return g, s.create(tGroups, "group", name, g)
}

func (s *Service) getGroupTx(tx store.Tx, name string) (api.Group, error) {
	return getTx[api.Group](tx, tGroups, "group", name)
}

// GetGroup returns a group and its members.
func (s *Service) GetGroup(name string) (api.Group, []string, error) {
	var g api.Group
	var members []string
	err := s.st.View(func(tx store.Tx) error {
		var err error
		if g, err = s.getGroupTx(tx, name); err != nil {
			return err
		}
		users, err := store.All[api.User](tx, tUsers)
		for _, u := range users {
			if slices.Contains(u.Groups, name) {
				members = append(members, u.UserName)
			}
		}
		return err
	})
	return g, members, err
}

// ListGroups lists groups.
func (s *Service) ListGroups() ([]api.Group, error) { return list[api.Group](s, tGroups) }

// DeleteGroup removes an empty group without policies.
func (s *Service) DeleteGroup(name string) error {
	return s.update(func(tx store.Tx) error {
		g, err := s.getGroupTx(tx, name)
		if err != nil {
			return err
		}
		users, err := store.All[api.User](tx, tUsers)
		if err != nil {
			return err
		}
		for _, u := range users {
			if slices.Contains(u.Groups, name) {
				return api.Errorf(api.CodeDeleteConflict, "group %s still has member %s", name, u.UserName)
			}
		}
		if len(g.Attached) > 0 || len(g.Inline) > 0 {
			return api.Errorf(api.CodeDeleteConflict, "group %s still has policies", name)
		}
		return tx.Delete(tGroups, name)
	})
}

// AddUserToGroup and RemoveUserFromGroup change membership.
func (s *Service) AddUserToGroup(user, group string) error {
	return s.update(func(tx store.Tx) error {
		u, err := s.getUserTx(tx, user)
		if err != nil {
			return err
		}
		if _, err := s.getGroupTx(tx, group); err != nil {
			return err
		}
		if !slices.Contains(u.Groups, group) {
			u.Groups = append(u.Groups, group)
			sort.Strings(u.Groups)
		}
		return tx.Put(tUsers, user, u)
	})
}

func (s *Service) RemoveUserFromGroup(user, group string) error {
	return s.update(func(tx store.Tx) error {
		u, err := s.getUserTx(tx, user)
		if err != nil {
			return err
		}
		i := slices.Index(u.Groups, group)
		if i < 0 {
			return notFound("membership of group", group)
		}
		u.Groups = slices.Delete(u.Groups, i, i+1)
		return tx.Put(tUsers, user, u)
	})
}

// CreateRole adds a role with a trust policy.
func (s *Service) CreateRole(name, trust string, maxSession int64) (api.Role, error) {
	if err := checkName("role", name); err != nil {
		return api.Role{}, err
	}
	if _, err := parsePolicy(trust, policy.Trust); err != nil {
		return api.Role{}, err
	}
	if maxSession == 0 {
		maxSession = 3600
	}
	if maxSession < 900 || maxSession > 43200 {
		return api.Role{}, api.Errorf(api.CodeInvalidParameter, "MaxSessionDuration %d: must be 900..43200 seconds", maxSession)
	}
	id, err := newID("AROA", 17)
	if err != nil {
		return api.Role{}, err
	}
	r := api.Role{RoleName: name, RoleID: id, ARN: s.arn("iam", "role/"+name), CreatedAt: s.now().UTC(), MaxSessionDuration: maxSession}
	err = s.update(func(tx store.Tx) error {
		if r.TrustPolicy, err = s.bindPrincipalsTx(tx, trust, invalidPrincipal); err != nil {
			return err
		}
		if err := tx.Create(tRoles, name, r); err != nil {
			if errors.Is(err, store.ErrExists) {
				return exists("role", name)
			}
			return err
		}
		return nil
	})
	r.TrustPolicy = trust
	return r, err
}

// getRoleTx reads a role by its name, never by an ARN: a caller's ARN
// goes through roleRef first, so what is looked up is what was
// authorised.
func (s *Service) getRoleTx(tx store.Tx, name string) (api.Role, error) {
	return getTx[api.Role](tx, tRoles, "role", name)
}

// GetRole returns a role by name, its trust policy as users see it.
func (s *Service) GetRole(name string) (api.Role, error) {
	return view(s, func(tx store.Tx) (api.Role, error) {
		r, err := s.getRoleTx(tx, name)
		if err != nil {
			return r, err
		}
		rs, err := showRolesTx(tx, []api.Role{r})
		if err != nil {
			return r, err
		}
		return rs[0], nil
	})
}

// ListRoles lists roles.
func (s *Service) ListRoles() ([]api.Role, error) {
	return view(s, func(tx store.Tx) ([]api.Role, error) {
		rs, err := store.All[api.Role](tx, tRoles)
		if err != nil {
			return nil, err
		}
		return showRolesTx(tx, rs)
	})
}

// UpdateAssumeRolePolicy replaces a role's trust policy.
func (s *Service) UpdateAssumeRolePolicy(name, trust string) error {
	if _, err := parsePolicy(trust, policy.Trust); err != nil {
		return err
	}
	return s.update(func(tx store.Tx) error {
		r, err := s.getRoleTx(tx, name)
		if err != nil {
			return err
		}
		if r.TrustPolicy, err = s.bindPrincipalsTx(tx, trust, invalidPrincipal); err != nil {
			return err
		}
		return tx.Put(tRoles, r.RoleName, r)
	})
}

// DeleteRole removes a role without policies that no instance profile
// holds.
func (s *Service) DeleteRole(name string) error {
	return s.update(func(tx store.Tx) error {
		r, err := s.getRoleTx(tx, name)
		if err != nil {
			return err
		}
		if len(r.Attached) > 0 || len(r.Inline) > 0 {
			return api.Errorf(api.CodeDeleteConflict, "role %s still has policies", r.RoleName)
		}
		// As AWS: a role in an instance profile is removed from it first.
		if p, err := roleInProfileTx(tx, r); err != nil || p != "" {
			if err != nil {
				return err
			}
			return api.Errorf(api.CodeDeleteConflict, "role %s is in instance profile %s: remove it first", r.RoleName, p)
		}
		return tx.Delete(tRoles, r.RoleName)
	})
}

// Entity kinds that carry policies.
const (
	KindUser  = "user"
	KindGroup = "group"
	KindRole  = "role"
)

// editPolicies applies fn to the attached list and inline map of an
// identity, inside one transaction.
func (s *Service) editPolicies(kind, name string, fn func(tx store.Tx, attached *[]string, inline *map[string]string) error) error {
	return s.update(func(tx store.Tx) error {
		switch kind {
		case KindUser:
			u, err := s.getUserTx(tx, name)
			if err != nil {
				return err
			}
			if err := fn(tx, &u.Attached, &u.Inline); err != nil {
				return err
			}
			return tx.Put(tUsers, name, u)
		case KindGroup:
			g, err := s.getGroupTx(tx, name)
			if err != nil {
				return err
			}
			if err := fn(tx, &g.Attached, &g.Inline); err != nil {
				return err
			}
			return tx.Put(tGroups, name, g)
		case KindRole:
			r, err := s.getRoleTx(tx, name)
			if err != nil {
				return err
			}
			if err := fn(tx, &r.Attached, &r.Inline); err != nil {
				return err
			}
			return tx.Put(tRoles, r.RoleName, r)
		}
		return api.Errorf(api.CodeInvalidParameter, "unknown identity kind %q", kind)
	})
}

// AttachPolicy attaches a managed policy to a user, group or role.
func (s *Service) AttachPolicy(kind, name, policyARN string) error {
	arn := s.policyARN(policyARN)
	return s.editPolicies(kind, name, func(tx store.Tx, attached *[]string, _ *map[string]string) error {
		if _, err := s.getPolicyTx(tx, arn); err != nil {
			return err
		}
		if !slices.Contains(*attached, arn) {
			if len(*attached) >= 20 {
				return api.Errorf(api.CodeLimitExceeded, "at most 20 managed policies per %s", kind)
			}
			*attached = append(*attached, arn)
		}
		return nil
	})
}

// DetachPolicy detaches a managed policy.
func (s *Service) DetachPolicy(kind, name, policyARN string) error {
	arn := s.policyARN(policyARN)
	return s.editPolicies(kind, name, func(_ store.Tx, attached *[]string, _ *map[string]string) error {
		i := slices.Index(*attached, arn)
		if i < 0 {
			return notFound("attached policy", arn)
		}
		*attached = slices.Delete(*attached, i, i+1)
		return nil
	})
}

// PutInlinePolicy sets an inline policy.
func (s *Service) PutInlinePolicy(kind, name, policyName, document string) error {
	if err := checkName("policy", policyName); err != nil {
		return err
	}
	if _, err := parsePolicy(document, policy.Identity); err != nil {
		return err
	}
	return s.editPolicies(kind, name, func(_ store.Tx, _ *[]string, inline *map[string]string) error {
		if *inline == nil {
			*inline = map[string]string{}
		}
		(*inline)[policyName] = document
		return nil
	})
}

// DeleteInlinePolicy removes an inline policy.
func (s *Service) DeleteInlinePolicy(kind, name, policyName string) error {
	return s.editPolicies(kind, name, func(_ store.Tx, _ *[]string, inline *map[string]string) error {
		if _, ok := (*inline)[policyName]; !ok {
			return notFound("inline policy", policyName)
		}
		delete(*inline, policyName)
		return nil
	})
}
