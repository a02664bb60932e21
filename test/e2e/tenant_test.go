package e2e

import (
	"testing"

	"github.com/azote/azote/internal/api"
)

// TestTenantControls runs, through the CLI and the signed API, what a
// tenant role relies on: a session named after another user is no user
// (aws:username), a Deny keyed on the role's ARN holds for its sessions
// (aws:PrincipalArn), creation can be confined by request tags and to
// encrypted volumes, attaching policies by iam:PolicyARN, tag keys that
// differ only in case are refused, and TenantReadOnlyAccess reads only
// what is tagged as the tenant's.
func TestTenantControls(t *testing.T) {
	a := newAccessHost(t)
	a.initAccount()
	var dev struct{ SerialNumber, Base32StringSeed string }
	a.okJSON(&dev, "iam", "create-virtual-mfa-device", "--virtual-mfa-device-name", "admin", "--profile", "admin")
	a.ok("iam", "enable-mfa-device", "--profile", "admin", "--serial-number", dev.SerialNumber,
		"--authentication-code1", totp(t, dev.Base32StringSeed, -1), "--authentication-code2", totp(t, dev.Base32StringSeed, 0))
	a.ok("sts", "get-session-token", "--profile", "admin", "--mfa-code", totp(t, dev.Base32StringSeed, 1), "--save-profile", "admin-mfa")
	var who map[string]any
	a.okJSON(&who, "sts", "get-caller-identity", "--profile", "admin")
	acct := who["Account"].(string)
	adm := func(args ...string) string { return a.ok(append(args, "--profile", "admin-mfa")...) }

	role := "arn:azote:iam::" + acct + ":role/tenant-a"
	other := "arn:azote:iam::" + acct + ":role/tenant-b"
	adm("iam", "create-user", "--user-name", "ten")
	var key struct{ AccessKeyId, SecretAccessKey string }
	a.okJSON(&key, "iam", "create-access-key", "--user-name", "ten", "--profile", "admin-mfa")
	a.writeProfile("ten", key.AccessKeyId, key.SecretAccessKey, "")
	adm("iam", "put-user-policy", "--user-name", "ten", "--policy-name", "assume", "--policy-document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"`+role+`"}]}`)
	adm("iam", "create-role", "--role-name", "tenant-a", "--assume-role-policy-document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:azote:iam::`+acct+`:user/ten"},"Action":"sts:AssumeRole"}]}`)
	adm("iam", "attach-role-policy", "--role-name", "tenant-a", "--policy-arn", "TenantReadOnlyAccess")
	adm("iam", "put-role-policy", "--role-name", "tenant-a", "--policy-name", "tenant", "--policy-document",
		`{"Version":"2012-10-17","Statement":[`+
			`{"Effect":"Allow","Action":"compute:CreateVolume","Resource":"*","Condition":{"StringEquals":{"aws:RequestTag/owner":"${aws:PrincipalArn}"}}},`+
			`{"Effect":"Deny","Action":"compute:CreateVolume","Resource":"*","Condition":{"Bool":{"azote:Encrypted":"false"}}},`+
			`{"Effect":"Allow","Action":"iam:CreateAccessKey","Resource":"arn:azote:iam::*:user/${aws:username}"},`+
			`{"Effect":"Allow","Action":"iam:AttachUserPolicy","Resource":"*","Condition":{"ArnEquals":{"iam:PolicyARN":"arn:azote:iam::azote:policy/ReadOnlyAccess"}}}]}`)
	// The session is named after the administrator.
	a.ok("sts", "assume-role", "--role-arn", "tenant-a", "--role-session-name", "admin", "--profile", "ten", "--save-profile", "tenant")

	t.Run("SessionNameIsNoUserName", func(t *testing.T) {
		a := a.with(t)
		a.fails(api.CodeAccessDenied, "iam", "create-access-key", "--user-name", "admin", "--profile", "tenant")
		var keys []map[string]any
		a.okJSON(&keys, "iam", "list-access-keys", "--user-name", "admin", "--profile", "admin-mfa")
		if len(keys) != 1 {
			t.Fatalf("admin has %d access keys, want the one from init", len(keys))
		}
	})

	t.Run("CreateConditions", func(t *testing.T) {
		a := a.with(t)
		a.ok("volume", "create", "--size", "8M", "--name", "mine", "--tag", "owner="+role, "--profile", "tenant")
		a.fails(api.CodeAccessDenied, "volume", "create", "--size", "8M", "--name", "x1", "--tag", "owner="+other, "--profile", "tenant")
		a.fails(api.CodeAccessDenied, "volume", "create", "--size", "8M", "--name", "x2", "--profile", "tenant")
		a.fails(api.CodeAccessDenied, "volume", "create", "--size", "8M", "--name", "x3", "--plaintext", "--tag", "owner="+role, "--profile", "tenant")
		a.fails(api.CodeDuplicateTagKeys, "volume", "create", "--size", "8M", "--name", "x4", "--tag", "owner="+role, "--tag", "OWNER="+other, "--profile", "tenant")
		// Also for host root, whose policies never look at tags.
		a.fails(api.CodeDuplicateTagKeys, "volume", "create", "--size", "8M", "--name", "x5", "--tag", "team=a", "--tag", "Team=b")
		var vols []api.Volume
		a.okJSON(&vols, "volume", "list", "--profile", "admin-mfa")
		for _, v := range vols {
			if v.Name != "mine" {
				t.Errorf("a refused create left volume %s (%s)", v.Name, v.ID)
			}
		}
		a.fails(api.CodeAccessDenied, "iam", "attach-user-policy", "--user-name", "ten", "--policy-arn", "AdministratorAccess", "--profile", "tenant")
		a.fails(api.CodeAccessDenied, "iam", "attach-user-policy", "--user-name", "ten", "--policy-arn", "arn:azote:iam::azote:policy/PowerUserAccess", "--profile", "tenant")
		a.ok("iam", "attach-user-policy", "--user-name", "ten", "--policy-arn", "ReadOnlyAccess", "--profile", "tenant")
	})

	t.Run("TenantReadOnlyAccess", func(t *testing.T) {
		a := a.with(t)
		adm("volume", "create", "--size", "8M", "--name", "theirs", "--tag", "owner="+other)
		a.ok("volume", "describe", "mine", "--profile", "tenant")
		a.fails(api.CodeAccessDenied, "volume", "describe", "theirs", "--profile", "tenant")
		a.fails(api.CodeAccessDenied, "volume", "list", "--profile", "tenant")
		a.fails(api.CodeAccessDenied, "audit", "lookup", "--profile", "tenant")
		// Running commands in a guest is its own action, which the
		// tenant's role does not grant.
		a.fails(api.CodeAccessDenied, "instance", "exec", "web", "--profile", "tenant", "--", "id")
		// Another session of the same role reads the same volumes.
		a.ok("sts", "assume-role", "--role-arn", "tenant-a", "--role-session-name", "night", "--profile", "ten", "--save-profile", "tenant-night")
		a.ok("volume", "describe", "mine", "--profile", "tenant-night")
	})

	t.Run("DenyOnRoleARN", func(t *testing.T) {
		a := a.with(t)
		adm("iam", "put-role-policy", "--role-name", "tenant-a", "--policy-name", "freeze", "--policy-document",
			`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"compute:*","Resource":"*","Condition":{"ArnEquals":{"aws:PrincipalArn":"`+role+`"}}}]}`)
		a.fails(api.CodeAccessDenied, "volume", "describe", "mine", "--profile", "tenant")
		a.fails(api.CodeAccessDenied, "volume", "describe", "mine", "--profile", "tenant-night")
	})
}
