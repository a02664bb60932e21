package iam

import (
	"context"
	"sort"
	"strings"

	"github.com/azote/azote/internal/api"
)

func req[T any](r any) *T { return r.(*T) }

func newOf[T any]() func() any { return func() any { return new(T) } }

func (s *Service) userARN(name string) string { return s.arn("iam", "user/"+name) }
func (s *Service) roleARN(name string) string { return s.arn("iam", "role/"+name) }

func none(err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// named checks a name a request must give (no self default) and makes
// the ARN it is authorised on.
func (s *Service) named(kind, name string) (string, error) {
	if err := checkName(kind, name); err != nil {
		return "", err
	}
	return s.arn("iam", kind+"/"+name), nil
}

// userARNOf is the ARN of the user a request names (userRef).
func (s *Service) userARNOf(ctx context.Context, name string) (string, error) {
	n, err := userRef(ctx, name)
	if err != nil {
		return "", err
	}
	return s.userARN(n), nil
}

// mfaListUser is the user whose devices ListMFADevices lists: the one
// named, or an IAM user caller itself; "" (every device, authorised on
// "*") for any other caller that names none.
func mfaListUser(ctx context.Context, name string) (string, error) {
	if c := api.CallerFrom(ctx); name == "" && (c == nil || c.Type != api.PrincipalUser) {
		return "", nil
	}
	return userRef(ctx, name)
}

// Operations returns the IAM and STS actions. Each Resource checks the
// request's names and Do acts on the same checked names, so what is
// authorised is what is touched (names.go).
func (s *Service) Operations() []*api.Operation {
	star := func(context.Context, any) (string, error) { return "*", nil }
	user := func(ctx context.Context, r any) (string, error) {
		return s.userARNOf(ctx, req[api.UserRequest](r).UserName)
	}
	namedUser := func(_ context.Context, r any) (string, error) {
		return s.named("user", req[api.UserRequest](r).UserName)
	}
	group := func(_ context.Context, r any) (string, error) {
		return s.named("group", req[api.GroupRequest](r).GroupName)
	}
	member := func(_ context.Context, r any) (string, error) {
		m := req[api.GroupMemberRequest](r)
		if err := checkName("user", m.UserName); err != nil {
			return "", err
		}
		return s.named("group", m.GroupName)
	}
	role := func(_ context.Context, r any) (string, error) {
		return s.named("role", req[api.RoleRequest](r).RoleName)
	}
	pol := func(_ context.Context, r any) (string, error) {
		return s.policyRef(req[api.PolicyRequest](r).PolicyArn)
	}
	ops := []*api.Operation{
		{Name: "iam:CreateUser", NewRequest: newOf[api.UserRequest](), Resource: namedUser,
			Do: func(ctx context.Context, c *api.Caller, r any) (any, error) {
				return s.CreateUser(req[api.UserRequest](r).UserName)
			}},
		{Name: "iam:GetUser", ReadOnly: true, NewRequest: newOf[api.UserRequest](), Resource: user,
			Do: func(ctx context.Context, c *api.Caller, r any) (any, error) {
				n, err := userRef(ctx, req[api.UserRequest](r).UserName)
				if err != nil {
					return nil, err
				}
				return s.GetUser(n)
			}},
		{Name: "iam:ListUsers", ReadOnly: true, Resource: star,
			Do: func(context.Context, *api.Caller, any) (any, error) { return s.ListUsers() }},
		{Name: "iam:DeleteUser", NewRequest: newOf[api.UserRequest](), Resource: namedUser,
			Do: func(ctx context.Context, c *api.Caller, r any) (any, error) {
				return none(s.DeleteUser(req[api.UserRequest](r).UserName))
			}},

		{Name: "iam:CreateGroup", NewRequest: newOf[api.GroupRequest](), Resource: group,
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				return s.CreateGroup(req[api.GroupRequest](r).GroupName)
			}},
		{Name: "iam:GetGroup", ReadOnly: true, NewRequest: newOf[api.GroupRequest](), Resource: group,
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				g, users, err := s.GetGroup(req[api.GroupRequest](r).GroupName)
				return map[string]any{"Group": g, "Users": users}, err
			}},
		{Name: "iam:ListGroups", ReadOnly: true, Resource: star,
			Do: func(context.Context, *api.Caller, any) (any, error) { return s.ListGroups() }},
		{Name: "iam:DeleteGroup", NewRequest: newOf[api.GroupRequest](), Resource: group,
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				return none(s.DeleteGroup(req[api.GroupRequest](r).GroupName))
			}},
		{Name: "iam:AddUserToGroup", NewRequest: newOf[api.GroupMemberRequest](), Resource: member,
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				m := req[api.GroupMemberRequest](r)
				return none(s.AddUserToGroup(m.UserName, m.GroupName))
			}},
		{Name: "iam:RemoveUserFromGroup", NewRequest: newOf[api.GroupMemberRequest](), Resource: member,
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				m := req[api.GroupMemberRequest](r)
				return none(s.RemoveUserFromGroup(m.UserName, m.GroupName))
			}},

		{Name: "iam:CreateRole", NewRequest: newOf[api.CreateRoleRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.named("role", req[api.CreateRoleRequest](r).RoleName)
		}, Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
			q := req[api.CreateRoleRequest](r)
			return s.CreateRole(q.RoleName, q.AssumeRolePolicyDocument, q.MaxSessionDuration)
		}},
		{Name: "iam:GetRole", ReadOnly: true, NewRequest: newOf[api.RoleRequest](), Resource: role,
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				return s.GetRole(req[api.RoleRequest](r).RoleName)
			}},
		{Name: "iam:ListRoles", ReadOnly: true, Resource: star,
			Do: func(context.Context, *api.Caller, any) (any, error) { return s.ListRoles() }},
		{Name: "iam:UpdateAssumeRolePolicy", NewRequest: newOf[api.UpdateAssumeRolePolicyRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.named("role", req[api.UpdateAssumeRolePolicyRequest](r).RoleName)
		}, Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
			q := req[api.UpdateAssumeRolePolicyRequest](r)
			return none(s.UpdateAssumeRolePolicy(q.RoleName, q.PolicyDocument))
		}},
		{Name: "iam:DeleteRole", NewRequest: newOf[api.RoleRequest](), Resource: role,
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				return none(s.DeleteRole(req[api.RoleRequest](r).RoleName))
			}},

		{Name: "iam:CreatePolicy", NewRequest: newOf[api.CreatePolicyRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.named("policy", req[api.CreatePolicyRequest](r).PolicyName)
		}, Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
			q := req[api.CreatePolicyRequest](r)
			return s.CreatePolicy(q.PolicyName, q.PolicyDocument)
		}},
		{Name: "iam:GetPolicy", ReadOnly: true, NewRequest: newOf[api.PolicyRequest](), Resource: pol,
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				return s.GetPolicy(req[api.PolicyRequest](r).PolicyArn)
			}},
		{Name: "iam:ListPolicies", ReadOnly: true, Resource: star,
			Do: func(context.Context, *api.Caller, any) (any, error) { return s.ListPolicies() }},
		{Name: "iam:DeletePolicy", NewRequest: newOf[api.PolicyRequest](), Resource: pol,
			Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
				return none(s.DeletePolicy(req[api.PolicyRequest](r).PolicyArn))
			}},
	}
	for _, kind := range []string{KindUser, KindGroup, KindRole} {
		kind := kind
		noun := map[string]string{KindUser: "User", KindGroup: "Group", KindRole: "Role"}[kind]
		// target is the identity a policy call names, checked; a
		// role is named by its name, as in AWS, never by an ARN.
		target := func(ctx context.Context, u, g, r string) (string, error) {
			switch kind {
			case KindUser:
				return userRef(ctx, u)
			case KindGroup:
				return g, checkName("group", g)
			}
			return r, checkName("role", r)
		}
		arnOf := func(ctx context.Context, u, g, r string) (string, error) {
			name, err := target(ctx, u, g, r)
			if err != nil {
				return "", err
			}
			return s.arn("iam", kind+"/"+name), nil
		}
		ops = append(ops,
			&api.Operation{Name: "iam:Attach" + noun + "Policy", NewRequest: newOf[api.AttachRequest](), Resource: func(ctx context.Context, r any) (string, error) {
				q := req[api.AttachRequest](r)
				if _, err := s.policyRef(q.PolicyArn); err != nil {
					return "", err
				}
				return arnOf(ctx, q.UserName, q.GroupName, q.RoleName)
			}, Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				q := req[api.AttachRequest](r)
				name, err := target(ctx, q.UserName, q.GroupName, q.RoleName)
				if err != nil {
					return nil, err
				}
				return none(s.AttachPolicy(kind, name, q.PolicyArn))
			}},
			&api.Operation{Name: "iam:Detach" + noun + "Policy", NewRequest: newOf[api.AttachRequest](), Resource: func(ctx context.Context, r any) (string, error) {
				q := req[api.AttachRequest](r)
				if _, err := s.policyRef(q.PolicyArn); err != nil {
					return "", err
				}
				return arnOf(ctx, q.UserName, q.GroupName, q.RoleName)
			}, Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				q := req[api.AttachRequest](r)
				name, err := target(ctx, q.UserName, q.GroupName, q.RoleName)
				if err != nil {
					return nil, err
				}
				return none(s.DetachPolicy(kind, name, q.PolicyArn))
			}},
			&api.Operation{Name: "iam:Put" + noun + "Policy", NewRequest: newOf[api.InlinePolicyRequest](), Resource: func(ctx context.Context, r any) (string, error) {
				q := req[api.InlinePolicyRequest](r)
				if err := checkName("policy", q.PolicyName); err != nil {
					return "", err
				}
				return arnOf(ctx, q.UserName, q.GroupName, q.RoleName)
			}, Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				q := req[api.InlinePolicyRequest](r)
				name, err := target(ctx, q.UserName, q.GroupName, q.RoleName)
				if err != nil {
					return nil, err
				}
				return none(s.PutInlinePolicy(kind, name, q.PolicyName, q.PolicyDocument))
			}},
			&api.Operation{Name: "iam:Delete" + noun + "Policy", NewRequest: newOf[api.InlinePolicyRequest](), Resource: func(ctx context.Context, r any) (string, error) {
				q := req[api.InlinePolicyRequest](r)
				if err := checkName("policy", q.PolicyName); err != nil {
					return "", err
				}
				return arnOf(ctx, q.UserName, q.GroupName, q.RoleName)
			}, Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				q := req[api.InlinePolicyRequest](r)
				name, err := target(ctx, q.UserName, q.GroupName, q.RoleName)
				if err != nil {
					return nil, err
				}
				return none(s.DeleteInlinePolicy(kind, name, q.PolicyName))
			}},
		)
	}
	// An access-key call acts on a key of the user it is authorised on:
	// the key's owner must be that user (getKeyTx), so the ARN
	// evaluated is the owner's. A caller that is not an IAM user must
	// name the user.
	keyUser := func(ctx context.Context, r any) (string, error) {
		return s.userARNOf(ctx, req[api.AccessKeyRequest](r).UserName)
	}
	newKeyUser := func(ctx context.Context, r any) (string, error) {
		name := req[api.UserRequest](r).UserName
		if c := api.CallerFrom(ctx); name == "" && c != nil && (c.Type == api.PrincipalRoot || c.Type == api.PrincipalHostRoot) {
			return "", api.Errorf(api.CodeRootAccessKeysDisabled, "root has no access keys: use an IAM user, or an MFA session for root")
		}
		return s.userARNOf(ctx, name)
	}
	mfaUser := func(ctx context.Context, r any) (string, error) {
		q := req[api.MFADeviceRequest](r)
		if _, err := s.mfaSerialRef(q.SerialNumber); err != nil {
			return "", err
		}
		return s.userARNOf(ctx, q.UserName)
	}
	ops = append(ops,
		&api.Operation{Name: "iam:CreateAccessKey", NewRequest: newOf[api.UserRequest](), Resource: newKeyUser,
			Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				n, err := userRef(ctx, req[api.UserRequest](r).UserName)
				if err != nil {
					return nil, err
				}
				return s.CreateAccessKey(n)
			}},
		&api.Operation{Name: "iam:ListAccessKeys", ReadOnly: true, NewRequest: newOf[api.UserRequest](), Resource: user,
			Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				n, err := userRef(ctx, req[api.UserRequest](r).UserName)
				if err != nil {
					return nil, err
				}
				return s.ListAccessKeys(n)
			}},
		&api.Operation{Name: "iam:UpdateAccessKey", NewRequest: newOf[api.AccessKeyRequest](), Resource: keyUser,
			Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				q := req[api.AccessKeyRequest](r)
				n, err := userRef(ctx, q.UserName)
				if err != nil {
					return nil, err
				}
				return none(s.UpdateAccessKey(n, q.AccessKeyID, q.Status))
			}},
		&api.Operation{Name: "iam:RotateAccessKey", NewRequest: newOf[api.AccessKeyRequest](), Resource: keyUser,
			Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				q := req[api.AccessKeyRequest](r)
				n, err := userRef(ctx, q.UserName)
				if err != nil {
					return nil, err
				}
				return s.RotateAccessKey(n, q.AccessKeyID)
			}},
		&api.Operation{Name: "iam:DeleteAccessKey", NewRequest: newOf[api.AccessKeyRequest](), Resource: keyUser,
			Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				q := req[api.AccessKeyRequest](r)
				n, err := userRef(ctx, q.UserName)
				if err != nil {
					return nil, err
				}
				return none(s.DeleteAccessKey(n, q.AccessKeyID))
			}},
		// A device is bound to its user when it is made, so making one
		// is authorised on the device and on the user it is bound to.
		&api.Operation{Name: "iam:CreateVirtualMFADevice", NewRequest: newOf[api.CreateVirtualMFADeviceRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.named("mfa", req[api.CreateVirtualMFADeviceRequest](r).VirtualMFADeviceName)
		}, Also: func(ctx context.Context, r any) ([]string, error) {
			a, err := s.userARNOf(ctx, req[api.CreateVirtualMFADeviceRequest](r).UserName)
			return []string{a}, err
		}, Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
			q := req[api.CreateVirtualMFADeviceRequest](r)
			u, err := userRef(ctx, q.UserName)
			if err != nil {
				return nil, err
			}
			return s.CreateVirtualMFADevice(q.VirtualMFADeviceName, u)
		}},
		&api.Operation{Name: "iam:EnableMFADevice", NewRequest: newOf[api.EnableMFADeviceRequest](), Resource: func(ctx context.Context, r any) (string, error) {
			q := req[api.EnableMFADeviceRequest](r)
			if _, err := s.mfaSerialRef(q.SerialNumber); err != nil {
				return "", err
			}
			return s.userARNOf(ctx, q.UserName)
		}, Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
			q := req[api.EnableMFADeviceRequest](r)
			u, err := userRef(ctx, q.UserName)
			if err != nil {
				return nil, err
			}
			return none(s.EnableMFADevice(u, q.SerialNumber, q.AuthenticationCode1, q.AuthenticationCode2))
		}},
		&api.Operation{Name: "iam:DeactivateMFADevice", NewRequest: newOf[api.MFADeviceRequest](), Resource: mfaUser,
			Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				q := req[api.MFADeviceRequest](r)
				u, err := userRef(ctx, q.UserName)
				if err != nil {
					return nil, err
				}
				return none(s.DeactivateMFADevice(u, q.SerialNumber))
			}},
		&api.Operation{Name: "iam:ListMFADevices", ReadOnly: true, NewRequest: newOf[api.UserRequest](), Resource: func(ctx context.Context, r any) (string, error) {
			n, err := mfaListUser(ctx, req[api.UserRequest](r).UserName)
			if err != nil || n == "" {
				return "*", err
			}
			return s.userARN(n), nil
		}, Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
			n, err := mfaListUser(ctx, req[api.UserRequest](r).UserName)
			if err != nil {
				return nil, err
			}
			return s.ListMFADevices(n)
		}},
		&api.Operation{Name: "iam:GetAccountSummary", ReadOnly: true, Resource: star,
			Do: func(context.Context, *api.Caller, any) (any, error) { return s.Account() }},
		&api.Operation{Name: "iam:ExportState", ReadOnly: true, Resource: star,
			Do: func(context.Context, *api.Caller, any) (any, error) { return s.Export() }},

		&api.Operation{Name: "sts:GetCallerIdentity", ReadOnly: true, Resource: star,
			Do: func(_ context.Context, c *api.Caller, _ any) (any, error) {
				return map[string]any{"Account": c.AccountID, "Arn": c.ARN, "UserId": c.PrincipalID, "Type": c.Type, "MFA": c.MFA}, nil
			}},
		&api.Operation{Name: "sts:GetSessionToken", ReadOnly: true, NewRequest: newOf[api.GetSessionTokenRequest](), Resource: func(ctx context.Context, r any) (string, error) {
			if req[api.GetSessionTokenRequest](r).Root {
				return s.RootARN(), nil
			}
			if c := api.CallerFrom(ctx); c != nil {
				return c.ARN, nil
			}
			return "*", nil
		}, Do: func(_ context.Context, c *api.Caller, r any) (any, error) {
			creds, err := s.GetSessionToken(c, *req[api.GetSessionTokenRequest](r))
			return map[string]any{"Credentials": creds}, err
		}},
		&api.Operation{Name: "sts:AssumeRole", NewRequest: newOf[api.AssumeRoleRequest](), Resource: func(_ context.Context, r any) (string, error) {
			name, err := s.roleRef(req[api.AssumeRoleRequest](r).RoleArn)
			if err != nil {
				return "", err
			}
			return s.roleARN(name), nil
		}, Do: func(_ context.Context, c *api.Caller, r any) (any, error) {
			return s.AssumeRole(c, *req[api.AssumeRoleRequest](r))
		}},
	)
	ops = append(ops, s.profileOperations()...)
	for _, op := range ops {
		if strings.HasPrefix(op.Name, "iam:Attach") || strings.HasPrefix(op.Name, "iam:Detach") {
			op.Conditions = s.policyARNCondition
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].Name < ops[j].Name })
	return ops
}

// policyARNCondition gives iam:PolicyARN to Attach*Policy and
// Detach*Policy: the ARN of the managed policy, as the call resolves it,
// so that a user allowed to manage their own policies can be kept from
// attaching AdministratorAccess.
func (s *Service) policyARNCondition(_ context.Context, r any) map[string][]string {
	return map[string][]string{"iam:policyarn": {s.policyARN(req[api.AttachRequest](r).PolicyArn)}}
}
