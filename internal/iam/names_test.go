package iam

import (
	"slices"
	"testing"

	"github.com/azote/azote/internal/api"
)

const allowEverything = `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}`

// A role is authorised by the ARN of the role the call acts on: a
// RoleName that is an ARN is refused, not authorised as a nonsense ARN
// and then acted on as the role it names; a RoleArn is this account's,
// or a name, never taken as the resource as written.
func TestRoleNamedByARN(t *testing.T) {
	e := newEnv(t)
	g := e.gateway()
	acct := e.svc.AccountID()
	mallory, k := e.user("mallory")
	as := keyCreds(k)
	// mallory may do anything in IAM except touch Admin and auditor.
	must(t, e.svc.PutInlinePolicy(KindUser, "mallory", "all-but-admin", `{"Version": "2012-10-17", "Statement": [
		{"Effect": "Allow", "Action": ["iam:*", "sts:AssumeRole"], "Resource": "*"},
		{"Effect": "Deny", "Action": ["iam:*", "sts:AssumeRole"], "Resource": ["arn:azote:iam::*:role/Admin", "arn:azote:iam::*:role/auditor"]}]}`))
	_, err := e.svc.CreateRole("Admin", trustDoc(acct, ""), 0)
	must(t, err)
	// auditor trusts mallory: only the Deny keeps her out.
	_, err = e.svc.CreateRole("auditor", trustDoc(mallory.ARN, ""), 0)
	must(t, err)
	before, err := e.svc.GetRole("Admin")
	must(t, err)

	adminARN := e.svc.arn("iam", "role/Admin")
	trustMallory := trustDoc(mallory.ARN, "")
	calls := []struct {
		op  string
		req func(role string) any
	}{
		{"iam:GetRole", func(r string) any { return api.RoleRequest{RoleName: r} }},
		{"iam:UpdateAssumeRolePolicy", func(r string) any {
			return api.UpdateAssumeRolePolicyRequest{RoleName: r, PolicyDocument: trustMallory}
		}},
		{"iam:AttachRolePolicy", func(r string) any { return api.AttachRequest{RoleName: r, PolicyArn: "AdministratorAccess"} }},
		{"iam:PutRolePolicy", func(r string) any {
			return api.InlinePolicyRequest{RoleName: r, PolicyName: "p", PolicyDocument: allowEverything}
		}},
		{"iam:DetachRolePolicy", func(r string) any { return api.AttachRequest{RoleName: r, PolicyArn: "AdministratorAccess"} }},
		{"iam:DeleteRolePolicy", func(r string) any { return api.InlinePolicyRequest{RoleName: r, PolicyName: "p"} }},
		{"iam:DeleteRole", func(r string) any { return api.RoleRequest{RoleName: r} }},
	}
	for _, c := range calls {
		for _, ref := range []string{adminARN, "arn:azote:iam::999999999999:role/Admin", "Admin/../Admin", ""} {
			wantCode(t, g.call(as, c.op, c.req(ref), nil), api.CodeInvalidName)
		}
		// By its name the Deny applies.
		wantCode(t, g.call(as, c.op, c.req("Admin"), nil), api.CodeAccessDenied)
	}
	after, err := e.svc.GetRole("Admin")
	must(t, err)
	if after.TrustPolicy != before.TrustPolicy || len(after.Attached) > 0 || len(after.Inline) > 0 {
		t.Fatalf("role Admin changed: %+v", after)
	}

	// RoleArn takes this account's ARN or a name; both are authorised on
	// the role's ARN, whatever its name starts with.
	for _, ref := range []string{"auditor", e.svc.arn("iam", "role/auditor")} {
		wantCode(t, g.call(as, "sts:AssumeRole", api.AssumeRoleRequest{RoleArn: ref, RoleSessionName: "s"}, nil), api.CodeAccessDenied)
	}
	for _, ref := range []string{"arn:azote:iam::999999999999:role/auditor", "arn:azote:sts::" + acct + ":role/auditor", "auditor/x"} {
		err := g.call(as, "sts:AssumeRole", api.AssumeRoleRequest{RoleArn: ref, RoleSessionName: "s"}, nil)
		if !api.IsCode(err, api.CodeInvalidParameter) && !api.IsCode(err, api.CodeInvalidName) {
			t.Errorf("AssumeRole %q: %v, want it refused as malformed", ref, err)
		}
	}
	// Nothing in the service takes an ARN for a role name either.
	_, err = e.svc.GetRole(adminARN)
	wantCode(t, err, api.CodeNoSuchEntity)
	wantCode(t, e.svc.DeleteRole(adminARN), api.CodeNoSuchEntity)
}

