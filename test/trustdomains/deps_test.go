package trustdomains

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/azote/azote/"

// rules lists, per binary, the packages it must never link, and why. A
// later binary gets its rule when it lands (azote-hv: no iam, kms, net).
// A rule names a package path; it forbids the package and everything
// under it.
var rules = []struct {
	binary string
	never  []string
	allow  []string // exceptions under a never entry
	why    string
}{
	{
		binary: "cmd/azote-card",
		never: []string{
			"internal/controller", "internal/iam", "internal/audit", "internal/store",
			"internal/gateway", "internal/cardhost", "internal/keys", "internal/kms",
			"go.etcd.io/bbolt", "go.etcd.io/etcd",
		},
		why: "a card serves one device and links none of the control plane",
	},
	{
		binary: "cmd/azote",
		never:  []string{"go.etcd.io/bbolt", "go.etcd.io/etcd", "internal/store", "internal/iam", "internal/controller", "internal/gateway", "internal/kms"},
		allow:  []string{"internal/iam/mfa"}, // TOTP codes and QR rendering, no evaluation, no state
		why:    "the CLI is a client: no state store, no IAM evaluation, no KMS key material",
	},
	{
		binary: "cmd/azoted",
		never:  []string{"internal/xts", "internal/cards/net"},
		why: "azoted never handles volume plaintext, nor a guest's frames: only cards run the volume cipher " +
			"and the network data plane",
	},
	{
		// Not a binary, but every binary links it: the vocabulary stays a
		// leaf, so no binary gets the control plane through it.
		binary: "internal/api",
		never:  []string{"internal", "go.etcd.io/bbolt", "go.etcd.io/etcd"},
		allow:  []string{"internal/api"},
		why:    "api is the leaf vocabulary: wire types, codes, ARNs, imports nothing internal",
	},
	{
		binary: "cmd/azote-agent",
		never:  []string{"internal/controller", "internal/iam", "internal/kms", "internal/store", "internal/xts", "go.etcd.io/bbolt", "go.etcd.io/etcd"},
		why:    "the guest agent is guest code: it links nothing of the host",
	},
}

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "./"+pkg).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func forbidden(dep, rule string) bool {
	if !strings.Contains(rule, ".") {
		rule = module + rule
	}
	return dep == rule || strings.HasPrefix(dep, rule+"/")
}

func TestTrustDomains(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command to list dependencies")
	}
	for _, r := range rules {
		t.Run(strings.TrimPrefix(r.binary, "cmd/"), func(t *testing.T) {
			ds := deps(t, "../../"+r.binary)
			if !slices.Contains(ds, module+r.binary) {
				t.Fatalf("go list -deps did not list %s itself; got %d packages", r.binary, len(ds))
			}
			for _, d := range ds {
				if slices.ContainsFunc(r.allow, func(a string) bool { return forbidden(d, a) }) {
					continue
				}
				for _, n := range r.never {
					if forbidden(d, n) {
						t.Errorf("%s links %s: %s", r.binary, d, r.why)
					}
				}
			}
		})
	}
}

// TestRulesCanFail checks the matcher itself against a package that does
// link bbolt, so a typo in a rule cannot make every check pass.
func TestRulesCanFail(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command to list dependencies")
	}
	ds := deps(t, "../../internal/store")
	hit := false
	for _, d := range ds {
		hit = hit || forbidden(d, "go.etcd.io/bbolt")
	}
	if !hit {
		t.Fatal("internal/store does not appear to link bbolt: the dependency matcher is broken")
	}
	hit = false
	for _, d := range deps(t, "../../internal/store/etcd") {
		hit = hit || forbidden(d, "go.etcd.io/etcd")
	}
	if !hit {
		t.Fatal("internal/store/etcd does not appear to link the etcd client: the rule on go.etcd.io/etcd is broken")
	}
	if forbidden(module+"internal/iamx", "internal/iam") {
		t.Fatal("a rule matched a package that merely shares its prefix")
	}
	if !forbidden(module+"internal/iam/policy", "internal/iam") {
		t.Fatal("a rule did not match a package under it")
	}
}
