package iam

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
)

func TestSessions(t *testing.T) {
	e := newEnv(t)
	resp, _ := e.initAccount("alice")
	erin, erinKey := e.user("erin")

	cr, err := e.svc.GetSessionToken(erin, api.GetSessionTokenRequest{DurationSeconds: 900})
	must(t, err)
	if !strings.HasPrefix(cr.AccessKeyID, "ASIA") || cr.SecretAccessKey == "" || cr.SecretAccessKey == erinKey.SecretAccessKey || !strings.HasPrefix(cr.SessionToken, tokenPrefix) {
		t.Fatalf("session credentials = %+v", cr)
	}
	if !cr.Expiration.Equal(e.clk.Now().Add(900 * time.Second)) {
		t.Errorf("expiration %v, want %v", cr.Expiration, e.clk.Now().Add(900*time.Second))
	}
	s := e.sessionCaller(cr)
	if s.Type != api.PrincipalUser || s.ARN != erin.ARN || s.PrincipalID != erin.PrincipalID || s.UserName != "erin" || !s.Session || s.MFA ||
		s.AccessKeyID != cr.AccessKeyID || s.IssuerARN != erin.ARN || !s.SessionExpiry.Equal(cr.Expiration) || !s.SessionCreated.Equal(e.clk.Now()) {
		t.Errorf("session caller = %+v", s)
	}

	t.Run("bad tokens", func(t *testing.T) {
		tok := cr.SessionToken
		mid := len(tokenPrefix) + (len(tok)-len(tokenPrefix))/2
		flip := byte('A')
		if tok[mid] == 'A' {
			flip = 'B'
		}
		tampered := tok[:mid] + string(flip) + tok[mid+1:]
		cases := []struct {
			name, akid, token string
		}{
			{"tampered", cr.AccessKeyID, tampered},
			{"truncated", cr.AccessKeyID, tok[:len(tok)-4]},
			{"prefix only", cr.AccessKeyID, tokenPrefix},
			{"no prefix", cr.AccessKeyID, strings.TrimPrefix(tok, tokenPrefix)},
			{"other version prefix", cr.AccessKeyID, "AZT2." + strings.TrimPrefix(tok, tokenPrefix)},
			{"not base64", cr.AccessKeyID, tokenPrefix + "!!!!"},
			{"too long", cr.AccessKeyID, tok + strings.Repeat("A", MaxTokenLen)},
			{"other session's key id", "ASIAOTHERSESSION0000", tok},
			{"long-term key id", erinKey.AccessKeyID, tok},
			{"admin key id", resp.AccessKey.AccessKeyID, tok},
		}
		for _, tc := range cases {
			secret, active, c, err := e.svc.Credentials(tc.akid, tc.token)
			if !errors.Is(err, ErrExpiredToken) || secret != "" || active || c != nil {
				t.Errorf("%s: secret %q active %v caller %v err %v, want ErrExpiredToken", tc.name, secret, active, c, err)
			}
		}
	})

	t.Run("no session from a session", func(t *testing.T) {
		_, err := e.svc.GetSessionToken(s, api.GetSessionTokenRequest{})
		wantCode(t, err, api.CodeAccessDenied)
		_, err = e.svc.GetSessionToken(e.svc.HostRoot(1), api.GetSessionTokenRequest{})
		wantCode(t, err, api.CodeAccessDenied)
	})

	t.Run("duration", func(t *testing.T) {
		for _, secs := range []int64{-1, 1, 899, 129601, 1 << 40} {
			_, err := e.svc.GetSessionToken(erin, api.GetSessionTokenRequest{DurationSeconds: secs})
			if !api.IsCode(err, api.CodeInvalidParameter) {
				t.Errorf("DurationSeconds %d: %v, want InvalidParameterValue", secs, err)
			}
		}
		for secs, want := range map[int64]time.Duration{0: DefaultSessionDuration, 900: MinSessionDuration, 129600: MaxSessionDuration} {
			cr, err := e.svc.GetSessionToken(erin, api.GetSessionTokenRequest{DurationSeconds: secs})
			if err != nil || !cr.Expiration.Equal(e.clk.Now().Add(want)) {
				t.Errorf("DurationSeconds %d: expiration %v, err %v, want %v from now", secs, cr.Expiration, err, want)
			}
		}
	})

	long, err := e.svc.GetSessionToken(erin, api.GetSessionTokenRequest{})
	must(t, err)

	t.Run("survives reopen", func(t *testing.T) {
		e.reopen()
		if c := e.sessionCaller(long); c.ARN != erin.ARN {
			t.Errorf("session after reopen is %s", c.ARN)
		}
		// A restart with another host key cannot read the token key:
		// Open fails instead of minting a new one.
		if _, err := Open(e.st, newTestSealer(t), "local", e.clk.Now); err == nil {
			t.Error("Open with another sealer succeeded")
		}
	})

	t.Run("expiry", func(t *testing.T) {
		e.clk.Advance(900*time.Second - time.Nanosecond)
		e.sessionCaller(cr)
		e.clk.Advance(time.Nanosecond)
		if _, _, _, err := e.svc.Credentials(cr.AccessKeyID, cr.SessionToken); !errors.Is(err, ErrExpiredToken) {
			t.Errorf("at expiry: %v, want ErrExpiredToken", err)
		}
		e.sessionCaller(long)
	})

	t.Run("deleted user", func(t *testing.T) {
		// A session outlives the key it was made with, not the user.
		must(t, e.svc.DeleteAccessKey("erin", erinKey.AccessKeyID))
		e.sessionCaller(long)
		must(t, e.svc.DeleteUser("erin"))
		if _, _, _, err := e.svc.Credentials(long.AccessKeyID, long.SessionToken); !errors.Is(err, ErrExpiredToken) {
			t.Errorf("session of a deleted user: %v, want ErrExpiredToken", err)
		}
		// A new user of the same name is another identity: the old
		// sessions stay dead.
		_, err := e.svc.CreateUser("erin")
		must(t, err)
		if _, _, c, err := e.svc.Credentials(long.AccessKeyID, long.SessionToken); !errors.Is(err, ErrExpiredToken) {
			t.Errorf("session of a deleted user after its name was reused: caller %+v, err %v, want ErrExpiredToken", c, err)
		}
	})
}

