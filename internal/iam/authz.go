package iam

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/iam/policy"
	"github.com/azote/azote/internal/store"
)

// Credentials resolves the access key (and session token) of a signed
// request to its secret, whether it is active, and the caller it stands
// for. Unknown keys give ErrUnknownKey, bad or expired tokens
// ErrExpiredToken.
func (s *Service) Credentials(akid, token string) (secret string, active bool, c *api.Caller, err error) {
	if token != "" {
		ss, err := s.openSession(akid, token)
		if err != nil {
			return "", false, nil, err
		}
		// The identity behind a session must still exist: deleting a
		// user or role ends its sessions. Its unique id is compared too,
		// so a new user or role under the old name does not bring the
		// old sessions back with the new identity's permissions.
		switch ss.Type {
		case api.PrincipalUser:
			if u, err := s.GetUser(ss.UserName); err != nil || u.UserID != ss.PrincipalID {
				return "", false, nil, ErrExpiredToken
			}
		case api.PrincipalAssumedRole:
			if r, err := view(s, func(tx store.Tx) (api.Role, error) { return s.roleByRefTx(tx, ss.IssuerARN) }); err != nil || !strings.HasPrefix(ss.PrincipalID, r.RoleID+":") {
				return "", false, nil, ErrExpiredToken
			}
		}
		// An instance's session lives as long as the launch it was minted
		// for: a stopped or terminated instance's sessions are refused
		// however long they had left (instance.go).
		if ss.InstanceID != "" {
			if gen, err := s.instanceGeneration(ss.InstanceID); err != nil || gen == 0 || gen != ss.InstanceGen {
				return "", false, nil, ErrExpiredToken
			}
		}
		return ss.Secret, true, &api.Caller{Type: ss.Type, ARN: ss.ARN, PrincipalID: ss.PrincipalID, AccountID: s.AccountID(), UserName: ss.UserName,
			AccessKeyID: akid, Session: true, SessionCreated: ss.Created, SessionExpiry: ss.Expiry, MFA: ss.MFA, MFAAuthTime: ss.MFAAuthTime,
			IssuerARN: ss.IssuerARN, IssuerType: ss.IssuerType, IssuerName: ss.IssuerName, SourceInstance: ss.InstanceID}, nil
	}
	k, u, secret, err := s.longTermKey(akid)
	if err != nil {
		return "", false, nil, err
	}
	return secret, k.Status == api.StatusActive, &api.Caller{Type: api.PrincipalUser, ARN: u.ARN, PrincipalID: u.UserID, AccountID: s.AccountID(), UserName: u.UserName, AccessKeyID: akid}, nil
}

// HostRoot is the caller of the root-only unix socket.
func (s *Service) HostRoot(pid int32) *api.Caller {
	return &api.Caller{Type: api.PrincipalHostRoot, ARN: s.arn("iam", "host-root"), PrincipalID: "host-root", AccountID: s.AccountID(),
		UserName: "host-root", SourceIP: "local", UserAgent: "pid " + strconv.Itoa(int(pid))}
}