// Every IAM name is checked before it is authorised: users, groups,
// policies, MFA devices.
func TestNamesChecked(t *testing.T) {
	e := newEnv(t)
	g := e.gateway()
	acct := e.svc.AccountID()
	_, k := e.user("admin")
	as := keyCreds(k)
	must(t, e.svc.AttachPolicy(KindUser, "admin", "AdministratorAccess"))
	bad := []string{"a/b", "arn:azote:iam::" + acct + ":user/admin", "x y", string(make([]byte, 65))}
	for _, n := range bad {
		for _, c := range []struct {
			op  string
			req any
		}{
			{"iam:GetUser", api.UserRequest{UserName: n}},
			{"iam:DeleteUser", api.UserRequest{UserName: n}},
			{"iam:ListAccessKeys", api.UserRequest{UserName: n}},
			{"iam:GetGroup", api.GroupRequest{GroupName: n}},
			{"iam:AddUserToGroup", api.GroupMemberRequest{GroupName: "g", UserName: n}},
			{"iam:PutUserPolicy", api.InlinePolicyRequest{UserName: n, PolicyName: "p", PolicyDocument: allowEverything}},
			{"iam:PutUserPolicy", api.InlinePolicyRequest{UserName: "admin", PolicyName: n, PolicyDocument: allowEverything}},
			{"iam:CreateVirtualMFADevice", api.CreateVirtualMFADeviceRequest{VirtualMFADeviceName: n}},
		} {
			wantCode(t, g.call(as, c.op, c.req, nil), api.CodeInvalidName)
		}
	}
	// PolicyArn: a built-in, this account's, or a name; no other account.
	for _, ref := range []string{"arn:azote:iam::999999999999:policy/P", "arn:azote:iam::" + acct + ":policy/a/b"} {
		err := g.call(as, "iam:GetPolicy", api.PolicyRequest{PolicyArn: ref}, nil)
		if !api.IsCode(err, api.CodeInvalidParameter) && !api.IsCode(err, api.CodeInvalidName) {
			t.Errorf("GetPolicy %q: %v, want it refused as malformed", ref, err)
		}
	}
	_, err := e.svc.CreatePolicy("P", allowEverything)
	must(t, err)
	for _, ref := range []string{"P", e.svc.arn("iam", "policy/P")} {
		must(t, g.call(as, "iam:GetPolicy", api.PolicyRequest{PolicyArn: ref}, nil))
	}
	for _, ref := range []string{"ReadOnlyAccess", BuiltinARN("ReadOnlyAccess")} {
		if arn, err := e.svc.policyRef(ref); err != nil || arn != BuiltinARN("ReadOnlyAccess") {
			t.Errorf("policyRef(%q) = %q, %v", ref, arn, err)
		}
	}
	// A serial is an MFA device ARN of this account.
	err = g.call(as, "iam:DeactivateMFADevice", api.MFADeviceRequest{UserName: "admin", SerialNumber: "arn:azote:iam::999999999999:mfa/x"}, nil)
	wantCode(t, err, api.CodeInvalidParameter)
}

