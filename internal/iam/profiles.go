package iam

import (
	"context"
	"sort"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/iam/policy"
	"github.com/azote/azote/internal/store"
)

// Instance profiles, with AWS's names and rules: a profile holds at most
// one role (LimitExceeded), a profile that still holds a role cannot be
// deleted, and neither can a role that is in a profile (DeleteConflict).
// A profile is what an instance is launched with; the role's trust policy
// must let the compute service (api.ComputeServicePrincipal) assume it.

// profileRecord is a profile as stored: its role by name and unique id,
// so that a role deleted and made again under the same name is not taken
// for the one that was added (DeleteRole refuses while the role is in a
// profile, so this is a second guard).
type profileRecord struct {
	Name      string `json:"name"`
	ID        string `json:"id"`
	ARN       string `json:"arn"`
	CreatedAt string `json:"created_at"`
	RoleName  string `json:"role_name,omitempty"`
	RoleID    string `json:"role_id,omitempty"`
}

// tProfiles holds instance profiles by name.
const tProfiles = "iam-instance-profiles"

// profileARN is the ARN of the profile called name.
func (s *Service) profileARN(name string) string { return s.arn("iam", "instance-profile/"+name) }

// profileRef resolves an instance profile reference: this account's
// profile ARN, or a profile name (what `instance run
// --iam-instance-profile` takes, as EC2's IamInstanceProfile takes Arn or
// Name).
func (s *Service) profileRef(ref string) (string, error) {
	if api.LooksLikeARN(ref) {
		name, ok := s.ownARN(ref, "instance-profile")
		if !ok {
			return "", api.Errorf(api.CodeInvalidParameter, "%q is not an instance profile ARN of account %s", shown(ref), s.AccountID())
		}
		ref = name
	}
	return ref, checkName("instance profile", ref)
}

func (s *Service) getProfileTx(tx store.Tx, name string) (profileRecord, error) {
	return getTx[profileRecord](tx, tProfiles, "instance profile", name)
}

// showProfileTx renders a stored profile with its role as users see it.
func (s *Service) showProfileTx(tx store.Tx, p profileRecord) (api.InstanceProfile, error) {
	out := api.InstanceProfile{InstanceProfileName: p.Name, InstanceProfileID: p.ID, ARN: p.ARN, Roles: []api.Role{}}
	if err := out.CreatedAt.UnmarshalText([]byte(p.CreatedAt)); err != nil {
		return out, err
	}
	if p.RoleName == "" {
		return out, nil
	}
	r, err := s.getRoleTx(tx, p.RoleName)
	switch {
	case api.IsCode(err, api.CodeNoSuchEntity):
		return out, nil
	case err != nil:
		return out, err
	case r.RoleID != p.RoleID:
		return out, nil
	}
	rs, err := showRolesTx(tx, []api.Role{r})
	if err != nil {
		return out, err
	}
	out.Roles = rs
	return out, nil
}

// CreateInstanceProfile adds an empty profile.
func (s *Service) CreateInstanceProfile(name string) (api.InstanceProfile, error) {
	if err := checkName("instance profile", name); err != nil {
		return api.InstanceProfile{}, err
	}
	id, err := newID("AIPA", 17)
	if err != nil {
		return api.InstanceProfile{}, err
	}
	created, _ := s.now().UTC().MarshalText()
	p := profileRecord{Name: name, ID: id, ARN: s.profileARN(name), CreatedAt: string(created)}
	if err := s.create(tProfiles, "instance profile", name, p); err != nil {
		return api.InstanceProfile{}, err
	}
	return view(s, func(tx store.Tx) (api.InstanceProfile, error) { return s.showProfileTx(tx, p) })
}

// GetInstanceProfile returns a profile and its role.
func (s *Service) GetInstanceProfile(name string) (api.InstanceProfile, error) {
	return view(s, func(tx store.Tx) (api.InstanceProfile, error) {
		p, err := s.getProfileTx(tx, name)
		if err != nil {
			return api.InstanceProfile{}, err
		}
		return s.showProfileTx(tx, p)
	})
}

// ListInstanceProfiles lists every profile, by name.
func (s *Service) ListInstanceProfiles() ([]api.InstanceProfile, error) {
	return s.listProfiles(func(profileRecord) bool { return true })
}

