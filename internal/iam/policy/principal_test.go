package policy

import "testing"

// A principal named by its unique id matches the identity with that id,
// whatever its ARN, and a role's id its sessions; a name alone does not
// match an id entry.
func TestPrincipalUniqueID(t *testing.T) {
	const (
		bobID    = "AIDAQ3EGRVBN7ZKXLM2PD"
		opsID    = "AROAT5XWD7NQ2HJKL4MZA"
		trustIDs = `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
			"Principal": {"AWS": ["` + bobID + `", "` + opsID + `"]}, "Action": "sts:AssumeRole"}]}`
	)
	res := named(t, []pol{{"Trust", trustIDs}})
	for _, tc := range []struct {
		name string
		req  Request
		want Decision
	}{
		{"the user with the id", Request{Principal: bob, PrincipalID: bobID}, Allow},
		{"a user of the same name with another id", Request{Principal: bob, PrincipalID: "AIDAQ3EGRVBN7ZKXLM2PE"}, ImplicitDeny},
		{"an id that only starts with the id", Request{Principal: bob, PrincipalID: bobID + "X"}, ImplicitDeny},
		{"the name without an id", Request{Principal: bob}, ImplicitDeny},
		{"a session of the role", Request{Principal: opsSession, PrincipalID: opsID + ":alice"}, Allow},
		{"a session of another role", Request{Principal: opsSession, PrincipalID: "AROAT5XWD7NQ2HJKL4MZB:alice"}, ImplicitDeny},
		{"a user whose id is the role's", Request{Principal: alice, PrincipalID: opsID + "1"}, ImplicitDeny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			req.Action, req.Resource = "sts:AssumeRole", opsRole
			if got := EvaluateResourceRequired(nil, res, &req); got.Decision != tc.want {
				t.Errorf("got %v by %q, want %v", got.Decision, got.Statement, tc.want)
			}
		})
	}
	for _, bad := range []string{"AIDA", "AIDAabc", "AKIAQ3EGRVBN7ZKXLM2PD", "AIDA-1"} {
		if _, err := Parse([]byte(`{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "` + bad + `"}, "Action": "sts:AssumeRole"}]}`)); err == nil {
			t.Errorf("principal %q parsed", bad)
		}
	}
}