func TestAssumeRole(t *testing.T) {
	e := newEnv(t)
	e.initAccount("alice")
	acct := e.svc.AccountID()
	frank, _, seed, _ := e.mfaUser("frank")
	gina, _ := e.user("gina")
	// frank may do anything himself; a role session must not inherit it.
	must(t, e.svc.AttachPolicy(KindUser, "frank", "AdministratorAccess"))

	role, err := e.svc.CreateRole("Ops", trustDoc(frank.ARN, ""), 0)
	must(t, err)

	t.Run("trusted user", func(t *testing.T) {
		out, err := e.svc.AssumeRole(frank, api.AssumeRoleRequest{RoleArn: role.ARN, RoleSessionName: "deploy"})
		must(t, err)
		wantARN := "arn:azote:sts::" + acct + ":assumed-role/Ops/deploy"
		if out.AssumedRoleUser.ARN != wantARN || out.AssumedRoleUser.AssumedRoleID != role.RoleID+":deploy" {
			t.Errorf("assumed role user = %+v, want %s", out.AssumedRoleUser, wantARN)
		}
		if !out.Credentials.Expiration.Equal(e.clk.Now().Add(time.Hour)) {
			t.Errorf("expiration %v, want an hour from now", out.Credentials.Expiration)
		}
		c := e.sessionCaller(out.Credentials)
		if c.Type != api.PrincipalAssumedRole || c.ARN != wantARN || c.IssuerARN != role.ARN || c.IssuerName != "Ops" || c.UserName != "deploy" || c.MFA || !c.Session {
			t.Fatalf("role session caller = %+v", c)
		}
		if d := e.svc.Authorize(c, "compute:DescribeInstances", "*", nil, nil); d.Allowed {
			t.Errorf("role without policies allowed Describe: %s", d.Reason)
		}
		must(t, e.svc.AttachPolicy(KindRole, "Ops", "ReadOnlyAccess"))
		for action, allow := range map[string]bool{"compute:DescribeInstances": true, "iam:ListUsers": true, "compute:RunInstances": false, "iam:CreateUser": false} {
			if d := e.svc.Authorize(c, action, "*", nil, nil); d.Allowed != allow {
				t.Errorf("role session %s: allowed %v (%s), want %v", action, d.Allowed, d.Reason, allow)
			}
		}
		// By name as well as by ARN.
		if _, err := e.svc.AssumeRole(frank, api.AssumeRoleRequest{RoleArn: "Ops", RoleSessionName: "by-name", DurationSeconds: 900}); err != nil {
			t.Errorf("AssumeRole by name: %v", err)
		}
	})

	t.Run("untrusted user", func(t *testing.T) {
		_, err := e.svc.AssumeRole(gina, api.AssumeRoleRequest{RoleArn: role.ARN, RoleSessionName: "s"})
		wantCode(t, err, api.CodeAccessDenied)
		// Even with an identity policy allowing it: the trust policy
		// names frank alone.
		must(t, e.svc.AttachPolicy(KindUser, "gina", "AdministratorAccess"))
		_, err = e.svc.AssumeRole(gina, api.AssumeRoleRequest{RoleArn: role.ARN, RoleSessionName: "s"})
		wantCode(t, err, api.CodeAccessDenied)
		other, err := e.svc.CreateRole("GinaOnly", trustDoc(gina.ARN, ""), 0)
		must(t, err)
		_, err = e.svc.AssumeRole(frank, api.AssumeRoleRequest{RoleArn: other.ARN, RoleSessionName: "s"})
		wantCode(t, err, api.CodeAccessDenied)
		if _, err := e.svc.AssumeRole(gina, api.AssumeRoleRequest{RoleArn: other.ARN, RoleSessionName: "s"}); err != nil {
			t.Errorf("gina assuming her own role: %v", err)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		_, err := e.svc.AssumeRole(frank, api.AssumeRoleRequest{RoleArn: role.ARN, RoleSessionName: "bad name"})
		wantCode(t, err, api.CodeInvalidName)
		_, err = e.svc.AssumeRole(frank, api.AssumeRoleRequest{RoleArn: role.ARN, RoleSessionName: ""})
		wantCode(t, err, api.CodeInvalidName)
		_, err = e.svc.AssumeRole(frank, api.AssumeRoleRequest{RoleArn: "NoSuchRole", RoleSessionName: "s"})
		wantCode(t, err, api.CodeNoSuchEntity)
		_, err = e.svc.AssumeRole(frank, api.AssumeRoleRequest{RoleArn: role.ARN, RoleSessionName: "s", DurationSeconds: 3601})
		wantCode(t, err, api.CodeInvalidParameter)
		_, err = e.svc.AssumeRole(e.svc.HostRoot(1), api.AssumeRoleRequest{RoleArn: role.ARN, RoleSessionName: "s", TokenCode: e.code(seed)})
		wantCode(t, err, api.CodeInvalidParameter)
	})

	t.Run("MFA required", func(t *testing.T) {
		secure, err := e.svc.CreateRole("Secure", trustDoc(frank.ARN, mfaCondition), 7200)
		must(t, err)
		_, err = e.svc.AssumeRole(frank, api.AssumeRoleRequest{RoleArn: secure.ARN, RoleSessionName: "s"})
		wantCode(t, err, api.CodeAccessDenied)
		plain, err := e.svc.GetSessionToken(frank, api.GetSessionTokenRequest{})
		must(t, err)
		_, err = e.svc.AssumeRole(e.sessionCaller(plain), api.AssumeRoleRequest{RoleArn: secure.ARN, RoleSessionName: "s"})
		wantCode(t, err, api.CodeAccessDenied)
		_, err = e.svc.AssumeRole(frank, api.AssumeRoleRequest{RoleArn: secure.ARN, RoleSessionName: "s", TokenCode: e.wrongCode(seed)})
		wantCode(t, err, api.CodeInvalidAuthenticationCode)

		out, err := e.svc.AssumeRole(frank, api.AssumeRoleRequest{RoleArn: secure.ARN, RoleSessionName: "with-code", TokenCode: e.code(seed), DurationSeconds: 7200})
		must(t, err)
		if c := e.sessionCaller(out.Credentials); !c.MFA || !c.MFAAuthTime.Equal(e.clk.Now()) {
			t.Errorf("role session from a code: MFA %v at %v", c.MFA, c.MFAAuthTime)
		}

		e.nextStep()
		mfaSession, err := e.svc.GetSessionToken(frank, api.GetSessionTokenRequest{TokenCode: e.code(seed)})
		must(t, err)
		out, err = e.svc.AssumeRole(e.sessionCaller(mfaSession), api.AssumeRoleRequest{RoleArn: secure.ARN, RoleSessionName: "from-session"})
		must(t, err)
		if c := e.sessionCaller(out.Credentials); !c.MFA {
			t.Error("role session from an MFA session has no MFA")
		}
	})

	t.Run("deleted role", func(t *testing.T) {
		out, err := e.svc.AssumeRole(frank, api.AssumeRoleRequest{RoleArn: role.ARN, RoleSessionName: "doomed"})
		must(t, err)
		must(t, e.svc.DetachPolicy(KindRole, "Ops", "ReadOnlyAccess"))
		must(t, e.svc.DeleteRole("Ops"))
		if _, _, _, err := e.svc.Credentials(out.Credentials.AccessKeyID, out.Credentials.SessionToken); !errors.Is(err, ErrExpiredToken) {
			t.Errorf("session of a deleted role: %v, want ErrExpiredToken", err)
		}
		_, err = e.svc.CreateRole("Ops", trustDoc(frank.ARN, ""), 0)
		must(t, err)
		if _, _, _, err := e.svc.Credentials(out.Credentials.AccessKeyID, out.Credentials.SessionToken); !errors.Is(err, ErrExpiredToken) {
			t.Errorf("session of a deleted role after its name was reused: %v, want ErrExpiredToken", err)
		}
	})
}

// FuzzSessionToken feeds Credentials hostile tokens. Whatever comes in,
// the answer is a session or ErrExpiredToken; and a token is only ever
// accepted for the session that was sealed into it.
func FuzzSessionToken(f *testing.F) {
	e := newEnv(f)
	e.initAccount("alice")
	c, _ := e.user("fuzz")
	cr, err := e.svc.GetSessionToken(c, api.GetSessionTokenRequest{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cr.AccessKeyID, cr.SessionToken)
	f.Add(cr.AccessKeyID, cr.SessionToken[:len(cr.SessionToken)-1])
	f.Add(cr.AccessKeyID, cr.SessionToken+"A")
	f.Add("ASIAAAAAAAAAAAAAAAAA", cr.SessionToken)
	f.Add(cr.AccessKeyID, tokenPrefix)
	f.Add(cr.AccessKeyID, tokenPrefix+"AAAA")
	f.Add("", "")
	f.Add("AKIA", "x")
	f.Fuzz(func(t *testing.T, akid, token string) {
		if token == "" {
			return // a long-term key lookup, not a token
		}
		secret, active, got, err := e.svc.Credentials(akid, token)
		if err != nil {
			if !errors.Is(err, ErrExpiredToken) || got != nil || secret != "" || active {
				t.Fatalf("Credentials(%q, %q): secret %q active %v caller %v err %v", akid, token, secret, active, got, err)
			}
			return
		}
		if akid != cr.AccessKeyID || secret != cr.SecretAccessKey || !active || got.ARN != c.ARN || !got.Session {
			t.Fatalf("Credentials(%q, %q) accepted as %+v", akid, token, got)
		}
	})
}
