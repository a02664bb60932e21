package iam

import (
	"strings"
	"testing"

	"github.com/azote/azote/internal/api"
)

func TestAuthorize(t *testing.T) {
	e := newEnv(t)
	resp, rootSeed := e.initAccount("alice")
	admin := e.caller(resp.AccessKey.AccessKeyID)

	type check struct {
		action string
		allow  bool
	}
	run := func(t *testing.T, c *api.Caller, checks []check) {
		t.Helper()
		for _, ch := range checks {
			d := e.svc.Authorize(c, ch.action, "*", nil, nil)
			if d.Allowed != ch.allow {
				t.Errorf("%s %s: allowed %v (%s), want %v", c.ARN, ch.action, d.Allowed, d.Reason, ch.allow)
			}
			if d.Reason == "" {
				t.Errorf("%s %s: decision without a reason", c.ARN, ch.action)
			}
		}
	}
	dangerous := []string{"iam:CreateUser", "compute:TerminateInstances", "iam:AttachUserPolicy", "iam:PutRolePolicy", "iam:CreateAccessKey", "iam:DeleteGroupPolicy"}

	t.Run("admin without MFA", func(t *testing.T) {
		checks := []check{{"compute:DescribeInstances", true}, {"compute:RunInstances", true}, {"iam:ListUsers", true}, {"iam:EnableMFADevice", true}}
		for _, a := range dangerous {
			checks = append(checks, check{a, false})
		}
		run(t, admin, checks)
		d := e.svc.Authorize(admin, "iam:CreateUser", "*", nil, nil)
		if !strings.Contains(d.Reason, "explicitly denied") || !strings.Contains(d.Reason, RequireMFAPolicy) {
			t.Errorf("reason = %q, want the explicit deny of %s", d.Reason, RequireMFAPolicy)
		}
		// A session without MFA says MultiFactorAuthPresent false,
		// which the deny catches as well.
		cr, err := e.svc.GetSessionToken(admin, api.GetSessionTokenRequest{})
		must(t, err)
		s := e.sessionCaller(cr)
		if s.MFA || !s.Session {
			t.Fatalf("session without a code: %+v", s)
		}
		run(t, s, []check{{"compute:DescribeInstances", true}, {"iam:CreateUser", false}, {"compute:TerminateInstances", false}})
	})

	t.Run("admin with MFA session", func(t *testing.T) {
		seed, _ := e.enrol("alice", "alice-phone")
		cr, err := e.svc.GetSessionToken(admin, api.GetSessionTokenRequest{TokenCode: e.code(seed)})
		must(t, err)
		s := e.sessionCaller(cr)
		if !s.MFA || !s.Session || s.ARN != admin.ARN || !s.MFAAuthTime.Equal(e.clk.Now()) {
			t.Fatalf("MFA session caller = %+v", s)
		}
		checks := []check{{"compute:DescribeInstances", true}}
		for _, a := range dangerous {
			checks = append(checks, check{a, true})
		}
		run(t, s, checks)
		// The long-term key is still refused after the session exists.
		run(t, admin, []check{{"iam:CreateUser", false}})
	})

	t.Run("read only", func(t *testing.T) {
		bob, _ := e.user("bob")
		must(t, e.svc.AttachPolicy(KindUser, "bob", "ReadOnlyAccess"))
		run(t, bob, []check{
			{"compute:DescribeInstances", true}, {"compute:DescribeVolumes", true}, {"iam:ListUsers", true}, {"iam:GetUser", true}, {"audit:GetTrail", true},
			{"compute:RunInstances", false}, {"compute:DeleteVolume", false}, {"compute:TerminateInstances", false},
			{"iam:CreateUser", false}, {"iam:PutUserPolicy", false}, {"iam:AttachUserPolicy", false}, {"iam:CreateAccessKey", false},
			{"sts:AssumeRole", false}, {"audit:DeleteTrail", false},
		})
	})

	t.Run("no policy", func(t *testing.T) {
		carol, _ := e.user("carol")
		d := e.svc.Authorize(carol, "compute:DescribeInstances", "*", nil, nil)
		if d.Allowed || d.Reason != "no policy allows it" {
			t.Errorf("user without policies: %+v", d)
		}
	})

	t.Run("root", func(t *testing.T) {
		host := e.svc.HostRoot(42)
		// Only host root may ask, and only with root's code.
		_, err := e.svc.GetSessionToken(admin, api.GetSessionTokenRequest{Root: true, TokenCode: e.code(rootSeed)})
		wantCode(t, err, api.CodeAccessDenied)
		_, err = e.svc.GetSessionToken(host, api.GetSessionTokenRequest{Root: true})
		wantCode(t, err, api.CodeAccessDenied)
		_, err = e.svc.GetSessionToken(host, api.GetSessionTokenRequest{Root: true, TokenCode: e.code(rootSeed), DurationSeconds: 3601})
		wantCode(t, err, api.CodeInvalidParameter)
		_, err = e.svc.GetSessionToken(host, api.GetSessionTokenRequest{Root: true, TokenCode: e.wrongCode(rootSeed)})
		wantCode(t, err, api.CodeInvalidAuthenticationCode)

		cr, err := e.svc.GetSessionToken(host, api.GetSessionTokenRequest{Root: true, TokenCode: e.code(rootSeed)})
		must(t, err)
		if !cr.Expiration.Equal(e.clk.Now().Add(RootSessionDuration)) {
			t.Errorf("root session expires %v, want %v", cr.Expiration, e.clk.Now().Add(RootSessionDuration))
		}
		root := e.sessionCaller(cr)
		if root.Type != api.PrincipalRoot || root.ARN != e.svc.RootARN() || !root.MFA {
			t.Fatalf("root session caller = %+v", root)
		}
		run(t, root, []check{{"iam:CreateUser", true}, {"compute:TerminateInstances", true}})

		noMFA := *root
		noMFA.MFA = false
		run(t, &noMFA, []check{{"compute:DescribeInstances", false}, {"iam:CreateUser", false}})

		// Host root itself is an administrator, bound by no MFA deny.
		run(t, host, []check{{"iam:CreateUser", true}})
	})

	t.Run("changes take effect at once", func(t *testing.T) {
		dave, _ := e.user("dave")
		_, err := e.svc.CreateGroup("Readers")
		must(t, err)
		must(t, e.svc.AttachPolicy(KindGroup, "Readers", "ReadOnlyAccess"))
		const describe = "compute:DescribeInstances"
		steps := []struct {
			name  string
			do    func() error
			allow bool
		}{
			{"initially", func() error { return nil }, false},
			{"attach", func() error { return e.svc.AttachPolicy(KindUser, "dave", "ReadOnlyAccess") }, true},
			{"detach", func() error { return e.svc.DetachPolicy(KindUser, "dave", "ReadOnlyAccess") }, false},
			{"join group", func() error { return e.svc.AddUserToGroup("dave", "Readers") }, true},
			{"leave group", func() error { return e.svc.RemoveUserFromGroup("dave", "Readers") }, false},
			{"put inline", func() error {
				return e.svc.PutInlinePolicy(KindUser, "dave", "d", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "compute:Describe*", "Resource": "*"}]}`)
			}, true},
			{"inline deny", func() error {
				return e.svc.PutInlinePolicy(KindUser, "dave", "d", `{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}`)
			}, false},
			{"delete inline", func() error { return e.svc.DeleteInlinePolicy(KindUser, "dave", "d") }, false},
			{"group policy changes", func() error {
				if err := e.svc.AddUserToGroup("dave", "Readers"); err != nil {
					return err
				}
				return e.svc.DetachPolicy(KindGroup, "Readers", "ReadOnlyAccess")
			}, false},
		}
		for _, s := range steps {
			must(t, s.do())
			// Twice: the second answer comes from the cache.
			for range 2 {
				if d := e.svc.Authorize(dave, describe, "*", nil, nil); d.Allowed != s.allow {
					t.Errorf("after %s: allowed %v (%s), want %v", s.name, d.Allowed, d.Reason, s.allow)
				}
			}
		}
	})

	t.Run("unknown principal", func(t *testing.T) {
		if d := e.svc.Authorize(&api.Caller{Type: "Martian", ARN: "x"}, "compute:DescribeInstances", "*", nil, nil); d.Allowed {
			t.Errorf("unknown principal type allowed: %+v", d)
		}
		gone := *admin
		gone.UserName, gone.ARN = "ghost", e.svc.arn("iam", "user/ghost")
		if d := e.svc.Authorize(&gone, "compute:DescribeInstances", "*", nil, nil); d.Allowed {
			t.Errorf("caller of a missing user allowed: %+v", d)
		}
	})
}

// BenchmarkCredentialsAuthorize is what the API does on every request
// signed with a long-term key.
func BenchmarkCredentialsAuthorize(b *testing.B) {
	e := newEnv(b)
	resp, _ := e.initAccount("alice")
	id := resp.AccessKey.AccessKeyID
	b.ReportAllocs()
	for b.Loop() {
		_, active, c, err := e.svc.Credentials(id, "")
		if err != nil || !active {
			b.Fatal(err)
		}
		if d := e.svc.Authorize(c, "compute:DescribeInstances", "*", nil, nil); !d.Allowed {
			b.Fatal(d.Reason)
		}
	}
}
