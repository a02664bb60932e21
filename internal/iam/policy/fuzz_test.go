package policy

import (
	"bytes"
	"errors"
	"testing"
)

// fuzzRequests are the fixed requests a fuzzed policy is decided on,
// chosen to exercise variables, every operator family, missing keys and
// principals of each shape.
var fuzzRequests = []Request{
	{Principal: alice, Action: "compute:RunInstances", Resource: instance, Context: ctx(
		"aws:username", "alice", "aws:multifactorauthpresent", "true", "aws:multifactorauthage", "120",
		"aws:sourceip", "192.0.2.44", "aws:currenttime", "2020-05-15T12:00:00Z", "aws:securetransport", "true",
		"aws:tagkeys", "key1:a|key2:b", "aws:resourcetag/owner", alice, "compute:instancetype", "t2.micro")},
	{Principal: opsSession, Action: "iam:CreateAccessKey", Resource: aliceUser, Context: ctx(
		"aws:sourceip", "2001:db8::1", "aws:tokenissuetime", "2024-01-01T00:00:00Z", "aws:sourcearn", instance)},
	{Principal: carol, Action: "kms:Decrypt", Resource: keyARN},
	{Principal: "arn:azote:iam::123456789012:root", Action: "sts:AssumeRole", Resource: opsRole,
		Context: ctx("azote:principalservice", "compute.azote.internal", "aws:username", "*")},
	{Action: "audit:LookupEvents", Resource: "*", Context: ctx("aws:currenttime", "1700000000", "aws:multifactorauthage", "NaN")},
	{Principal: opsSession, PrincipalID: "AROAT5XWD7NQ2HJKL4MZA:alice", Action: "sts:AssumeRole", Resource: opsRole},
}

// FuzzParse feeds arbitrary text to Parse. Besides not panicking, whatever
// parses must marshal to text that parses again (unless marshalling pushed
// it past MaxSize), marshals to the same bytes a second time, validates
// the same way for each kind, and decides every fixed request the same way
// as the original, as identity and as resource policy.
func FuzzParse(f *testing.F) {
	for _, text := range allTestPolicies() {
		f.Add([]byte(text))
	}
	f.Add([]byte(`{"Version":"2008-10-17","Statement":{"Effect":"Deny","NotPrincipal":{"AWS":"*"},"Action":"*:*","NotResource":"arn:*:compute:*:*:${x}"}}`))
	f.Add([]byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"arn:azote:s3:::b/${aws:username, 'x'}${*}${?}${$}"}]}`))
	f.Add([]byte(`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":["AROAT5XWD7NQ2HJKL4MZA","AIDAQ3EGRVBN7ZKXLM2PD"]},"Action":"sts:AssumeRole"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			if d != nil {
				t.Fatal("Parse returned a document with an error")
			}
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		b, err := d.MarshalJSON()
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		d2, err := Parse(b)
		if errors.Is(err, ErrTooLarge) && len(b) > MaxSize {
			return
		}
		if err != nil {
			t.Fatalf("marshalled form does not parse: %v\n%s\nfrom\n%s", err, b, data)
		}
		b2, err := d2.MarshalJSON()
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("marshal not stable:\n%s\n%s", b, b2)
		}
		for _, k := range []Kind{Identity, Resource, Trust} {
			if (d.Validate(k) == nil) != (d2.Validate(k) == nil) {
				t.Fatalf("Validate(%v) differs after round trip", k)
			}
		}
		for i := range fuzzRequests {
			req := &fuzzRequests[i]
			for _, asResource := range []bool{false, true} {
				p1, p2 := []Named{{"p", d}}, []Named{{"p", d2}}
				var r1, r2 Result
				if asResource {
					r1, r2 = Evaluate(nil, p1, req), Evaluate(nil, p2, req)
				} else {
					r1, r2 = Evaluate(p1, nil, req), Evaluate(p2, nil, req)
				}
				if r1 != r2 {
					t.Fatalf("request %d (resource=%v): %v by %q before, %v by %q after round trip\n%s", i, asResource, r1.Decision, r1.Statement, r2.Decision, r2.Statement, b)
				}
			}
		}
	})
}
