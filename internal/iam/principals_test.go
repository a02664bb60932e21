package iam

import (
	"strings"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/store"
)

// A trust policy trusts the identity it named, not its name: a user or
// role deleted and made again under the same name does not inherit the
// trust, before or after a restart, and the policy then shows the old
// identity's unique id where its ARN was.
func TestTrustBoundToIdentity(t *testing.T) {
	e := newEnv(t)
	acct := e.svc.AccountID()
	bob, bobKey := e.user("bob")
	_, err := e.svc.CreateRole("R", trustDoc(bob.ARN, ""), 0)
	must(t, err)
	r, err := e.svc.GetRole("R")
	must(t, err)
	if !strings.Contains(r.TrustPolicy, bob.ARN) || strings.Contains(r.TrustPolicy, bob.PrincipalID) {
		t.Fatalf("trust policy while bob exists = %s, want his ARN", r.TrustPolicy)
	}
	cr, err := e.svc.AssumeRole(bob, api.AssumeRoleRequest{RoleArn: "R", RoleSessionName: "s"})
	must(t, err)
	// R2 trusts role R: R's sessions may go on to it.
	rSession := e.sessionCaller(cr.Credentials)
	_, err = e.svc.CreateRole("R2", trustDoc(e.svc.roleARN("R"), ""), 0)
	must(t, err)
	_, err = e.svc.AssumeRole(rSession, api.AssumeRoleRequest{RoleArn: "R2", RoleSessionName: "s"})
	must(t, err)

	// bob leaves; another bob arrives.
	must(t, e.svc.DeleteAccessKey("bob", bobKey.AccessKeyID))
	must(t, e.svc.DeleteUser("bob"))
	r, err = e.svc.GetRole("R")
	must(t, err)
	if strings.Contains(r.TrustPolicy, bob.ARN) || !strings.Contains(r.TrustPolicy, bob.PrincipalID) {
		t.Fatalf("trust policy after bob left = %s, want his id %s", r.TrustPolicy, bob.PrincipalID)
	}
	bob2, _ := e.user("bob")
	_, err = e.svc.AssumeRole(bob2, api.AssumeRoleRequest{RoleArn: "R", RoleSessionName: "s"})
	wantCode(t, err, api.CodeAccessDenied)
	e.reopen()
	_, err = e.svc.AssumeRole(bob2, api.AssumeRoleRequest{RoleArn: "R", RoleSessionName: "s"})
	wantCode(t, err, api.CodeAccessDenied)
	if r, _ = e.svc.GetRole("R"); !strings.Contains(r.TrustPolicy, bob.PrincipalID) {
		t.Fatalf("trust policy after a new bob = %s, want the old bob's id", r.TrustPolicy)
	}
	snap, err := e.svc.Export()
	must(t, err)
	if !strings.Contains(snap.Roles["R"].Trust, bob.PrincipalID) {
		t.Errorf("exported trust of R = %s, want the old bob's id", snap.Roles["R"].Trust)
	}

	// Trusting the new bob takes naming him again; R2 trusted the old
	// R, so a new R's sessions do not get in.
	must(t, e.svc.UpdateAssumeRolePolicy("R", trustDoc(bob2.ARN, "")))
	must(t, e.svc.DeleteRole("R"))
	_, err = e.svc.CreateRole("R", trustDoc(bob2.ARN, ""), 0)
	must(t, err)
	cr, err = e.svc.AssumeRole(bob2, api.AssumeRoleRequest{RoleArn: "R", RoleSessionName: "s"})
	must(t, err)
	_, err = e.svc.AssumeRole(e.sessionCaller(cr.Credentials), api.AssumeRoleRequest{RoleArn: "R2", RoleSessionName: "s"})
	wantCode(t, err, api.CodeAccessDenied)

	// A principal that does not exist cannot be named (AWS: "Invalid
	// principal in policy"); nor could a later one of that name match.
	ghost := trustDoc("arn:azote:iam::"+acct+":user/ghost", "")
	_, err = e.svc.CreateRole("R3", ghost, 0)
	wantCode(t, err, api.CodeMalformedPolicyDocument)
	wantCode(t, e.svc.UpdateAssumeRolePolicy("R", ghost), api.CodeMalformedPolicyDocument)
	// Accounts and session ARNs are kept as written.
	session := "arn:azote:sts::" + acct + ":assumed-role/R/s"
	for _, p := range []string{acct, session} {
		must(t, e.svc.UpdateAssumeRolePolicy("R", trustDoc(p, "")))
		if r, _ = e.svc.GetRole("R"); r.TrustPolicy != trustDoc(p, "") {
			t.Errorf("trust naming %s stored as %s", p, r.TrustPolicy)
		}
	}
}

// Roles stored by an azoted that kept principals by name are bound at
// start to the identities that exist then; a name nobody has by then is
// taken as deleted.
func TestStoredTrustBoundAtStart(t *testing.T) {
	e := newEnv(t)
	bob, _ := e.user("bob")
	ghostARN := e.svc.userARN("ghost")
	legacy := `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": ["` + bob.ARN + `", "` + ghostARN + `"]}, "Action": "sts:AssumeRole"}]}`
	must(t, e.st.Update(func(tx store.Tx) error {
		return tx.Put(tRoles, "Old", api.Role{RoleName: "Old", RoleID: "AROAOLDROLE234567ABCD", ARN: e.svc.roleARN("Old"), TrustPolicy: legacy, MaxSessionDuration: 3600})
	}))
	e.reopen()
	var stored api.Role
	must(t, e.st.View(func(tx store.Tx) error { return tx.Get(tRoles, "Old", &stored) }))
	if strings.Contains(stored.TrustPolicy, bob.ARN) || strings.Contains(stored.TrustPolicy, ghostARN) || !strings.Contains(stored.TrustPolicy, bob.PrincipalID) {
		t.Fatalf("stored trust after start = %s, want bob's id and no ARN", stored.TrustPolicy)
	}
	r, err := e.svc.GetRole("Old")
	must(t, err)
	if !strings.Contains(r.TrustPolicy, bob.ARN) {
		t.Errorf("shown trust = %s, want bob's ARN", r.TrustPolicy)
	}
	_, err = e.svc.AssumeRole(bob, api.AssumeRoleRequest{RoleArn: "Old", RoleSessionName: "s"})
	must(t, err)
	ghost, _ := e.user("ghost")
	_, err = e.svc.AssumeRole(ghost, api.AssumeRoleRequest{RoleArn: "Old", RoleSessionName: "s"})
	wantCode(t, err, api.CodeAccessDenied)
	// Binding is done once: a second start changes nothing.
	e.reopen()
	var again api.Role
	must(t, e.st.View(func(tx store.Tx) error { return tx.Get(tRoles, "Old", &again) }))
	if again.TrustPolicy != stored.TrustPolicy {
		t.Errorf("trust changed on a second start: %s, was %s", again.TrustPolicy, stored.TrustPolicy)
	}
}
