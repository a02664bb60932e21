package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/azote/azote/internal/api"
)

// profileStub resolves profile web (role app) and profile swapped,
// whose role changes after the first resolution; anything else does not
// exist.
type profileStub struct{ calls int }

func (p *profileStub) InstanceProfileForLaunch(ref string) (api.InstanceProfile, error) {
	p.calls++
	switch ref {
	case "web", "arn:azote:iam::123456789012:instance-profile/web":
		return api.InstanceProfile{InstanceProfileName: "web", InstanceProfileID: "AIPAWEB", ARN: "arn:azote:iam::123456789012:instance-profile/web",
			Roles: []api.Role{{RoleName: "app", ARN: "arn:azote:iam::123456789012:role/app"}}}, nil
	case "untrusting":
		return api.InstanceProfile{InstanceProfileName: "untrusting", ARN: "arn:azote:iam::123456789012:instance-profile/untrusting",
				Roles: []api.Role{{RoleName: "human", ARN: "arn:azote:iam::123456789012:role/human"}}},
			api.Errorf(api.CodeInvalidParameter, "role human does not trust compute.azote")
	}
	return api.InstanceProfile{}, api.Errorf(api.CodeNoSuchEntity, "instance profile %s does not exist", ref)
}

// actionDenier denies one action on one resource.
type actionDenier struct {
	allowAll
	action, resource string
}

func (a actionDenier) Authorize(c *api.Caller, action, resource string, _ map[string][]string) (bool, string) {
	if action == a.action && resource == a.resource {
		return false, "denied by test"
	}
	return true, ""
}

// TestRunWithProfileNeedsPassRole: a launch with an instance profile is
// authorised for iam:PassRole on the profile's role too; a refusal is
// audited with the role and the PassRole denial, and reaches no backend;
// an allowed launch hands the backend the profile it resolved (ARN and
// record), so nothing looks the name up again.
func TestRunWithProfileNeedsPassRole(t *testing.T) {
	const roleARN = "arn:azote:iam::123456789012:role/app"
	run := func(auth Auth, profile string) (*stubBackend, *memTrail, *profileStub, int, string) {
		b, trail, ps := &stubBackend{}, &memTrail{}, &profileStub{}
		h := NewHandler(Config{Backend: b, Auth: auth, Profiles: ps, Audit: trail, Region: "local"})
		local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), testPeerKey{}, int32(1))))
		})
		status, out := do(t, local, "POST", "/v1/instances", []byte(`{"name":"w","image":"default","vcpus":1,"memory_mib":64,"iam_instance_profile":"`+profile+`"}`))
		return b, trail, ps, status, string(out)
	}

	b, trail, _, status, out := run(actionDenier{action: "iam:PassRole", resource: roleARN}, "web")
	if status != http.StatusForbidden || !strings.Contains(out, "iam:PassRole on "+roleARN) {
		t.Fatalf("without PassRole: %d %s", status, out)
	}
	if b.got.Name != "" {
		t.Fatal("a launch refused PassRole reached the backend")
	}
	rec := trail.last()
	if rec.EventName != "RunInstances" || rec.ErrorCode != string(api.CodeAccessDenied) || !strings.Contains(rec.ErrorMessage, "iam:PassRole") {
		t.Fatalf("audit record: %s %s %q", rec.EventName, rec.ErrorCode, rec.ErrorMessage)
	}
	found := false
	for _, r := range rec.Resources {
		found = found || r.ARN == roleARN
	}
	if !found {
		t.Fatalf("the role is not among the refusal's resources: %+v", rec.Resources)
	}

	b, trail, ps, status, out := run(allowAll{}, "web")
	if status != http.StatusOK {
		t.Fatalf("with PassRole: %d %s", status, out)
	}
	if b.got.IAMInstanceProfile != "arn:azote:iam::123456789012:instance-profile/web" || b.got.InstanceProfile == nil ||
		b.got.InstanceProfile.InstanceProfileID != "AIPAWEB" || ps.calls != 1 {
		t.Fatalf("backend got profile %q %+v after %d resolutions", b.got.IAMInstanceProfile, b.got.InstanceProfile, ps.calls)
	}
	roleAudited := false
	for _, r := range trail.last().Resources {
		roleAudited = roleAudited || r.ARN == roleARN
	}
	if !roleAudited {
		t.Errorf("the role is not among the launch's resources: %+v", trail.last().Resources)
	}

	// A profile that does not exist, or whose role does not trust the
	// compute service, is answered with the IAM's code, after PassRole.
	for profile, code := range map[string]api.Code{"nope": api.CodeNoSuchEntity, "untrusting": api.CodeInvalidParameter} {
		b, _, _, status, out := run(allowAll{}, profile)
		if !strings.Contains(out, string(code)) || b.got.Name != "" {
			t.Errorf("%s: %d %s (backend reached: %v)", profile, status, out, b.got.Name != "")
		}
	}
	_, _, _, status, out = run(actionDenier{action: "iam:PassRole", resource: "arn:azote:iam::123456789012:role/human"}, "untrusting")
	if status != http.StatusForbidden {
		t.Errorf("untrusting profile without PassRole: %d %s, want AccessDenied first", status, out)
	}

	// A client cannot hand the backend a resolved profile of its own.
	status, out2 := do(t, localHandler(&stubBackend{}, allowAll{}, &memTrail{}), "POST", "/v1/instances",
		[]byte(`{"name":"w","image":"default","vcpus":1,"memory_mib":64,"InstanceProfile":{"Arn":"x"}}`))
	if status != http.StatusBadRequest {
		t.Errorf("a body with InstanceProfile: %d %s", status, out2)
	}
}
