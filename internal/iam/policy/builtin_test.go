package policy

import "testing"

// TenantReadOnlyAccess, decided on the requests a tenant's calls make:
// the resource ARN, the resource's tags and the caller's global keys as
// azoted gives them (aws:PrincipalArn of a role session is the role).
// ReadOnlyAccess decides the same requests, to show what it grants.
func TestTenantReadOnlyAccess(t *testing.T) {
	const (
		acct     = "123456789012"
		tenant   = "arn:azote:iam::" + acct + ":role/tenant-a"
		session  = "arn:azote:sts::" + acct + ":assumed-role/tenant-a/alice"
		other    = "arn:azote:iam::" + acct + ":role/tenant-b"
		mine     = "arn:azote:compute::" + acct + ":instance/i-0000000000000000a"
		theirs   = "arn:azote:compute::" + acct + ":instance/i-0000000000000000b"
		myVol    = "arn:azote:compute::" + acct + ":volume/vol-0000000000000000a"
		image    = "arn:azote:compute::" + acct + ":image/img-0000000000000000a"
		host     = "arn:azote:compute::" + acct + ":host/h1"
		trail    = "arn:azote:audit::" + acct + ":trail/default"
		userDave = "arn:azote:iam::" + acct + ":user/dave"
	)
	role := func(kv ...string) map[string][]string {
		return ctx(append([]string{"aws:principalarn", tenant, "aws:principaltype", "AssumedRole"}, kv...)...)
	}
	dave := func(kv ...string) map[string][]string {
		return ctx(append([]string{"aws:principalarn", userDave, "aws:username", "dave", "aws:principaltype", "User"}, kv...)...)
	}
	for _, c := range []struct {
		name             string
		req              Request
		tenant, readOnly Decision
	}{
		{"own instance", Request{session, "compute:DescribeInstances", mine, role("aws:resourcetag/owner", tenant)}, Allow, Allow},
		{"own console", Request{session, "compute:GetConsoleOutput", mine, role("aws:resourcetag/owner", tenant)}, Allow, Allow},
		{"own volume", Request{session, "compute:DescribeVolumes", myVol, role("aws:resourcetag/owner", tenant)}, Allow, Allow},
		{"user's own volume", Request{userDave, "compute:DescribeVolumes", myVol, dave("aws:resourcetag/owner", userDave)}, Allow, Allow},
		{"another tenant's console", Request{session, "compute:GetConsoleOutput", theirs, role("aws:resourcetag/owner", other)}, ImplicitDeny, Allow},
		{"another tenant's instance", Request{session, "compute:DescribeInstances", theirs, role("aws:resourcetag/owner", other)}, ImplicitDeny, Allow},
		{"untagged console", Request{session, "compute:GetConsoleOutput", theirs, role()}, ImplicitDeny, Allow},
		// The session ARN is not the owner: every session of the role is.
		{"tagged with a session", Request{session, "compute:DescribeInstances", theirs, role("aws:resourcetag/owner", session)}, ImplicitDeny, Allow},
		{"list of every instance", Request{session, "compute:DescribeInstances", "*", role()}, ImplicitDeny, Allow},
		{"list of every volume", Request{session, "compute:DescribeVolumes", "*", role()}, ImplicitDeny, Allow},
		{"every volume's metrics", Request{session, "compute:GetHostMetrics", host, role()}, ImplicitDeny, Allow},
		{"audit log file", Request{session, "audit:GetLogFile", trail, role()}, ImplicitDeny, Allow},
		{"audit file list", Request{session, "audit:ListLogFiles", trail, role()}, ImplicitDeny, Allow},
		{"image catalogue", Request{session, "compute:DescribeImages", "*", role()}, Allow, Allow},
		{"one image", Request{session, "compute:DescribeImages", image, role()}, Allow, Allow},
		{"own user", Request{userDave, "iam:GetUser", userDave, dave()}, Allow, Allow},
		{"own keys", Request{userDave, "iam:ListAccessKeys", userDave, dave()}, Allow, Allow},
		{"another user", Request{userDave, "iam:GetUser", "arn:azote:iam::" + acct + ":user/erin", dave()}, ImplicitDeny, Allow},
		{"a role session has no user", Request{session, "iam:GetUser", "arn:azote:iam::" + acct + ":user/alice", role()}, ImplicitDeny, Allow},
		{"users list", Request{userDave, "iam:ListUsers", "*", dave()}, ImplicitDeny, Allow},
		{"who am I", Request{session, "sts:GetCallerIdentity", "*", role()}, Allow, Allow},
		{"no writes", Request{session, "compute:TerminateInstances", mine, role("aws:resourcetag/owner", tenant)}, ImplicitDeny, ImplicitDeny},
		{"no console of own instance by name collision", Request{session, "compute:GetConsoleOutput", mine, role("aws:resourcetag/owner", "tenant-a")}, ImplicitDeny, Allow},
	} {
		for _, p := range []struct {
			name string
			want Decision
		}{{"TenantReadOnlyAccess", c.tenant}, {"ReadOnlyAccess", c.readOnly}} {
			req := c.req
			if got := Evaluate(named(t, []pol{{name: p.name}}), nil, &req); got.Decision != p.want {
				t.Errorf("%s, %s: %v by %q, want %v", c.name, p.name, got.Decision, got.Statement, p.want)
			}
		}
	}
}
