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
		{"own instance", Request{Principal: session, Action: "compute:DescribeInstances", Resource: mine, Context: role("aws:resourcetag/owner", tenant)}, Allow, Allow},
		{"own console", Request{Principal: session, Action: "compute:GetConsoleOutput", Resource: mine, Context: role("aws:resourcetag/owner", tenant)}, Allow, Allow},
		{"own volume", Request{Principal: session, Action: "compute:DescribeVolumes", Resource: myVol, Context: role("aws:resourcetag/owner", tenant)}, Allow, Allow},
		{"user's own volume", Request{Principal: userDave, Action: "compute:DescribeVolumes", Resource: myVol, Context: dave("aws:resourcetag/owner", userDave)}, Allow, Allow},
		{"another tenant's console", Request{Principal: session, Action: "compute:GetConsoleOutput", Resource: theirs, Context: role("aws:resourcetag/owner", other)}, ImplicitDeny, Allow},
		{"another tenant's instance", Request{Principal: session, Action: "compute:DescribeInstances", Resource: theirs, Context: role("aws:resourcetag/owner", other)}, ImplicitDeny, Allow},
		{"untagged console", Request{Principal: session, Action: "compute:GetConsoleOutput", Resource: theirs, Context: role()}, ImplicitDeny, Allow},
		// The session ARN is not the owner: every session of the role is.
		{"tagged with a session", Request{Principal: session, Action: "compute:DescribeInstances", Resource: theirs, Context: role("aws:resourcetag/owner", session)}, ImplicitDeny, Allow},
		{"list of every instance", Request{Principal: session, Action: "compute:DescribeInstances", Resource: "*", Context: role()}, ImplicitDeny, Allow},
		{"list of every volume", Request{Principal: session, Action: "compute:DescribeVolumes", Resource: "*", Context: role()}, ImplicitDeny, Allow},
		{"every volume's metrics", Request{Principal: session, Action: "compute:GetHostMetrics", Resource: host, Context: role()}, ImplicitDeny, Allow},
		{"audit log file", Request{Principal: session, Action: "audit:GetLogFile", Resource: trail, Context: role()}, ImplicitDeny, Allow},
		{"audit file list", Request{Principal: session, Action: "audit:ListLogFiles", Resource: trail, Context: role()}, ImplicitDeny, Allow},
		{"image catalogue", Request{Principal: session, Action: "compute:DescribeImages", Resource: "*", Context: role()}, Allow, Allow},
		{"one image", Request{Principal: session, Action: "compute:DescribeImages", Resource: image, Context: role()}, Allow, Allow},
		{"own user", Request{Principal: userDave, Action: "iam:GetUser", Resource: userDave, Context: dave()}, Allow, Allow},
		{"own keys", Request{Principal: userDave, Action: "iam:ListAccessKeys", Resource: userDave, Context: dave()}, Allow, Allow},
		{"another user", Request{Principal: userDave, Action: "iam:GetUser", Resource: "arn:azote:iam::" + acct + ":user/erin", Context: dave()}, ImplicitDeny, Allow},
		{"a role session has no user", Request{Principal: session, Action: "iam:GetUser", Resource: "arn:azote:iam::" + acct + ":user/alice", Context: role()}, ImplicitDeny, Allow},
		{"users list", Request{Principal: userDave, Action: "iam:ListUsers", Resource: "*", Context: dave()}, ImplicitDeny, Allow},
		{"who am I", Request{Principal: session, Action: "sts:GetCallerIdentity", Resource: "*", Context: role()}, Allow, Allow},
		{"no writes", Request{Principal: session, Action: "compute:TerminateInstances", Resource: mine, Context: role("aws:resourcetag/owner", tenant)}, ImplicitDeny, ImplicitDeny},
		{"no console of own instance by name collision", Request{Principal: session, Action: "compute:GetConsoleOutput", Resource: mine, Context: role("aws:resourcetag/owner", "tenant-a")}, ImplicitDeny, Allow},
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