// conditionContext builds the global condition keys of a caller.
func (s *Service) conditionContext(c *api.Caller) map[string][]string {
	now := s.now().UTC()
	ctx := map[string][]string{
		"aws:principalarn":     {principalARN(c)},
		"aws:principalaccount": {c.AccountID},
		"aws:principaltype":    {principalType(c.Type)},
		"aws:userid":           {c.PrincipalID},
		"aws:currenttime":      {now.Format(time.RFC3339)},
		"aws:epochtime":        {strconv.FormatInt(now.Unix(), 10)},
		"aws:securetransport":  {strconv.FormatBool(c.Secure)},
	}
	// aws:username names an IAM user and nobody else: a role session's
	// name is chosen by whoever assumes the role, so giving it here would
	// let them pick which user "user/${aws:username}" means. Absent, a
	// variable resolves to nothing and the statement does not match.
	if c.Type == api.PrincipalUser {
		ctx["aws:username"] = []string{c.UserName}
	}
	if c.SourceIP != "" && c.SourceIP != "local" {
		ctx["aws:sourceip"] = []string{c.SourceIP}
	}
	// As in AWS, long-term keys carry no MultiFactorAuthPresent at all
	// (policies use BoolIfExists for that reason); sessions say true or
	// false.
	if c.Session || c.Type == api.PrincipalHostRoot {
		ctx["aws:multifactorauthpresent"] = []string{strconv.FormatBool(c.MFA)}
	}
	if c.MFA {
		age := max(int64(now.Sub(c.MFAAuthTime)/time.Second), 0)
		ctx["aws:multifactorauthage"] = []string{strconv.FormatInt(age, 10)}
	}
	if c.Session {
		ctx["aws:tokenissuetime"] = []string{c.SessionCreated.UTC().Format(time.RFC3339)}
	}
	// compute:SourceInstanceARN names the instance whose role
	// credentials made the call (EC2's ec2:SourceInstanceARN).
	if c.SourceInstance != "" {
		ctx["compute:sourceinstancearn"] = []string{s.arn("compute", "instance/"+c.SourceInstance)}
	}
	return ctx
}

// principalARN is aws:PrincipalArn: for a role session, the role's ARN
// (as in AWS), so that a policy keyed on the role applies to every
// session of it whatever the session is called.
func principalARN(c *api.Caller) string {
	if c.Type == api.PrincipalAssumedRole && c.IssuerARN != "" {
		return c.IssuerARN
	}
	return c.ARN
}

// principalType is aws:PrincipalType in AWS's words ("Account", "User",
// "AssumedRole"), which differ from CloudTrail's userIdentity.type. Host
// root has no AWS counterpart and keeps its own name.
func principalType(t string) string {
	switch t {
	case api.PrincipalRoot:
		return "Account"
	case api.PrincipalUser:
		return "User"
	}
	return t
}

// Decision is the outcome of Authorize, for the audit record.
type Decision struct {
	Allowed bool
	Reason  string
}

// Authorize decides whether c may perform action on resource. extra adds
// request-specific condition keys; resourcePolicies are the resource's
// own policies (KMS key policies), evaluated together with the caller's.
func (s *Service) Authorize(c *api.Caller, action, resource string, extra map[string][]string, resourcePolicies []policy.Named) Decision {
	switch c.Type {
	case api.PrincipalRoot:
		if !c.MFA {
			return Decision{Reason: "root acts only with an MFA session"}
		}
		return Decision{Allowed: true, Reason: "account root with MFA"}
	}
	ctx := s.conditionContext(c)
	for k, v := range extra {
		ctx[k] = v
	}
	ids, err := s.identityPolicies(c)
	if err != nil {
		return Decision{Reason: "cannot resolve the caller's policies: " + err.Error()}
	}
	res := policy.Evaluate(ids, resourcePolicies, &policy.Request{Principal: c.ARN, PrincipalID: c.PrincipalID, Action: action, Resource: resource, Context: ctx})
	switch res.Decision {
	case policy.Allow:
		return Decision{Allowed: true, Reason: "allowed by " + res.Statement}
	case policy.ExplicitDeny:
		return Decision{Reason: fmt.Sprintf("explicitly denied by %s", res.Statement)}
	}
	return Decision{Reason: "no policy allows it"}
}

// KeyDecision is the outcome of AuthorizeKey: allowed, explicitly
// denied, or neither (then grants may still allow).
type KeyDecision struct {
	Allowed, Denied bool
	Reason          string
}

