package iam

import (
	"context"
	"sort"
	"strings"

	"github.com/azote/azote/internal/api"
)

// Request bodies of the IAM actions, in AWS's field names.
type (
	UserRequest struct {
		UserName string `json:"UserName,omitempty"`
	}
	GroupRequest struct {
		GroupName string `json:"GroupName"`
	}
	GroupMemberRequest struct {
		GroupName string `json:"GroupName"`
		UserName  string `json:"UserName"`
	}
	CreateRoleRequest struct {
		RoleName                 string `json:"RoleName"`
		AssumeRolePolicyDocument string `json:"AssumeRolePolicyDocument"`
		MaxSessionDuration       int64  `json:"MaxSessionDuration,omitempty"`
	}
	RoleRequest struct {
		RoleName string `json:"RoleName"`
	}
	UpdateAssumeRolePolicyRequest struct {
		RoleName       string `json:"RoleName"`
		PolicyDocument string `json:"PolicyDocument"`
	}
	CreatePolicyRequest struct {
		PolicyName     string `json:"PolicyName"`
		PolicyDocument string `json:"PolicyDocument"`
	}
	PolicyRequest struct {
		PolicyArn string `json:"PolicyArn"`
	}
	// AttachRequest names the identity by one of UserName, GroupName,
	// RoleName (the action says which).
	AttachRequest struct {
		UserName  string `json:"UserName,omitempty"`
		GroupName string `json:"GroupName,omitempty"`
		RoleName  string `json:"RoleName,omitempty"`
		PolicyArn string `json:"PolicyArn"`
	}
	InlinePolicyRequest struct {
		UserName       string `json:"UserName,omitempty"`
		GroupName      string `json:"GroupName,omitempty"`
		RoleName       string `json:"RoleName,omitempty"`
		PolicyName     string `json:"PolicyName"`
		PolicyDocument string `json:"PolicyDocument,omitempty"`
	}
	AccessKeyRequest struct {
		UserName    string `json:"UserName,omitempty"`
		AccessKeyID string `json:"AccessKeyId"`
		Status      string `json:"Status,omitempty"`
	}
	CreateVirtualMFADeviceRequest struct {
		VirtualMFADeviceName string `json:"VirtualMFADeviceName"`
		UserName             string `json:"UserName,omitempty"`
	}
	EnableMFADeviceRequest struct {
		UserName            string `json:"UserName,omitempty"`
		SerialNumber        string `json:"SerialNumber"`
		AuthenticationCode1 string `json:"AuthenticationCode1"`
		AuthenticationCode2 string `json:"AuthenticationCode2"`
	}
	MFADeviceRequest struct {
		UserName     string `json:"UserName,omitempty"`
		SerialNumber string `json:"SerialNumber"`
	}
)

// self fills an empty user name with the caller's own (as IAM does for
// the self-service actions).
func self(ctx context.Context, name string) string {
	if name != "" {
		return name
	}
	if c := api.CallerFrom(ctx); c != nil && c.Type == api.PrincipalUser {
		return c.UserName
	}
	return name
}

func req[T any](r any) *T { return r.(*T) }

func newOf[T any]() func() any { return func() any { return new(T) } }

func (s *Service) userARN(name string) string  { return s.arn("iam", "user/"+name) }
func (s *Service) groupARN(name string) string { return s.arn("iam", "group/"+name) }
func (s *Service) roleARN(name string) string  { return s.arn("iam", "role/"+name) }