// An access-key call by a caller that is not an IAM user must name the
// user, and a key is acted on only as a key of the user the call was
// authorised on: a role session denied on alice cannot reach her key by
// leaving UserName out.
func TestAccessKeyCallsNameTheOwner(t *testing.T) {
	e := newEnv(t)
	g := e.gateway()
	_, aliceKey := e.user("alice")
	_, carolKey := e.user("carol")
	bob, _ := e.user("bob")
	_, err := e.svc.CreateRole("ops", trustDoc(bob.ARN, ""), 0)
	must(t, err)
	must(t, e.svc.PutInlinePolicy(KindRole, "ops", "keys-but-alice", `{"Version": "2012-10-17", "Statement": [
		{"Effect": "Allow", "Action": "iam:*AccessKey*", "Resource": "*"},
		{"Effect": "Deny", "Action": "iam:*", "Resource": "arn:azote:iam::*:user/alice"}]}`))
	cr, err := e.svc.AssumeRole(bob, api.AssumeRoleRequest{RoleArn: "ops", RoleSessionName: "s"})
	must(t, err)
	as := sessionCreds(cr.Credentials)

	for _, op := range []string{"iam:UpdateAccessKey", "iam:DeleteAccessKey", "iam:RotateAccessKey"} {
		wantCode(t, g.call(as, op, api.AccessKeyRequest{AccessKeyID: aliceKey.AccessKeyID, Status: api.StatusInactive}, nil), api.CodeInvalidParameter)
		wantCode(t, g.call(as, op, api.AccessKeyRequest{UserName: "alice", AccessKeyID: aliceKey.AccessKeyID, Status: api.StatusInactive}, nil), api.CodeAccessDenied)
		// Named as carol's, alice's key is not there.
		wantCode(t, g.call(as, op, api.AccessKeyRequest{UserName: "carol", AccessKeyID: aliceKey.AccessKeyID, Status: api.StatusInactive}, nil), api.CodeNoSuchEntity)
	}
	for _, op := range []string{"iam:ListAccessKeys", "iam:CreateAccessKey"} {
		wantCode(t, g.call(as, op, api.UserRequest{}, nil), api.CodeInvalidParameter)
	}
	keys, err := e.svc.ListAccessKeys("alice")
	must(t, err)
	if len(keys) != 1 || keys[0].AccessKeyID != aliceKey.AccessKeyID || keys[0].Status != api.StatusActive {
		t.Fatalf("alice's keys = %+v, want her one key, active", keys)
	}
	// A user leaving UserName out acts on her own keys only, whatever
	// she is allowed.
	must(t, e.svc.AttachPolicy(KindUser, "carol", "AdministratorAccess"))
	wantCode(t, g.call(keyCreds(carolKey), "iam:UpdateAccessKey", api.AccessKeyRequest{AccessKeyID: aliceKey.AccessKeyID, Status: api.StatusInactive}, nil), api.CodeNoSuchEntity)
	var own []api.AccessKey
	must(t, g.call(keyCreds(carolKey), "iam:ListAccessKeys", api.UserRequest{}, &own))
	if len(own) != 1 || own[0].AccessKeyID != carolKey.AccessKeyID {
		t.Fatalf("carol's own keys = %+v", own)
	}
	// Named, carol's key is managed as the session's policy allows.
	must(t, g.call(as, "iam:UpdateAccessKey", api.AccessKeyRequest{UserName: "carol", AccessKeyID: carolKey.AccessKeyID, Status: api.StatusInactive}, nil))
	// The service never skips the owner check.
	wantCode(t, e.svc.UpdateAccessKey("", aliceKey.AccessKeyID, api.StatusInactive), api.CodeNoSuchEntity)
	wantCode(t, e.svc.DeleteAccessKey("", aliceKey.AccessKeyID), api.CodeNoSuchEntity)
}

