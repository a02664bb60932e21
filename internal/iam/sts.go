package iam

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/iam/policy"
	"github.com/azote/azote/internal/store"
)

// Session durations (GetSessionToken limits of AWS).
const (
	MinSessionDuration     = 15 * time.Minute
	DefaultSessionDuration = 12 * time.Hour
	MaxSessionDuration     = 36 * time.Hour
	// RootSessionDuration is the longest root session: root is for rare,
	// deliberate work.
	RootSessionDuration = time.Hour
)

var errUnknownKey = errors.New("iam: unknown access key")

// ErrUnknownKey, ErrExpiredToken are returned by Credentials.
var (
	ErrUnknownKey   = errUnknownKey
	ErrExpiredToken = errors.New("iam: session token expired or invalid")
)

// session is what a session token carries, sealed: the token is its own
// record, so sessions survive azoted restarts and need no storage.
type session struct {
	V           int       `json:"v"`
	AccessKeyID string    `json:"akid"`
	Secret      string    `json:"secret"`
	Type        string    `json:"type"`
	ARN         string    `json:"arn"`
	PrincipalID string    `json:"pid"`
	UserName    string    `json:"name"`
	IssuerARN   string    `json:"issuer_arn,omitempty"`
	IssuerType  string    `json:"issuer_type,omitempty"`
	IssuerName  string    `json:"issuer_name,omitempty"`
	Created     time.Time `json:"created"`
	Expiry      time.Time `json:"expiry"`
	MFA         bool      `json:"mfa"`
	MFAAuthTime time.Time `json:"mfa_time,omitzero"`
	// InstanceID and InstanceGen bind an instance role session to the
	// launch of the instance it was minted for (instance.go).
	InstanceID  string `json:"instance,omitempty"`
	InstanceGen uint64 `json:"instance_gen,omitempty"`
}

const tokenPrefix = "AZT1."
const tokenAAD = "azote-sts-session-v1"

// MaxTokenLen bounds a session token before any decoding.
const MaxTokenLen = 4096

func (s *Service) sealSession(ss session) (api.Credentials, error) {
	akid, err := newID("ASIA", 16)
	if err != nil {
		return api.Credentials{}, err
	}
	secret, err := newSecret()
	if err != nil {
		return api.Credentials{}, err
	}
	ss.V, ss.AccessKeyID, ss.Secret = 1, akid, secret
	plain, err := json.Marshal(ss)
	if err != nil {
		return api.Credentials{}, err
	}
	nonce := make([]byte, s.tokens.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return api.Credentials{}, err
	}
	blob := s.tokens.Seal(nonce, nonce, plain, []byte(tokenAAD))
	clear(plain)
	return api.Credentials{AccessKeyID: akid, SecretAccessKey: secret, SessionToken: tokenPrefix + base64.RawURLEncoding.EncodeToString(blob), Expiration: ss.Expiry}, nil
}

func (s *Service) openSession(akid, token string) (session, error) {
	var ss session
	if len(token) > MaxTokenLen || !strings.HasPrefix(token, tokenPrefix) {
		return ss, ErrExpiredToken
	}
	blob, err := base64.RawURLEncoding.DecodeString(token[len(tokenPrefix):])
	n := s.tokens.NonceSize()
	if err != nil || len(blob) < n {
		return ss, ErrExpiredToken
	}
	plain, err := s.tokens.Open(nil, blob[:n], blob[n:], []byte(tokenAAD))
	if err != nil {
		return ss, ErrExpiredToken
	}
	defer clear(plain)
	if err := json.Unmarshal(plain, &ss); err != nil || ss.V != 1 {
		return ss, ErrExpiredToken
	}
	if ss.AccessKeyID != akid || !s.now().Before(ss.Expiry) {
		return ss, ErrExpiredToken
	}
	return ss, nil
}

func duration(secs int64, def, max time.Duration) (time.Duration, error) {
	if secs == 0 {
		return min(def, max), nil
	}
	d := time.Duration(secs) * time.Second
	if d < MinSessionDuration || d > max {
		return 0, api.Errorf(api.CodeInvalidParameter, "DurationSeconds %d: must be %d..%d", secs, int64(MinSessionDuration/time.Second), int64(max/time.Second))
	}
	return d, nil
}

