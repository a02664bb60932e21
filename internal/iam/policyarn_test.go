package iam

import (
	"context"
	"testing"

	"github.com/azote/azote/internal/api"
)

// decide authorises an operation as the gateway does: its resource, then
// its own condition keys, then the caller's policies.
func (e *env) decide(c *api.Caller, name string, r any) Decision {
	e.t.Helper()
	for _, op := range e.svc.Operations() {
		if op.Name != name {
			continue
		}
		ctx := api.WithCaller(context.Background(), c)
		res, err := op.Resource(ctx, r)
		if err != nil {
			e.t.Fatalf("%s: resource: %v", name, err)
		}
		var conds map[string][]string
		if op.Conditions != nil {
			conds = op.Conditions(ctx, r)
		}
		return e.svc.Authorize(c, name, res, conds, nil)
	}
	e.t.Fatalf("no operation %s", name)
	return Decision{}
}

// A user allowed to manage the policies of their own user, but only
// ReadOnlyAccess, cannot attach AdministratorAccess to themselves by any
// spelling of its name.
func TestPolicyARNCondition(t *testing.T) {
	e := newEnv(t)
	e.initAccount("alice")
	carol, _ := e.user("carol")
	must(t, e.svc.PutInlinePolicy(KindUser, "carol", "own-policies", `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
		"Action": ["iam:AttachUserPolicy", "iam:DetachUserPolicy"], "Resource": "arn:azote:iam::`+e.svc.AccountID()+`:user/${aws:username}",
		"Condition": {"ArnEquals": {"iam:PolicyARN": "`+BuiltinARN("ReadOnlyAccess")+`"}}}]}`))
	for _, c := range []struct {
		action, policy string
		allow          bool
	}{
		{"iam:AttachUserPolicy", "ReadOnlyAccess", true},
		{"iam:AttachUserPolicy", BuiltinARN("ReadOnlyAccess"), true},
		{"iam:DetachUserPolicy", "ReadOnlyAccess", true},
		{"iam:AttachUserPolicy", "AdministratorAccess", false},
		{"iam:AttachUserPolicy", BuiltinARN("AdministratorAccess"), false},
		{"iam:AttachUserPolicy", "PowerUserAccess", false},
		{"iam:DetachUserPolicy", RequireMFAPolicy, false},
	} {
		if d := e.decide(carol, c.action, &api.AttachRequest{PolicyArn: c.policy}); d.Allowed != c.allow {
			t.Errorf("%s %s: allowed %v (%s), want %v", c.action, c.policy, d.Allowed, d.Reason, c.allow)
		}
	}
	// Every Attach and Detach gives the key.
	for _, op := range e.svc.Operations() {
		switch op.Name {
		case "iam:AttachUserPolicy", "iam:AttachGroupPolicy", "iam:AttachRolePolicy", "iam:DetachUserPolicy", "iam:DetachGroupPolicy", "iam:DetachRolePolicy":
			if op.Conditions == nil {
				t.Errorf("%s has no iam:PolicyARN", op.Name)
				continue
			}
			got := op.Conditions(context.Background(), &api.AttachRequest{GroupName: "g", RoleName: "r", PolicyArn: "AdministratorAccess"})
			if v := got["iam:policyarn"]; len(v) != 1 || v[0] != BuiltinARN("AdministratorAccess") {
				t.Errorf("%s: iam:PolicyARN = %v", op.Name, v)
			}
		}
	}
}