// ListInstanceProfilesForRole lists the profiles that hold role.
func (s *Service) ListInstanceProfilesForRole(role string) ([]api.InstanceProfile, error) {
	r, err := view(s, func(tx store.Tx) (api.Role, error) { return s.getRoleTx(tx, role) })
	if err != nil {
		return nil, err
	}
	return s.listProfiles(func(p profileRecord) bool { return p.RoleName == r.RoleName && p.RoleID == r.RoleID })
}

func (s *Service) listProfiles(keep func(profileRecord) bool) ([]api.InstanceProfile, error) {
	return view(s, func(tx store.Tx) ([]api.InstanceProfile, error) {
		ps, err := store.All[profileRecord](tx, tProfiles)
		if err != nil {
			return nil, err
		}
		out := []api.InstanceProfile{}
		for _, p := range ps {
			if !keep(p) {
				continue
			}
			v, err := s.showProfileTx(tx, p)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].InstanceProfileName < out[j].InstanceProfileName })
		return out, nil
	})
}

// DeleteInstanceProfile removes a profile that holds no role (AWS
// refuses the same: remove the role first).
func (s *Service) DeleteInstanceProfile(name string) error {
	return s.update(func(tx store.Tx) error {
		p, err := s.getProfileTx(tx, name)
		if err != nil {
			return err
		}
		if p.RoleName != "" {
			return api.Errorf(api.CodeDeleteConflict, "instance profile %s still has role %s: remove it first", name, p.RoleName)
		}
		return tx.Delete(tProfiles, name)
	})
}

// AddRoleToInstanceProfile puts role in the profile, which may hold one
// role only. The caller must also be allowed iam:PassRole on the role
// (the operation authorises it): whoever may launch with the profile then
// gets the role's permissions.
func (s *Service) AddRoleToInstanceProfile(profile, role string) error {
	return s.update(func(tx store.Tx) error {
		p, err := s.getProfileTx(tx, profile)
		if err != nil {
			return err
		}
		r, err := s.getRoleTx(tx, role)
		if err != nil {
			return err
		}
		if p.RoleName != "" {
			return api.Errorf(api.CodeLimitExceeded, "instance profile %s already has role %s: a profile holds one role", profile, p.RoleName)
		}
		p.RoleName, p.RoleID = r.RoleName, r.RoleID
		return tx.Put(tProfiles, p.Name, p)
	})
}

// RemoveRoleFromInstanceProfile takes role out of the profile. Sessions
// already given to instances keep working until they expire, as in AWS;
// no new ones are made.
func (s *Service) RemoveRoleFromInstanceProfile(profile, role string) error {
	return s.update(func(tx store.Tx) error {
		p, err := s.getProfileTx(tx, profile)
		if err != nil {
			return err
		}
		if p.RoleName != role {
			return api.Errorf(api.CodeNoSuchEntity, "instance profile %s does not have role %s", profile, shown(role))
		}
		p.RoleName, p.RoleID = "", ""
		return tx.Put(tProfiles, p.Name, p)
	})
}

// roleInProfileTx is the name of a profile that holds role, if any.
func roleInProfileTx(tx store.Tx, role api.Role) (string, error) {
	ps, err := store.All[profileRecord](tx, tProfiles)
	if err != nil {
		return "", err
	}
	for _, p := range ps {
		if p.RoleName == role.RoleName {
			return p.Name, nil
		}
	}
	return "", nil
}

// InstanceProfileForLaunch resolves the profile an instance is to be
// launched with (a name or ARN) and checks that it can serve one: it
// exists (NoSuchEntity), holds a role (InvalidParameterValue) whose trust
// policy lets api.ComputeServicePrincipal assume it
// (InvalidParameterValue). The profile is returned with its role whenever
// it has one, even with an error, so that the caller can authorise
// iam:PassRole on the role first (the refusal a caller sees does not
// depend on a trust policy it may not read).
func (s *Service) InstanceProfileForLaunch(ref string) (api.InstanceProfile, error) {
	name, err := s.profileRef(ref)
	if err != nil {
		return api.InstanceProfile{}, err
	}
	p, err := s.GetInstanceProfile(name)
	if err != nil {
		return api.InstanceProfile{}, err
	}
	if len(p.Roles) == 0 {
		return p, api.Errorf(api.CodeInvalidParameter, "instance profile %s has no role: add one with azote iam add-role-to-instance-profile", name)
	}
	if err := s.trustsCompute(p.Roles[0]); err != nil {
		return p, err
	}
	return p, nil
}