// AuthorizeKey decides whether c may perform action on a KMS key whose
// key policy is keyPolicy, as KMS does: the key policy is the primary
// control and must allow, directly or by delegating to the account (then
// an identity policy must allow too), and an explicit Deny in either wins.
// extra adds the request's condition keys (kms:EncryptionContext:KEY,
// aws:ResourceTag/KEY, ...), lower-cased. The account root is subject to
// the key policy too: a policy that names no one of the account locks it
// out, which is why CreateKey and PutKeyPolicy refuse such policies.
func (s *Service) AuthorizeKey(c *api.Caller, action, keyARN string, extra map[string][]string, keyPolicy *policy.Document) KeyDecision {
	if c.Type == api.PrincipalRoot && !c.MFA {
		return KeyDecision{Reason: "root acts only with an MFA session"}
	}
	ctx := s.conditionContext(c)
	for k, v := range extra {
		ctx[k] = v
	}
	ids, err := s.identityPolicies(c)
	if err != nil {
		return KeyDecision{Reason: "cannot resolve the caller's policies: " + err.Error()}
	}
	var resource []policy.Named
	if keyPolicy != nil {
		resource = []policy.Named{{Name: "key policy", Doc: keyPolicy}}
	}
	res := policy.EvaluateResourceRequired(ids, resource, &policy.Request{Principal: c.ARN, PrincipalID: c.PrincipalID, Action: action, Resource: keyARN, Context: ctx})
	switch res.Decision {
	case policy.Allow:
		return KeyDecision{Allowed: true, Reason: "allowed by " + res.Statement}
	case policy.ExplicitDeny:
		return KeyDecision{Denied: true, Reason: "with an explicit deny in " + res.Statement}
	}
	return KeyDecision{Reason: "because no key policy and identity policy together allow it"}
}

// identityPolicies resolves (and caches per IAM generation) the identity
// policies of a caller.
func (s *Service) identityPolicies(c *api.Caller) ([]policy.Named, error) {
	key := c.Type + "|" + c.ARN + "|" + c.IssuerARN
	gen := s.gen.Load()
	s.mu.Lock()
	if p, ok := s.identities[key]; ok && p.gen == gen {
		s.mu.Unlock()
		return p.policies, nil
	}
	s.mu.Unlock()
	var out []policy.Named
	err := s.st.View(func(tx store.Tx) error {
		add := func(owner string, attached []string, inline map[string]string) error {
			for _, arn := range attached {
				p, err := s.getPolicyTx(tx, arn)
				if err != nil {
					return err
				}
				d, err := parsePolicy(p.Document, policy.Identity)
				if err != nil {
					return err
				}
				out = append(out, policy.Named{Name: p.PolicyName, Doc: d})
			}
			for name, doc := range inline {
				d, err := parsePolicy(doc, policy.Identity)
				if err != nil {
					return err
				}
				out = append(out, policy.Named{Name: owner + "/" + name, Doc: d})
			}
			return nil
		}
		switch c.Type {
		case api.PrincipalHostRoot, api.PrincipalRoot:
			d, _ := policy.Builtin("AdministratorAccess")
			out = append(out, policy.Named{Name: "AdministratorAccess", Doc: d})
			return nil
		case api.PrincipalUser:
			u, err := s.getUserTx(tx, c.UserName)
			if err != nil {
				return err
			}
			if err := add("user/"+u.UserName, u.Attached, u.Inline); err != nil {
				return err
			}
			for _, gn := range u.Groups {
				g, err := s.getGroupTx(tx, gn)
				if err != nil {
					return err
				}
				if err := add("group/"+g.GroupName, g.Attached, g.Inline); err != nil {
					return err
				}
			}
			return nil
		case api.PrincipalAssumedRole:
			r, err := s.roleByRefTx(tx, c.IssuerARN)
			if err != nil {
				return err
			}
			return add("role/"+r.RoleName, r.Attached, r.Inline)
		}
		return fmt.Errorf("unknown principal type %q", c.Type)
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if len(s.identities) > 10000 {
		s.identities = map[string]cachedPolicies{}
	}
	s.identities[key] = cachedPolicies{gen: gen, policies: out}
	s.mu.Unlock()
	return out, nil
}