// GetSessionToken issues a session for an IAM user (with MFA when a code
// is given) or, for host root, an MFA session of the account root.
func (s *Service) GetSessionToken(c *api.Caller, r api.GetSessionTokenRequest) (api.Credentials, error) {
	now := s.now().UTC()
	if r.Root {
		if c.Type != api.PrincipalHostRoot {
			return api.Credentials{}, api.Errorf(api.CodeAccessDenied, "a root session may only be requested by host root over the local socket")
		}
		a, err := s.Account()
		if err != nil {
			return api.Credentials{}, err
		}
		if !a.Initialized || a.RootMFA == "" {
			return api.Credentials{}, api.Errorf(api.CodeAccountNotInitialized, "run azote init first")
		}
		if r.TokenCode == "" {
			return api.Credentials{}, api.Errorf(api.CodeAccessDenied, "root acts only with MFA: give --mfa-code")
		}
		d, err := duration(r.DurationSeconds, RootSessionDuration, RootSessionDuration)
		if err != nil {
			return api.Credentials{}, err
		}
		at, err := s.verifyMFA("", a.RootMFA, r.TokenCode)
		if err != nil {
			return api.Credentials{}, err
		}
		return s.sealSession(session{Type: api.PrincipalRoot, ARN: s.RootARN(), PrincipalID: a.ID, UserName: "root",
			Created: now, Expiry: now.Add(d), MFA: true, MFAAuthTime: at})
	}
	if c.Type != api.PrincipalUser || c.Session {
		return api.Credentials{}, api.Errorf(api.CodeAccessDenied, "GetSessionToken needs the long-term access key of an IAM user")
	}
	d, err := duration(r.DurationSeconds, DefaultSessionDuration, MaxSessionDuration)
	if err != nil {
		return api.Credentials{}, err
	}
	ss := session{Type: api.PrincipalUser, ARN: c.ARN, PrincipalID: c.PrincipalID, UserName: c.UserName, IssuerARN: c.ARN, IssuerType: api.PrincipalUser, IssuerName: c.UserName,
		Created: now, Expiry: now.Add(d)}
	if r.TokenCode != "" {
		u, err := s.GetUser(c.UserName)
		if err != nil {
			return api.Credentials{}, err
		}
		serial := r.SerialNumber
		if serial == "" {
			serial = u.MFASerial
		}
		if serial == "" || serial != u.MFASerial {
			return api.Credentials{}, api.Errorf(api.CodeInvalidAuthenticationCode, "user %s has no enabled MFA device %s", c.UserName, serial)
		}
		at, err := s.verifyMFA(c.UserName, serial, r.TokenCode)
		if err != nil {
			return api.Credentials{}, err
		}
		ss.MFA, ss.MFAAuthTime = true, at
	}
	return s.sealSession(ss)
}

// AssumeRole issues a role session. The caller's own policies were
// already checked for sts:AssumeRole on the role (by the API); the role's
// trust policy must allow the caller too.
func (s *Service) AssumeRole(c *api.Caller, r api.AssumeRoleRequest) (api.AssumeRoleResponse, error) {
	var out api.AssumeRoleResponse
	if err := checkName("role session", r.RoleSessionName); err != nil {
		return out, err
	}
	role, err := view(s, func(tx store.Tx) (api.Role, error) { return s.roleByRefTx(tx, r.RoleArn) })
	if err != nil {
		return out, err
	}
	d, err := duration(r.DurationSeconds, time.Hour, time.Duration(role.MaxSessionDuration)*time.Second)
	if err != nil {
		return out, err
	}
	mfaOK, mfaAt := c.MFA, c.MFAAuthTime
	if r.TokenCode != "" {
		if c.Type != api.PrincipalUser {
			return out, api.Errorf(api.CodeInvalidParameter, "an MFA code can only be given by an IAM user")
		}
		u, err := s.GetUser(c.UserName)
		if err != nil {
			return out, err
		}
		serial := r.SerialNumber
		if serial == "" {
			serial = u.MFASerial
		}
		if serial == "" || serial != u.MFASerial {
			return out, api.Errorf(api.CodeInvalidAuthenticationCode, "user %s has no enabled MFA device %s", c.UserName, serial)
		}
		if mfaAt, err = s.verifyMFA(c.UserName, serial, r.TokenCode); err != nil {
			return out, err
		}
		mfaOK = true
	}
	trust, err := parsePolicy(role.TrustPolicy, policy.Trust)
	if err != nil {
		return out, err
	}
	cc := *c
	cc.MFA, cc.MFAAuthTime = mfaOK, mfaAt
	if r.TokenCode != "" {
		cc.Session = true
	}
	ids, err := s.identityPolicies(c)
	if err != nil {
		return out, err
	}
	// The trust policy holds the unique ids of the users and roles it
	// names (principals.go): the caller matches by its own.
	req := &policy.Request{Principal: c.ARN, PrincipalID: c.PrincipalID, Action: "sts:AssumeRole", Resource: role.ARN, Context: s.conditionContext(&cc)}
	// The trust policy must allow the caller: an identity policy alone
	// never opens a role (and a trust policy naming the whole account
	// leaves the decision to the caller's own policies, as in AWS).
	res := policy.EvaluateResourceRequired(ids, []policy.Named{{Name: "trust policy of " + role.RoleName, Doc: trust}}, req)
	if res.Decision != policy.Allow {
		return out, api.Errorf(api.CodeAccessDenied, "the trust policy of role %s does not allow %s to assume it (%s)", role.RoleName, c.ARN, res.Decision)
	}
	now := s.now().UTC()
	arn := s.arn("sts", "assumed-role/"+role.RoleName+"/"+r.RoleSessionName)
	creds, err := s.sealSession(session{Type: api.PrincipalAssumedRole, ARN: arn, PrincipalID: role.RoleID + ":" + r.RoleSessionName, UserName: r.RoleSessionName,
		IssuerARN: role.ARN, IssuerType: "Role", IssuerName: role.RoleName, Created: now, Expiry: now.Add(d), MFA: mfaOK, MFAAuthTime: mfaAt})
	if err != nil {
		return out, err
	}
	out.Credentials = creds
	out.AssumedRoleUser.AssumedRoleID = role.RoleID + ":" + r.RoleSessionName
	out.AssumedRoleUser.ARN = arn
	return out, nil
}