// trustsCompute checks that role's trust policy lets the compute service
// assume it, as STS checks ec2.amazonaws.com's AssumeRole for EC2.
func (s *Service) trustsCompute(role api.Role) error {
	trust, err := parsePolicy(role.TrustPolicy, policy.Trust)
	if err != nil {
		return err
	}
	req := &policy.Request{Action: "sts:AssumeRole", Resource: role.ARN,
		Context: map[string][]string{"azote:principalservice": {api.ComputeServicePrincipal}}}
	res := policy.EvaluateResourceRequired(nil, []policy.Named{{Name: "trust policy of " + role.RoleName, Doc: trust}}, req)
	if res.Decision != policy.Allow {
		return api.Errorf(api.CodeInvalidParameter,
			`the trust policy of role %s does not let the compute service assume it: add {"Effect": "Allow", "Principal": {"Service": %q}, "Action": "sts:AssumeRole"}`,
			role.RoleName, api.ComputeServicePrincipal)
	}
	return nil
}

// profileOperations are the instance-profile actions. Each authorises on
// the profile's ARN (AddRoleToInstanceProfile also iam:PassRole on the
// role, as AWS requires) and acts on the same checked names.
func (s *Service) profileOperations() []*api.Operation {
	profile := func(_ context.Context, r any) (string, error) {
		return s.named("instance-profile", req[api.InstanceProfileRequest](r).InstanceProfileName)
	}
	profileOfPair := func(_ context.Context, r any) (string, error) {
		q := req[api.InstanceProfileRoleRequest](r)
		if err := checkName("role", q.RoleName); err != nil {
			return "", err
		}
		return s.named("instance-profile", q.InstanceProfileName)
	}
	return []*api.Operation{
		{Name: "iam:CreateInstanceProfile", NewRequest: newOf[api.InstanceProfileRequest](), Resource: profile,
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				p, err := s.CreateInstanceProfile(req[api.InstanceProfileRequest](r).InstanceProfileName)
				return map[string]any{"InstanceProfile": p}, err
			}},
		{Name: "iam:GetInstanceProfile", ReadOnly: true, NewRequest: newOf[api.InstanceProfileRequest](), Resource: profile,
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				p, err := s.GetInstanceProfile(req[api.InstanceProfileRequest](r).InstanceProfileName)
				return map[string]any{"InstanceProfile": p}, err
			}},
		{Name: "iam:ListInstanceProfiles", ReadOnly: true, Resource: func(context.Context, any) (string, error) { return "*", nil },
			Do: func(context.Context, *api.Caller, any) (any, error) {
				ps, err := s.ListInstanceProfiles()
				return map[string]any{"InstanceProfiles": ps}, err
			}},
		{Name: "iam:ListInstanceProfilesForRole", ReadOnly: true, NewRequest: newOf[api.RoleRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.named("role", req[api.RoleRequest](r).RoleName)
		}, Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
			ps, err := s.ListInstanceProfilesForRole(req[api.RoleRequest](r).RoleName)
			return map[string]any{"InstanceProfiles": ps}, err
		}},
		{Name: "iam:DeleteInstanceProfile", NewRequest: newOf[api.InstanceProfileRequest](), Resource: profile,
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				return none(s.DeleteInstanceProfile(req[api.InstanceProfileRequest](r).InstanceProfileName))
			}},
		{Name: "iam:AddRoleToInstanceProfile", NewRequest: newOf[api.InstanceProfileRoleRequest](), Resource: profileOfPair,
			// Putting a role in a profile hands it to whoever may launch
			// with the profile: AWS requires iam:PassRole on the role.
			Also: func(_ context.Context, r any) ([]string, error) {
				return []string{s.roleARN(req[api.InstanceProfileRoleRequest](r).RoleName)}, nil
			}, AlsoAction: "iam:PassRole",
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				q := req[api.InstanceProfileRoleRequest](r)
				return none(s.AddRoleToInstanceProfile(q.InstanceProfileName, q.RoleName))
			}},
		{Name: "iam:RemoveRoleFromInstanceProfile", NewRequest: newOf[api.InstanceProfileRoleRequest](), Resource: profileOfPair,
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				q := req[api.InstanceProfileRoleRequest](r)
				return none(s.RemoveRoleFromInstanceProfile(q.InstanceProfileName, q.RoleName))
			}},
	}
}
