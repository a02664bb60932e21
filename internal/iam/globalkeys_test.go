package iam

import (
	"slices"
	"testing"

	"github.com/azote/azote/internal/api"
)

// The global condition keys of a role session are AWS's: no aws:username
// (the session name is the caller's choice), aws:PrincipalArn is the
// role, aws:userid is ROLEID:SESSION, and aws:PrincipalType uses AWS's
// words. Each mistake here is a policy that means something else than
// its author wrote.
func TestRoleSessionGlobalKeys(t *testing.T) {
	e := newEnv(t)
	resp, _ := e.initAccount("alice")
	admin := e.caller(resp.AccessKey.AccessKeyID)
	bob, _ := e.user("bob")

	// The standard self-service pattern, on a role anyone in the account
	// may assume and on bob himself.
	selfService := `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
		"Action": ["iam:CreateAccessKey", "iam:GetUser"], "Resource": "arn:azote:iam::` + e.svc.AccountID() + `:user/${aws:username}"}]}`
	role, err := e.svc.CreateRole("SelfService", trustDoc(bob.ARN, ""), 0)
	must(t, err)
	must(t, e.svc.PutInlinePolicy(KindRole, "SelfService", "self", selfService))
	must(t, e.svc.PutInlinePolicy(KindUser, "bob", "self", selfService))

	out, err := e.svc.AssumeRole(bob, api.AssumeRoleRequest{RoleArn: role.ARN, RoleSessionName: "alice"})
	must(t, err)
	sess := e.sessionCaller(out.Credentials)

	t.Run("aws:username is absent for a role session", func(t *testing.T) {
		for _, target := range []string{"alice", "bob", "SelfService"} {
			if d := e.svc.Authorize(sess, "iam:CreateAccessKey", e.svc.userARN(target), nil, nil); d.Allowed {
				t.Errorf("session named %q: CreateAccessKey on user/%s allowed (%s)", sess.UserName, target, d.Reason)
			}
		}
		// A Deny with the variable cannot match either: nothing resolves.
		ctx := e.svc.conditionContext(sess)
		if v, ok := ctx["aws:username"]; ok {
			t.Errorf("role session context has aws:username %q", v)
		}
		// A user still gets it, and only for himself.
		if d := e.svc.Authorize(bob, "iam:CreateAccessKey", e.svc.userARN("bob"), nil, nil); !d.Allowed {
			t.Errorf("bob on himself: %s", d.Reason)
		}
		if d := e.svc.Authorize(bob, "iam:CreateAccessKey", e.svc.userARN("alice"), nil, nil); d.Allowed {
			t.Errorf("bob on alice: allowed (%s)", d.Reason)
		}
		// Host root is no IAM user either.
		if _, ok := e.svc.conditionContext(e.svc.HostRoot(1))["aws:username"]; ok {
			t.Error("host root has aws:username")
		}
	})

	t.Run("aws:userid is ROLEID:SESSION", func(t *testing.T) {
		ctx := e.svc.conditionContext(sess)
		if want := role.RoleID + ":alice"; !slices.Equal(ctx["aws:userid"], []string{want}) {
			t.Errorf("aws:userid = %v, want %s", ctx["aws:userid"], want)
		}
		if got := e.svc.conditionContext(bob)["aws:userid"]; !slices.Equal(got, []string{bob.PrincipalID}) {
			t.Errorf("user aws:userid = %v, want %s", got, bob.PrincipalID)
		}
	})

	t.Run("aws:PrincipalArn is the role", func(t *testing.T) {
		// An admin role, with a Deny on terminating keyed on the role's ARN.
		adminTrust := trustDoc(bob.ARN, "")
		_, err := e.svc.CreateRole("Ops", adminTrust, 0)
		must(t, err)
		must(t, e.svc.AttachPolicy(KindRole, "Ops", BuiltinARN("AdministratorAccess")))
		opsARN := e.svc.roleARN("Ops")
		deny := `{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "compute:TerminateInstances", "Resource": "*",
			"Condition": {"ArnEquals": {"aws:PrincipalArn": "` + opsARN + `"}}}]}`
		must(t, e.svc.PutInlinePolicy(KindRole, "Ops", "no-terminate", deny))
		o, err := e.svc.AssumeRole(bob, api.AssumeRoleRequest{RoleArn: opsARN, RoleSessionName: "night-shift"})
		must(t, err)
		ops := e.sessionCaller(o.Credentials)
		if d := e.svc.Authorize(ops, "compute:TerminateInstances", "arn:azote:compute::"+e.svc.AccountID()+":instance/i-1", nil, nil); d.Allowed {
			t.Errorf("Deny on aws:PrincipalArn %s did not apply to a session of the role (%s)", opsARN, d.Reason)
		}
		if d := e.svc.Authorize(ops, "compute:DescribeInstances", "*", nil, nil); !d.Allowed {
			t.Errorf("the role's other permissions: %s", d.Reason)
		}
		if got := e.svc.conditionContext(ops)["aws:principalarn"]; !slices.Equal(got, []string{opsARN}) {
			t.Errorf("aws:PrincipalArn = %v, want %s", got, opsARN)
		}
		if got := e.svc.conditionContext(bob)["aws:principalarn"]; !slices.Equal(got, []string{bob.ARN}) {
			t.Errorf("user aws:PrincipalArn = %v, want %s", got, bob.ARN)
		}
	})

	t.Run("aws:PrincipalType in AWS's words", func(t *testing.T) {
		for _, c := range []struct {
			who  *api.Caller
			want string
		}{{admin, "User"}, {bob, "User"}, {sess, "AssumedRole"}, {&api.Caller{Type: api.PrincipalRoot, ARN: e.svc.RootARN(), MFA: true}, "Account"}} {
			if got := e.svc.conditionContext(c.who)["aws:principaltype"]; !slices.Equal(got, []string{c.want}) {
				t.Errorf("%s: aws:PrincipalType = %v, want %s", c.who.ARN, got, c.want)
			}
		}
		// A Deny written as in AWS applies.
		deny := `{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "iam:GetUser", "Resource": "*",
			"Condition": {"StringEquals": {"aws:PrincipalType": "User"}}}]}`
		must(t, e.svc.PutInlinePolicy(KindUser, "bob", "no-users", deny))
		if d := e.svc.Authorize(bob, "iam:GetUser", e.svc.userARN("bob"), nil, nil); d.Allowed {
			t.Errorf("Deny on aws:PrincipalType User did not apply to an IAM user (%s)", d.Reason)
		}
	})
}
