package iam

import (
	"context"
	"strings"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/store"
)

// The names a request carries are checked here, at the operation
// boundary, before one becomes the resource ARN a policy is evaluated
// on: the same checked name then reaches the action, so the entity an
// action touches is always the one whose ARN was authorised (a name that
// is really an ARN, or empty, cannot be authorised as one thing and act
// on another). An ARN is taken only where AWS takes one (RoleArn,
// PolicyArn, SerialNumber), and only of this account.

// shown cuts user text for an error message.
func shown(s string) string {
	if len(s) > 128 {
		return s[:128] + "..."
	}
	return s
}

// userRef is the user a request names: UserName, or, when it is empty
// and the caller is an IAM user, the caller (AWS's self-service
// default). Any other caller must name the user: AWS refuses such a call
// ("Must specify userName when calling with non-User credentials"), and
// an empty name would be authorised on no user at all.
func userRef(ctx context.Context, name string) (string, error) {
	if name == "" {
		c := api.CallerFrom(ctx)
		if c == nil || c.Type != api.PrincipalUser {
			return "", api.Errorf(api.CodeInvalidParameter, "UserName is required when the caller is not an IAM user")
		}
		name = c.UserName
	}
	return name, checkName("user", name)
}

// roleRef resolves a RoleArn: this account's role ARN, or (azote's
// shorthand) a role name.
func (s *Service) roleRef(ref string) (string, error) {
	if api.LooksLikeARN(ref) {
		name, ok := s.ownARN(ref, "role")
		if !ok {
			return "", api.Errorf(api.CodeInvalidParameter, "%q is not a role ARN of account %s", shown(ref), s.AccountID())
		}
		ref = name
	}
	return ref, checkName("role", ref)
}

// ownARN parses arn as an IAM ARN of this account whose resource is of
// kind, and returns the resource's name.
func (s *Service) ownARN(arn, kind string) (string, bool) {
	a, err := api.ParseARN(arn)
	if err != nil || a.Service != "iam" || a.Region != "" || a.Account != s.AccountID() {
		return "", false
	}
	k, name, ok := a.Kind()
	return name, ok && k == kind
}

// roleByRefTx reads the role a RoleArn (or a session's issuer ARN)
// names.
func (s *Service) roleByRefTx(tx store.Tx, ref string) (api.Role, error) {
	name, err := s.roleRef(ref)
	if err != nil {
		return api.Role{}, err
	}
	return s.getRoleTx(tx, name)
}

// policyRef resolves a PolicyArn to the ARN the policy is stored under:
// a built-in policy's ARN, this account's policy ARN, or (azote's
// shorthand) a policy name.
func (s *Service) policyRef(ref string) (string, error) {
	name := ref
	switch {
	case strings.HasPrefix(ref, BuiltinARN("")):
		name = strings.TrimPrefix(ref, BuiltinARN(""))
	case api.LooksLikeARN(ref):
		var ok bool
		if name, ok = s.ownARN(ref, "policy"); !ok {
			return "", api.Errorf(api.CodeInvalidParameter, "%q is not a policy ARN of account %s or of azote", shown(ref), s.AccountID())
		}
	}
	if err := checkName("policy", name); err != nil {
		return "", err
	}
	return s.policyARN(ref), nil
}

// mfaSerialRef checks a SerialNumber: the ARN of a virtual MFA device of
// this account.
func (s *Service) mfaSerialRef(serial string) (string, error) {
	name, ok := s.ownARN(serial, "mfa")
	if !ok {
		return "", api.Errorf(api.CodeInvalidParameter, "%q is not an MFA device serial of account %s", shown(serial), s.AccountID())
	}
	return serial, checkName("MFA device", name)
}