// Making an MFA device binds it to a user, so it is authorised on the
// user as well as on the device: a user allowed any device but only her
// own user cannot bind a device to someone else.
func TestMFADeviceAuthorisedOnItsUser(t *testing.T) {
	e := newEnv(t)
	g := e.gateway()
	e.user("alice")
	_, k := e.user("mallory")
	as := keyCreds(k)
	// AWS's self-managed-MFA pattern.
	must(t, e.svc.PutInlinePolicy(KindUser, "mallory", "own-mfa", `{"Version": "2012-10-17", "Statement": [
		{"Effect": "Allow", "Action": "iam:CreateVirtualMFADevice", "Resource": ["arn:azote:iam::*:mfa/*", "arn:azote:iam::*:user/${aws:username}"]},
		{"Effect": "Allow", "Action": ["iam:EnableMFADevice", "iam:ListMFADevices"], "Resource": "arn:azote:iam::*:user/${aws:username}"}]}`))

	wantCode(t, g.call(as, "iam:CreateVirtualMFADevice", api.CreateVirtualMFADeviceRequest{VirtualMFADeviceName: "evil", UserName: "alice"}, nil), api.CodeAccessDenied)
	devs, err := e.svc.ListMFADevices("")
	must(t, err)
	if len(devs) != 0 {
		t.Fatalf("devices after a refused create: %+v", devs)
	}

	var d api.NewVirtualMFADevice
	must(t, g.call(as, "iam:CreateVirtualMFADevice", api.CreateVirtualMFADeviceRequest{VirtualMFADeviceName: "mallory-phone"}, &d))
	devs, err = e.svc.ListMFADevices("mallory")
	must(t, err)
	if len(devs) != 1 || devs[0].SerialNumber != d.SerialNumber {
		t.Fatalf("mallory's devices = %+v, want %s", devs, d.SerialNumber)
	}
	// The call's record lists both resources it was authorised on.
	last := g.trail.recs[len(g.trail.recs)-1]
	var arns []string
	for _, r := range last.Resources {
		arns = append(arns, r.ARN)
	}
	if want := []string{d.SerialNumber, e.svc.userARN("mallory")}; !slices.Equal(arns, want) {
		t.Errorf("audit resources = %q, want %q", arns, want)
	}
}

// TestARNRefsParse checks that a RoleArn, PolicyArn or SerialNumber is
// recognised as an ARN by parsing it, not by its first letters: an ARN of
// another account, service, partition or kind is refused whole, and a
// name is never taken for an ARN.
func TestARNRefsParse(t *testing.T) {
	e := newEnv(t)
	acct := e.svc.AccountID()
	for _, ref := range []string{
		"arn:azote:iam::" + acct + ":role/ops",
	} {
		if n, err := e.svc.roleRef(ref); err != nil || n != "ops" {
			t.Errorf("roleRef(%q) = %q, %v", ref, n, err)
		}
	}
	for _, ref := range []string{
		"arn:azote:iam::999999999999:role/ops", "arn:azote:sts::" + acct + ":role/ops",
		"arn:aws:iam::" + acct + ":role/ops", "arn:azote:iam:eu:" + acct + ":role/ops",
		"arn:azote:iam::" + acct + ":user/ops", "arn:azote:iam::" + acct + ":role", "arn:",
	} {
		if n, err := e.svc.roleRef(ref); !api.IsCode(err, api.CodeInvalidParameter) {
			t.Errorf("roleRef(%q) = %q, %v: want InvalidParameterValue", ref, n, err)
		}
	}
	if n, err := e.svc.roleRef("arnold"); err != nil || n != "arnold" {
		t.Errorf("roleRef(arnold) = %q, %v: a name", n, err)
	}
	if _, err := e.svc.mfaSerialRef("arn:azote:iam::" + acct + ":user/root-mfa"); !api.IsCode(err, api.CodeInvalidParameter) {
		t.Errorf("mfaSerialRef of a user ARN = %v", err)
	}
	if _, err := e.svc.policyRef("arn:azote:iam::999999999999:policy/p"); !api.IsCode(err, api.CodeInvalidParameter) {
		t.Errorf("policyRef of another account = %v", err)
	}
}
