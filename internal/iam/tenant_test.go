package iam

import (
	"github.com/azote/azote/internal/api"
	"testing"
)

// Every session of a tenant role reads what is tagged as the role's, and
// nothing of another tenant's, whatever the session is called.
func TestTenantReadOnlyAccessRoleSession(t *testing.T) {
	e := newEnv(t)
	e.initAccount("alice")
	bob, _ := e.user("bob")
	role, err := e.svc.CreateRole("tenant-a", trustDoc(bob.ARN, ""), 0)
	must(t, err)
	must(t, e.svc.AttachPolicy(KindRole, "tenant-a", "TenantReadOnlyAccess"))
	inst := "arn:azote:compute::" + e.svc.AccountID() + ":instance/i-1"
	for _, name := range []string{"bob", "alice", "tenant-b"} {
		out, err := e.svc.AssumeRole(bob, api.AssumeRoleRequest{RoleArn: role.ARN, RoleSessionName: name})
		must(t, err)
		s := e.sessionCaller(out.Credentials)
		for _, c := range []struct {
			owner string
			allow bool
		}{{role.ARN, true}, {e.svc.roleARN("tenant-b"), false}, {s.ARN, false}, {"", false}} {
			var tags map[string][]string
			if c.owner != "" {
				tags = map[string][]string{"aws:resourcetag/owner": {c.owner}}
			}
			if d := e.svc.Authorize(s, "compute:GetConsoleOutput", inst, tags, nil); d.Allowed != c.allow {
				t.Errorf("session %s, owner %q: allowed %v (%s), want %v", name, c.owner, d.Allowed, d.Reason, c.allow)
			}
		}
		if d := e.svc.Authorize(s, "audit:GetLogFile", "arn:azote:audit::"+e.svc.AccountID()+":trail/default", nil, nil); d.Allowed {
			t.Errorf("session %s reads the audit trail (%s)", name, d.Reason)
		}
	}
}
