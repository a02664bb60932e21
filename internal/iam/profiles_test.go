package iam

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
)

// computeTrust lets the compute service assume a role (AWS's
// ec2.amazonaws.com pattern).
const computeTrust = `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "compute.azote"}, "Action": "sts:AssumeRole"}]}`

func TestInstanceProfiles(t *testing.T) {
	e := newEnv(t)
	p, err := e.svc.CreateInstanceProfile("web")
	must(t, err)
	if p.ARN != "arn:azote:iam::"+e.svc.AccountID()+":instance-profile/web" || !strings.HasPrefix(p.InstanceProfileID, "AIPA") || len(p.Roles) != 0 || !p.CreatedAt.Equal(t0) {
		t.Fatalf("created profile = %+v", p)
	}
	_, err = e.svc.CreateInstanceProfile("web")
	wantCode(t, err, api.CodeEntityAlreadyExists)
	_, err = e.svc.CreateInstanceProfile("bad:name")
	wantCode(t, err, api.CodeInvalidName)
	_, err = e.svc.GetInstanceProfile("nope")
	wantCode(t, err, api.CodeNoSuchEntity)

	role, err := e.svc.CreateRole("app", computeTrust, 0)
	must(t, err)
	other, err := e.svc.CreateRole("other", computeTrust, 0)
	must(t, err)
	wantCode(t, e.svc.AddRoleToInstanceProfile("web", "nope"), api.CodeNoSuchEntity)
	wantCode(t, e.svc.AddRoleToInstanceProfile("nope", "app"), api.CodeNoSuchEntity)
	must(t, e.svc.AddRoleToInstanceProfile("web", "app"))
	// One role per profile, as AWS: even the same one again.
	wantCode(t, e.svc.AddRoleToInstanceProfile("web", "other"), api.CodeLimitExceeded)
	wantCode(t, e.svc.AddRoleToInstanceProfile("web", "app"), api.CodeLimitExceeded)

	got, err := e.svc.GetInstanceProfile("web")
	must(t, err)
	if len(got.Roles) != 1 || got.Roles[0].ARN != role.ARN || got.Roles[0].RoleID != role.RoleID {
		t.Fatalf("profile roles = %+v", got.Roles)
	}
	_, err = e.svc.CreateInstanceProfile("batch")
	must(t, err)
	all, err := e.svc.ListInstanceProfiles()
	must(t, err)
	if len(all) != 2 || all[0].InstanceProfileName != "batch" || all[1].InstanceProfileName != "web" {
		t.Fatalf("ListInstanceProfiles = %+v", all)
	}
	forRole, err := e.svc.ListInstanceProfilesForRole("app")
	must(t, err)
	if len(forRole) != 1 || forRole[0].InstanceProfileName != "web" {
		t.Fatalf("ListInstanceProfilesForRole(app) = %+v", forRole)
	}
	forOther, err := e.svc.ListInstanceProfilesForRole(other.RoleName)
	must(t, err)
	if len(forOther) != 0 {
		t.Fatalf("ListInstanceProfilesForRole(other) = %+v", forOther)
	}
	_, err = e.svc.ListInstanceProfilesForRole("nope")
	wantCode(t, err, api.CodeNoSuchEntity)

	// Neither a profile with a role nor a role in a profile is deleted.
	wantCode(t, e.svc.DeleteInstanceProfile("web"), api.CodeDeleteConflict)
	wantCode(t, e.svc.DeleteRole("app"), api.CodeDeleteConflict)
	if _, err := e.svc.GetRole("app"); err != nil {
		t.Fatalf("role gone after a refused delete: %v", err)
	}

	wantCode(t, e.svc.RemoveRoleFromInstanceProfile("web", "other"), api.CodeNoSuchEntity)
	must(t, e.svc.RemoveRoleFromInstanceProfile("web", "app"))
	must(t, e.svc.DeleteRole("app"))
	must(t, e.svc.DeleteInstanceProfile("web"))
	wantCode(t, e.svc.DeleteInstanceProfile("web"), api.CodeNoSuchEntity)
}

