package api

import (
	"errors"
	"testing"
)

func TestARN(t *testing.T) {
	a := MakeARN("iam", "123456789012", "user/alice")
	if a != "arn:azote:iam::123456789012:user/alice" {
		t.Fatalf("MakeARN = %q", a)
	}
	p, err := ParseARN(a)
	if err != nil || p.Service != "iam" || p.Account != "123456789012" || p.Resource != "user/alice" || p.String() != a {
		t.Fatalf("ParseARN(%q) = %+v, %v", a, p, err)
	}
	if k, n, ok := p.Kind(); !ok || k != "user" || n != "alice" {
		t.Errorf("Kind = %q %q %v", k, n, ok)
	}
	// The resource keeps its colons (sts session ARNs, paths).
	if p, err := ParseARN("arn:azote:sts::1:assumed-role/r/s:x"); err != nil || p.Resource != "assumed-role/r/s:x" {
		t.Errorf("colon in resource: %+v %v", p, err)
	}
	for _, bad := range []string{"", "a", "alice", "arn", "arn:", "arn:azote:iam::1", "arn:aws:iam::1:user/a",
		"arn:azote::region:1:user/a", "arn:azote:iam:::user/a", "arn:azote:iam::1:", "aardvark:azote:iam::1:user/a"} {
		if _, err := ParseARN(bad); !errors.Is(err, ErrNotARN) {
			t.Errorf("ParseARN(%q) = %v, want ErrNotARN", bad, err)
		}
	}
}