func none(err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// Operations returns the IAM and STS actions.
func (s *Service) Operations() []*api.Operation {
	star := func(context.Context, any) (string, error) { return "*", nil }
	user := func(ctx context.Context, r any) (string, error) {
		return s.userARN(self(ctx, req[UserRequest](r).UserName)), nil
	}
	ops := []*api.Operation{
		{Name: "iam:CreateUser", NewRequest: newOf[UserRequest](), Resource: user,
			Do: func(ctx context.Context, c *api.Caller, r any) (any, error) {
				return s.CreateUser(req[UserRequest](r).UserName)
			}},
		{Name: "iam:GetUser", ReadOnly: true, NewRequest: newOf[UserRequest](), Resource: user,
			Do: func(ctx context.Context, c *api.Caller, r any) (any, error) {
				return s.GetUser(self(ctx, req[UserRequest](r).UserName))
			}},
		{Name: "iam:ListUsers", ReadOnly: true, Resource: star,
			Do: func(context.Context, *api.Caller, any) (any, error) { return s.ListUsers() }},
		{Name: "iam:DeleteUser", NewRequest: newOf[UserRequest](), Resource: user,
			Do: func(ctx context.Context, c *api.Caller, r any) (any, error) {
				return none(s.DeleteUser(req[UserRequest](r).UserName))
			}},

		{Name: "iam:CreateGroup", NewRequest: newOf[GroupRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.groupARN(req[GroupRequest](r).GroupName), nil
		}, Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
			return s.CreateGroup(req[GroupRequest](r).GroupName)
		}},
		{Name: "iam:GetGroup", ReadOnly: true, NewRequest: newOf[GroupRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.groupARN(req[GroupRequest](r).GroupName), nil
		}, Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
			g, users, err := s.GetGroup(req[GroupRequest](r).GroupName)
			return map[string]any{"Group": g, "Users": users}, err
		}},
		{Name: "iam:ListGroups", ReadOnly: true, Resource: star,
			Do: func(context.Context, *api.Caller, any) (any, error) { return s.ListGroups() }},
		{Name: "iam:DeleteGroup", NewRequest: newOf[GroupRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.groupARN(req[GroupRequest](r).GroupName), nil
		}, Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
			return none(s.DeleteGroup(req[GroupRequest](r).GroupName))
		}},
		{Name: "iam:AddUserToGroup", NewRequest: newOf[GroupMemberRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.groupARN(req[GroupMemberRequest](r).GroupName), nil
		}, Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
			m := req[GroupMemberRequest](r)
			return none(s.AddUserToGroup(m.UserName, m.GroupName))
		}},
		{Name: "iam:RemoveUserFromGroup", NewRequest: newOf[GroupMemberRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.groupARN(req[GroupMemberRequest](r).GroupName), nil
		}, Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
			m := req[GroupMemberRequest](r)
			return none(s.RemoveUserFromGroup(m.UserName, m.GroupName))
		}},

		{Name: "iam:CreateRole", NewRequest: newOf[CreateRoleRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.roleARN(req[CreateRoleRequest](r).RoleName), nil
		}, Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
			q := req[CreateRoleRequest](r)
			return s.CreateRole(q.RoleName, q.AssumeRolePolicyDocument, q.MaxSessionDuration)
		}},
		{Name: "iam:GetRole", ReadOnly: true, NewRequest: newOf[RoleRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.roleARN(req[RoleRequest](r).RoleName), nil
		}, Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
			return s.GetRole(req[RoleRequest](r).RoleName)
		}},
		{Name: "iam:ListRoles", ReadOnly: true, Resource: star,
			Do: func(context.Context, *api.Caller, any) (any, error) { return s.ListRoles() }},
		{Name: "iam:UpdateAssumeRolePolicy", NewRequest: newOf[UpdateAssumeRolePolicyRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.roleARN(req[UpdateAssumeRolePolicyRequest](r).RoleName), nil
		}, Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
			q := req[UpdateAssumeRolePolicyRequest](r)
			return none(s.UpdateAssumeRolePolicy(q.RoleName, q.PolicyDocument))
		}},
		{Name: "iam:DeleteRole", NewRequest: newOf[RoleRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.roleARN(req[RoleRequest](r).RoleName), nil
		}, Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
			return none(s.DeleteRole(req[RoleRequest](r).RoleName))
		}},

		{Name: "iam:CreatePolicy", NewRequest: newOf[CreatePolicyRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.arn("iam", "policy/"+req[CreatePolicyRequest](r).PolicyName), nil
		}, Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
			q := req[CreatePolicyRequest](r)
			return s.CreatePolicy(q.PolicyName, q.PolicyDocument)
		}},
		{Name: "iam:GetPolicy", ReadOnly: true, NewRequest: newOf[PolicyRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.policyARN(req[PolicyRequest](r).PolicyArn), nil
		}, Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
			return s.GetPolicy(req[PolicyRequest](r).PolicyArn)
		}},
		{Name: "iam:ListPolicies", ReadOnly: true, Resource: star,
			Do: func(context.Context, *api.Caller, any) (any, error) { return s.ListPolicies() }},
		{Name: "iam:DeletePolicy", NewRequest: newOf[PolicyRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.policyARN(req[PolicyRequest](r).PolicyArn), nil
		}, Do: func(_ context.Context, _ *api.Caller, r any) (any, error) {
			return none(s.DeletePolicy(req[PolicyRequest](r).PolicyArn))
		}},
	}
	for _, kind := range []string{KindUser, KindGroup, KindRole} {
		kind := kind
		noun := map[string]string{KindUser: "User", KindGroup: "Group", KindRole: "Role"}[kind]
		target := func(ctx context.Context, u, g, r string) string {
			switch kind {
			case KindUser:
				return self(ctx, u)
			case KindGroup:
				return g
			}
			return r
		}
		arnOf := func(name string) string {
			return s.arn("iam", kind+"/"+name)
		}
		ops = append(ops,
			&api.Operation{Name: "iam:Attach" + noun + "Policy", NewRequest: newOf[AttachRequest](), Resource: func(ctx context.Context, r any) (string, error) {
				q := req[AttachRequest](r)
				return arnOf(target(ctx, q.UserName, q.GroupName, q.RoleName)), nil
			}, Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				q := req[AttachRequest](r)
				return none(s.AttachPolicy(kind, target(ctx, q.UserName, q.GroupName, q.RoleName), q.PolicyArn))
			}},
			&api.Operation{Name: "iam:Detach" + noun + "Policy", NewRequest: newOf[AttachRequest](), Resource: func(ctx context.Context, r any) (string, error) {
				q := req[AttachRequest](r)
				return arnOf(target(ctx, q.UserName, q.GroupName, q.RoleName)), nil
			}, Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				q := req[AttachRequest](r)
				return none(s.DetachPolicy(kind, target(ctx, q.UserName, q.GroupName, q.RoleName), q.PolicyArn))
			}},
			&api.Operation{Name: "iam:Put" + noun + "Policy", NewRequest: newOf[InlinePolicyRequest](), Resource: func(ctx context.Context, r any) (string, error) {
				q := req[InlinePolicyRequest](r)
				return arnOf(target(ctx, q.UserName, q.GroupName, q.RoleName)), nil
			}, Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				q := req[InlinePolicyRequest](r)
				return none(s.PutInlinePolicy(kind, target(ctx, q.UserName, q.GroupName, q.RoleName), q.PolicyName, q.PolicyDocument))
			}},
			&api.Operation{Name: "iam:Delete" + noun + "Policy", NewRequest: newOf[InlinePolicyRequest](), Resource: func(ctx context.Context, r any) (string, error) {
				q := req[InlinePolicyRequest](r)
				return arnOf(target(ctx, q.UserName, q.GroupName, q.RoleName)), nil
			}, Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				q := req[InlinePolicyRequest](r)
				return none(s.DeleteInlinePolicy(kind, target(ctx, q.UserName, q.GroupName, q.RoleName), q.PolicyName))
			}},
		)
	}
	keyUser := func(ctx context.Context, r any) (string, error) {
		return s.userARN(self(ctx, req[AccessKeyRequest](r).UserName)), nil
	}
	mfaUser := func(ctx context.Context, r any) (string, error) {
		return s.userARN(self(ctx, req[MFADeviceRequest](r).UserName)), nil
	}
	ops = append(ops,
		&api.Operation{Name: "iam:CreateAccessKey", NewRequest: newOf[UserRequest](), Resource: user,
			Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				return s.CreateAccessKey(self(ctx, req[UserRequest](r).UserName))
			}},
		&api.Operation{Name: "iam:ListAccessKeys", ReadOnly: true, NewRequest: newOf[UserRequest](), Resource: user,
			Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				return s.ListAccessKeys(self(ctx, req[UserRequest](r).UserName))
			}},
		&api.Operation{Name: "iam:UpdateAccessKey", NewRequest: newOf[AccessKeyRequest](), Resource: keyUser,
			Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				q := req[AccessKeyRequest](r)
				return none(s.UpdateAccessKey(self(ctx, q.UserName), q.AccessKeyID, q.Status))
			}},
		&api.Operation{Name: "iam:RotateAccessKey", NewRequest: newOf[AccessKeyRequest](), Resource: keyUser,
			Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				q := req[AccessKeyRequest](r)
				return s.RotateAccessKey(self(ctx, q.UserName), q.AccessKeyID)
			}},
		&api.Operation{Name: "iam:DeleteAccessKey", NewRequest: newOf[AccessKeyRequest](), Resource: keyUser,
			Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				q := req[AccessKeyRequest](r)
				return none(s.DeleteAccessKey(self(ctx, q.UserName), q.AccessKeyID))
			}},
		&api.Operation{Name: "iam:CreateVirtualMFADevice", NewRequest: newOf[CreateVirtualMFADeviceRequest](), Resource: func(_ context.Context, r any) (string, error) {
			return s.arn("iam", "mfa/"+req[CreateVirtualMFADeviceRequest](r).VirtualMFADeviceName), nil
		}, Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
			q := req[CreateVirtualMFADeviceRequest](r)
			u := self(ctx, q.UserName)
			if u == "" {
				return nil, api.Errorf(api.CodeInvalidParameter, "UserName is required")
			}
			return s.CreateVirtualMFADevice(q.VirtualMFADeviceName, u)
		}},
		&api.Operation{Name: "iam:EnableMFADevice", NewRequest: newOf[EnableMFADeviceRequest](), Resource: func(ctx context.Context, r any) (string, error) {
			return s.userARN(self(ctx, req[EnableMFADeviceRequest](r).UserName)), nil
		}, Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
			q := req[EnableMFADeviceRequest](r)
			u := self(ctx, q.UserName)
			if u == "" {
				return nil, api.Errorf(api.CodeInvalidParameter, "UserName is required")
			}
			return none(s.EnableMFADevice(u, q.SerialNumber, q.AuthenticationCode1, q.AuthenticationCode2))
		}},
		&api.Operation{Name: "iam:DeactivateMFADevice", NewRequest: newOf[MFADeviceRequest](), Resource: mfaUser,
			Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
				q := req[MFADeviceRequest](r)
				return none(s.DeactivateMFADevice(self(ctx, q.UserName), q.SerialNumber))
			}},
		&api.Operation{Name: "iam:ListMFADevices", ReadOnly: true, NewRequest: newOf[UserRequest](), Resource: func(ctx context.Context, r any) (string, error) {
			if n := self(ctx, req[UserRequest](r).UserName); n != "" {
				return s.userARN(n), nil
			}
			return "*", nil
		}, Do: func(ctx context.Context, _ *api.Caller, r any) (any, error) {
			return s.ListMFADevices(self(ctx, req[UserRequest](r).UserName))
		}},
		&api.Operation{Name: "iam:GetAccountSummary", ReadOnly: true, Resource: star,
			Do: func(context.Context, *api.Caller, any) (any, error) { return s.Account() }},
		&api.Operation{Name: "iam:ExportState", ReadOnly: true, Resource: star,
			Do: func(context.Context, *api.Caller, any) (any, error) { return s.Export() }},

		&api.Operation{Name: "sts:GetCallerIdentity", ReadOnly: true, Resource: star,
			Do: func(_ context.Context, c *api.Caller, _ any) (any, error) {
				return map[string]any{"Account": c.AccountID, "Arn": c.ARN, "UserId": c.PrincipalID, "Type": c.Type, "MFA": c.MFA}, nil
			}},
		&api.Operation{Name: "sts:GetSessionToken", ReadOnly: true, NewRequest: newOf[GetSessionTokenRequest](), Resource: func(ctx context.Context, r any) (string, error) {
			if req[GetSessionTokenRequest](r).Root {
				return s.RootARN(), nil
			}
			if c := api.CallerFrom(ctx); c != nil {
				return c.ARN, nil
			}
			return "*", nil
		}, Do: func(_ context.Context, c *api.Caller, r any) (any, error) {
			creds, err := s.GetSessionToken(c, *req[GetSessionTokenRequest](r))
			return map[string]any{"Credentials": creds}, err
		}},
		&api.Operation{Name: "sts:AssumeRole", NewRequest: newOf[AssumeRoleRequest](), Resource: func(_ context.Context, r any) (string, error) {
			role := req[AssumeRoleRequest](r).RoleArn
			if len(role) > 0 && role[0] != 'a' {
				role = s.roleARN(role)
			}
			return role, nil
		}, Do: func(_ context.Context, c *api.Caller, r any) (any, error) {
			return s.AssumeRole(c, *req[AssumeRoleRequest](r))
		}},
	)
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
	return map[string][]string{"iam:policyarn": {s.policyARN(req[AttachRequest](r).PolicyArn)}}
}