func TestInstanceProfileForLaunch(t *testing.T) {
	e := newEnv(t)
	alice, _ := e.user("alice")
	_, err := e.svc.CreateRole("app", computeTrust, 0)
	must(t, err)
	_, err = e.svc.CreateRole("human", trustDoc(alice.ARN, ""), 0)
	must(t, err)
	_, err = e.svc.CreateRole("other-service", strings.Replace(computeTrust, "compute.azote", "audit.azote", 1), 0)
	must(t, err)
	for _, pr := range []struct{ profile, role string }{{"web", "app"}, {"people", "human"}, {"audit", "other-service"}, {"empty", ""}} {
		_, err := e.svc.CreateInstanceProfile(pr.profile)
		must(t, err)
		if pr.role != "" {
			must(t, e.svc.AddRoleToInstanceProfile(pr.profile, pr.role))
		}
	}
	acct := e.svc.AccountID()
	cases := []struct {
		ref      string
		code     api.Code // "" = accepted
		withRole string   // the role returned, even with an error
	}{
		{"web", "", "app"},
		{"arn:azote:iam::" + acct + ":instance-profile/web", "", "app"},
		{"nope", api.CodeNoSuchEntity, ""},
		{"empty", api.CodeInvalidParameter, ""},
		{"people", api.CodeInvalidParameter, "human"},
		{"audit", api.CodeInvalidParameter, "other-service"},
		{"arn:azote:iam::999999999999:instance-profile/web", api.CodeInvalidParameter, ""},
		{"arn:azote:iam::" + acct + ":role/app", api.CodeInvalidParameter, ""},
		{"", api.CodeInvalidName, ""},
	}
	for _, tc := range cases {
		p, err := e.svc.InstanceProfileForLaunch(tc.ref)
		if tc.code == "" {
			if err != nil {
				t.Errorf("%q: %v", tc.ref, err)
			}
		} else if !api.IsCode(err, tc.code) {
			t.Errorf("%q: err %v, want %s", tc.ref, err, tc.code)
		}
		role := ""
		if len(p.Roles) > 0 {
			role = p.Roles[0].RoleName
		}
		if role != tc.withRole {
			t.Errorf("%q: role %q, want %q", tc.ref, role, tc.withRole)
		}
	}
}

// instanceEnv is an account with profile web holding role app, which
// trusts the compute service.
func instanceEnv(t *testing.T) (*env, api.Role, api.InstanceProfile) {
	e := newEnv(t)
	role, err := e.svc.CreateRole("app", computeTrust, 0)
	must(t, err)
	must(t, e.svc.PutInlinePolicy(KindRole, "app", "read", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "compute:DescribeInstances", "Resource": "*", "Condition": {"StringEquals": {"compute:SourceInstanceARN": "arn:azote:compute::`+e.svc.AccountID()+`:instance/i-0123456789abcdef0"}}}]}`))
	p, err := e.svc.CreateInstanceProfile("web")
	must(t, err)
	must(t, e.svc.AddRoleToInstanceProfile("web", "app"))
	return e, role, p
}

func TestInstanceCredentials(t *testing.T) {
	e, role, p := instanceEnv(t)
	const id = "i-0123456789abcdef0"

	// Nothing is minted for an instance that was never launched.
	_, _, _, err := e.svc.InstanceCredentials(p.ARN, id)
	wantCode(t, err, api.CodeIncorrectInstanceState)

	must(t, e.svc.ActivateInstanceCredentials(id))
	cr, gotRole, gotProfile, err := e.svc.InstanceCredentials(p.ARN, id)
	must(t, err)
	if gotRole.ARN != role.ARN || gotProfile.InstanceProfileID != p.InstanceProfileID {
		t.Fatalf("role %s profile %s", gotRole.ARN, gotProfile.InstanceProfileID)
	}
	if !strings.HasPrefix(cr.AccessKeyID, "ASIA") || !cr.Expiration.Equal(e.clk.Now().Add(time.Hour).Truncate(time.Second)) {
		t.Fatalf("credentials %s expire %v, want an hour from %v", cr.AccessKeyID, cr.Expiration, e.clk.Now())
	}
	c := e.sessionCaller(cr)
	wantARN := "arn:azote:sts::" + e.svc.AccountID() + ":assumed-role/app/" + id
	if c.Type != api.PrincipalAssumedRole || c.ARN != wantARN || c.PrincipalID != role.RoleID+":"+id || c.UserName != id ||
		c.IssuerARN != role.ARN || c.SourceInstance != id || !c.Session {
		t.Fatalf("instance session caller = %+v", c)
	}
	// The role's policies apply, and compute:SourceInstanceARN names the
	// instance.
	if d := e.svc.Authorize(c, "compute:DescribeInstances", "*", nil, nil); !d.Allowed {
		t.Errorf("DescribeInstances with the instance's session: %s", d.Reason)
	}
	if d := e.svc.Authorize(c, "compute:TerminateInstances", "*", nil, nil); d.Allowed {
		t.Error("TerminateInstances allowed to a role that has no such permission")
	}

	t.Run("expiry", func(t *testing.T) {
		e.clk.Advance(time.Hour)
		if _, _, _, err := e.svc.Credentials(cr.AccessKeyID, cr.SessionToken); !errors.Is(err, ErrExpiredToken) {
			t.Fatalf("an hour later: %v, want ErrExpiredToken", err)
		}
	})

	t.Run("shorter lifetime", func(t *testing.T) {
		must(t, e.svc.SetInstanceCredentialLifetime(3*time.Second))
		defer e.svc.SetInstanceCredentialLifetime(0)
		cr, _, _, err := e.svc.InstanceCredentials(p.ARN, id)
		must(t, err)
		if !cr.Expiration.Equal(e.clk.Now().Add(3 * time.Second).Truncate(time.Second)) {
			t.Fatalf("expires %v, want 3 s from %v", cr.Expiration, e.clk.Now())
		}
		if err := e.svc.SetInstanceCredentialLifetime(time.Millisecond); err == nil {
			t.Error("a lifetime of 1 ms was taken")
		}
	})

	t.Run("revoked at stop, for good", func(t *testing.T) {
		cr, _, _, err := e.svc.InstanceCredentials(p.ARN, id)
		must(t, err)
		e.sessionCaller(cr)
		must(t, e.svc.RevokeInstanceCredentials(id))
		must(t, e.svc.RevokeInstanceCredentials(id)) // again: no error
		if _, _, _, err := e.svc.Credentials(cr.AccessKeyID, cr.SessionToken); !errors.Is(err, ErrExpiredToken) {
			t.Fatalf("after revocation: %v, want ErrExpiredToken", err)
		}
		_, _, _, err = e.svc.InstanceCredentials(p.ARN, id)
		wantCode(t, err, api.CodeIncorrectInstanceState)
		// The next launch does not bring the last one's sessions back.
		must(t, e.svc.ActivateInstanceCredentials(id))
		if _, _, _, err := e.svc.Credentials(cr.AccessKeyID, cr.SessionToken); !errors.Is(err, ErrExpiredToken) {
			t.Fatalf("after a new launch: %v, want ErrExpiredToken", err)
		}
		fresh, _, _, err := e.svc.InstanceCredentials(p.ARN, id)
		must(t, err)
		e.sessionCaller(fresh)

		// Across a restart: the live generation is kept, and so is a
		// revocation.
		e.reopen()
		e.sessionCaller(fresh)
		must(t, e.svc.RevokeInstanceCredentials(id))
		e.reopen()
		if _, _, _, err := e.svc.Credentials(fresh.AccessKeyID, fresh.SessionToken); !errors.Is(err, ErrExpiredToken) {
			t.Fatalf("revoked, after a restart: %v, want ErrExpiredToken", err)
		}
	})

	t.Run("another instance's session", func(t *testing.T) {
		const other = "i-0fedcba9876543210"
		must(t, e.svc.ActivateInstanceCredentials(id))
		must(t, e.svc.ActivateInstanceCredentials(other))
		a, _, _, err := e.svc.InstanceCredentials(p.ARN, id)
		must(t, err)
		b, _, _, err := e.svc.InstanceCredentials(p.ARN, other)
		must(t, err)
		must(t, e.svc.RevokeInstanceCredentials(other))
		e.sessionCaller(a) // untouched by the other's stop
		if _, _, _, err := e.svc.Credentials(b.AccessKeyID, b.SessionToken); !errors.Is(err, ErrExpiredToken) {
			t.Fatalf("revoked instance: %v", err)
		}
	})

	t.Run("profile without its role", func(t *testing.T) {
		must(t, e.svc.ActivateInstanceCredentials(id))
		must(t, e.svc.RemoveRoleFromInstanceProfile("web", "app"))
		defer func() { must(t, e.svc.AddRoleToInstanceProfile("web", "app")) }()
		_, _, _, err := e.svc.InstanceCredentials(p.ARN, id)
		wantCode(t, err, api.CodeInvalidParameter)
	})

	t.Run("role no longer trusts compute", func(t *testing.T) {
		must(t, e.svc.UpdateAssumeRolePolicy("app", strings.Replace(computeTrust, "compute.azote", "audit.azote", 1)))
		defer func() { must(t, e.svc.UpdateAssumeRolePolicy("app", computeTrust)) }()
		_, _, _, err := e.svc.InstanceCredentials(p.ARN, id)
		wantCode(t, err, api.CodeInvalidParameter)
	})

	t.Run("bad instance id", func(t *testing.T) {
		_, _, _, err := e.svc.InstanceCredentials(p.ARN, "i-1/../x")
		wantCode(t, err, api.CodeInvalidName)
	})
}

// TestAddRoleNeedsPassRole: putting a role in a profile hands the role
// to whoever may launch with the profile, so it needs iam:PassRole on
// the role (as in AWS), and a refusal is audited with that action.
func TestAddRoleNeedsPassRole(t *testing.T) {
	e := newEnv(t)
	g := e.gateway()
	_, key := e.user("ops")
	_, err := e.svc.CreateRole("app", computeTrust, 0)
	must(t, err)
	must(t, e.svc.PutInlinePolicy(KindUser, "ops", "profiles", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["iam:*InstanceProfile*"], "Resource": "*"}]}`))
	var out map[string]any
	must(t, g.call(keyCreds(key), "iam:CreateInstanceProfile", api.InstanceProfileRequest{InstanceProfileName: "web"}, &out))
	err = g.call(keyCreds(key), "iam:AddRoleToInstanceProfile", api.InstanceProfileRoleRequest{InstanceProfileName: "web", RoleName: "app"}, nil)
	wantCode(t, err, api.CodeAccessDenied)
	last := g.trail.recs[len(g.trail.recs)-1]
	roleARN := e.svc.roleARN("app")
	if last.EventName != "AddRoleToInstanceProfile" || last.ErrorCode != string(api.CodeAccessDenied) || !strings.Contains(last.ErrorMessage, "iam:PassRole on "+roleARN) {
		t.Fatalf("audit record of the refusal: %s %s %q", last.EventName, last.ErrorCode, last.ErrorMessage)
	}
	if p, err := e.svc.GetInstanceProfile("web"); err != nil || len(p.Roles) != 0 {
		t.Fatalf("after the refusal the profile holds %+v (%v)", p.Roles, err)
	}
	must(t, e.svc.PutInlinePolicy(KindUser, "ops", "pass", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "`+roleARN+`"}]}`))
	must(t, g.call(keyCreds(key), "iam:AddRoleToInstanceProfile", api.InstanceProfileRoleRequest{InstanceProfileName: "web", RoleName: "app"}, nil))
	var got struct{ InstanceProfile api.InstanceProfile }
	must(t, g.call(keyCreds(key), "iam:GetInstanceProfile", api.InstanceProfileRequest{InstanceProfileName: "web"}, &got))
	if len(got.InstanceProfile.Roles) != 1 || got.InstanceProfile.Roles[0].ARN != roleARN {
		t.Fatalf("GetInstanceProfile = %+v", got)
	}
}
