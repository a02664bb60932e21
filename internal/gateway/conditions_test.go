package gateway

import (
	"context"
	"encoding/json"
	"github.com/azote/azote/internal/api"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/azote/azote/internal/iam/policy"
)

// policyAuth decides with the real policy engine on one identity policy,
// for a caller of the given type; it records the request keys of every
// decision.
type policyAuth struct {
	allowAll
	typ  string
	doc  *policy.Document
	seen map[string]map[string][]string // action → context of its last decision
}

func (a *policyAuth) HostRoot(int32) *api.Caller {
	return &api.Caller{Type: a.typ, ARN: "arn:azote:iam::123456789012:user/tenant"}
}

func (a *policyAuth) Authorize(c *api.Caller, action, resource string, extra map[string][]string) (bool, string) {
	a.seen[action] = extra
	res := policy.Evaluate([]policy.Named{{Name: "p", Doc: a.doc}}, nil, &policy.Request{Principal: c.ARN, Action: action, Resource: resource, Context: extra})
	return res.Decision == policy.Allow, res.Decision.String()
}

func newPolicyAuth(t testing.TB, typ, doc string) *policyAuth {
	t.Helper()
	d, err := policy.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return &policyAuth{typ: typ, doc: d, seen: map[string]map[string][]string{}}
}

// createStub creates volumes and instances, counting them, and gives
// vol-old the tags of a volume made before case-folded duplicates were
// refused.
type createStub struct {
	stubBackend
	created int
	vol     api.CreateVolumeRequest
}

func (s *createStub) CreateVolume(_ context.Context, r api.CreateVolumeRequest) (api.Volume, error) {
	s.created++
	s.vol = r
	return api.Volume{ID: "vol-1", Encrypted: !r.Plaintext, Tags: r.Tags}, nil
}
func (s *createStub) RunInstance(ctx context.Context, r api.RunInstanceRequest) (api.Instance, error) {
	s.created++
	return s.stubBackend.RunInstance(ctx, r)
}
func (s *createStub) DescribeVolume(_ context.Context, ref string) (api.Volume, error) {
	return api.Volume{ID: ref}, nil
}
func (s *createStub) ResolveID(_ context.Context, _, ref string) (string, map[string]string, bool) {
	if ref == "vol-old" {
		return ref, map[string]string{"Owner": "mallory", "owner": "tenant"}, true
	}
	return ref, map[string]string{"owner": "tenant"}, true
}

// Create calls carry their request keys into the decision: a tenant made
// to tag what they create with their team, and forbidden plaintext
// volumes, is held to both.
func TestRequestConditionKeys(t *testing.T) {
	auth := newPolicyAuth(t, api.PrincipalUser, `{"Version": "2012-10-17", "Statement": [
	  {"Effect": "Allow", "Action": ["compute:CreateVolume", "compute:RunInstances"], "Resource": "*",
	   "Condition": {"StringEquals": {"aws:RequestTag/team": "a"}, "ForAllValues:StringEquals": {"aws:TagKeys": ["team", "env"]}}},
	  {"Effect": "Allow", "Action": "compute:DescribeVolumes", "Resource": "*"},
	  {"Effect": "Deny", "Action": "compute:CreateVolume", "Resource": "*", "Condition": {"Bool": {"azote:Encrypted": "false"}}}]}`)
	trail := &memTrail{}
	b := &createStub{}
	h := localHandler(b, auth, trail)
	for _, c := range []struct {
		name, method, path, body string
		want                     int
		code                     api.Code
	}{
		{"tagged volume", "POST", "/v1/volumes", `{"size_bytes":1048576,"kind":"persistent","tags":{"team":"a","env":"dev"}}`, 200, ""},
		// aws:RequestTag/KEY names the key case-insensitively, but
		// aws:TagKeys lists keys as given, and StringEquals is exact.
		{"tag key in another case", "POST", "/v1/volumes", `{"size_bytes":1048576,"kind":"persistent","tags":{"Team":"a"}}`, 403, api.CodeAccessDenied},
		{"other team", "POST", "/v1/volumes", `{"size_bytes":1048576,"kind":"persistent","tags":{"team":"b"}}`, 403, api.CodeAccessDenied},
		{"untagged", "POST", "/v1/volumes", `{"size_bytes":1048576,"kind":"persistent"}`, 403, api.CodeAccessDenied},
		{"extra tag key", "POST", "/v1/volumes", `{"size_bytes":1048576,"kind":"persistent","tags":{"team":"a","cost":"x"}}`, 403, api.CodeAccessDenied},
		{"plaintext", "POST", "/v1/volumes", `{"size_bytes":1048576,"kind":"persistent","plaintext":true,"tags":{"team":"a"}}`, 403, api.CodeAccessDenied},
		{"keys differing in case", "POST", "/v1/volumes", `{"size_bytes":1048576,"kind":"persistent","tags":{"team":"a","TEAM":"b"}}`, 400, api.CodeDuplicateTagKeys},
		{"tagged instance", "POST", "/v1/instances", `{"name":"x","vcpus":1,"tags":{"team":"a"}}`, 200, ""},
		{"instance of another team", "POST", "/v1/instances", `{"name":"x","vcpus":1,"tags":{"team":"b"}}`, 403, api.CodeAccessDenied},
		{"instance keys differing in case", "POST", "/v1/instances", `{"name":"x","vcpus":1,"tags":{"Team":"a","team":"a"}}`, 400, api.CodeDuplicateTagKeys},
		{"resource with folded tag keys", "GET", "/v1/volumes/vol-old", ``, 400, api.CodeDuplicateTagKeys},
		{"resource", "GET", "/v1/volumes/vol-new", ``, 200, ""},
	} {
		n := b.created
		code, body := do(t, h, c.method, c.path, []byte(c.body))
		if code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, code, body, c.want)
			continue
		}
		if c.code != "" {
			var e api.Error
			if json.Unmarshal(body, &e) != nil || e.Code != c.code {
				t.Errorf("%s: %s, want code %s", c.name, body, c.code)
			}
			if b.created != n {
				t.Errorf("%s: refused, yet the backend created it", c.name)
			}
			if r := trail.last(); r.ErrorCode != string(c.code) {
				t.Errorf("%s: audited with code %q, want %s", c.name, r.ErrorCode, c.code)
			}
		}
	}
	do(t, h, "POST", "/v1/volumes", []byte(`{"size_bytes":1048576,"kind":"persistent","tags":{"team":"a","env":"dev"}}`))
	got := auth.seen["compute:CreateVolume"]
	for k, want := range map[string][]string{"aws:requesttag/team": {"a"}, "aws:requesttag/env": {"dev"}, "aws:tagkeys": {"env", "team"}, "azote:encrypted": {"true"}} {
		if !slices.Equal(got[k], want) {
			t.Errorf("CreateVolume context %s = %v, want %v", k, got[k], want)
		}
	}

	// Host root may still act on a resource with folded tag keys
	// (break-glass); AdministratorAccess decides.
	admin := newPolicyAuth(t, api.PrincipalHostRoot, `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}`)
	if code, body := do(t, localHandler(b, admin, trail), "GET", "/v1/volumes/vol-old", nil); code != http.StatusOK {
		t.Errorf("host root on vol-old: %d %s", code, body)
	}
}

// An operation's own keys (iam:PolicyARN of an attach) reach the decision.
func TestOperationConditionKeys(t *testing.T) {
	auth := newPolicyAuth(t, api.PrincipalUser, `{"Version": "2012-10-17", "Statement": [
	  {"Effect": "Allow", "Action": "iam:AttachUserPolicy", "Resource": "*",
	   "Condition": {"ArnEquals": {"iam:PolicyARN": "arn:azote:iam::azote:policy/ReadOnlyAccess"}}}]}`)
	ran := 0
	op := &api.Operation{Name: "iam:AttachUserPolicy", NewRequest: func() any { return new(struct{ PolicyArn string }) },
		Resource: func(context.Context, any) (string, error) { return "arn:azote:iam::123456789012:user/tenant", nil },
		Conditions: func(_ context.Context, r any) map[string][]string {
			return map[string][]string{"iam:policyarn": {"arn:azote:iam::azote:policy/" + r.(*struct{ PolicyArn string }).PolicyArn}}
		},
		Do: func(context.Context, *api.Caller, any) (any, error) { ran++; return struct{}{}, nil }}
	h := NewHandler(Config{Backend: &stubBackend{}, Auth: auth, Audit: &memTrail{}, Region: "local", Operations: []*api.Operation{op}})
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), testPeerKey{}, int32(1))))
	})
	if code, body := do(t, local, "POST", "/v1/iam/AttachUserPolicy", []byte(`{"PolicyArn":"ReadOnlyAccess"}`)); code != 200 {
		t.Errorf("attach ReadOnlyAccess: %d %s", code, body)
	}
	if code, body := do(t, local, "POST", "/v1/iam/AttachUserPolicy", []byte(`{"PolicyArn":"AdministratorAccess"}`)); code != 403 {
		t.Errorf("attach AdministratorAccess: %d %s, want 403", code, body)
	}
	if ran != 1 {
		t.Errorf("the operation ran %d times, want 1", ran)
	}
}

// Tags whose keys fold together are refused at creation, whichever the
// door: policies could not tell them apart.
func TestValidateTagsFoldedKeys(t *testing.T) {
	for _, c := range []struct {
		tags map[string]string
		want api.Code
	}{
		{map[string]string{"team": "a", "env": "dev"}, ""},
		{map[string]string{"team": "a", "Team": "b"}, api.CodeDuplicateTagKeys},
		{map[string]string{"kelvin": "a", "\u212aelvin": "b"}, api.CodeDuplicateTagKeys}, // K and the Kelvin sign fold together
		{map[string]string{"ſize": "a", "SIZE": "b"}, api.CodeDuplicateTagKeys},          // and long s with s
	} {
		e := api.ValidateTags(c.tags)
		switch {
		case c.want == "" && e != nil:
			t.Errorf("%v: %v", c.tags, e)
		case c.want != "" && (e == nil || e.Code != c.want):
			t.Errorf("%v: %v, want %s", c.tags, e, c.want)
		}
	}
}

// The request keys a policy decides on are those of the request the
// backend gets: the body is read twice (for the keys, then strictly by the
// handler), and the two readings must never disagree.
func FuzzCreateVolumeKeys(f *testing.F) {
	f.Add([]byte(`{"size_bytes":1048576,"kind":"persistent","plaintext":true,"tags":{"team":"a","env":"dev"}}`))
	f.Add([]byte(`{"size_bytes":1048576,"kind":"persistent","Plaintext":true,"TAGS":{"team":"a"}}`))
	f.Add([]byte(`{"tags":{"team":"a"},"tags":{"team":"b"}}`))
	f.Add([]byte(`{"tags":{"a":"1","A":"2"}}`))
	f.Add([]byte(``))
	f.Add([]byte(`{"plaintext":"yes"}`))
	auth := newPolicyAuth(f, api.PrincipalUser, `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}`)
	b := &createStub{}
	h := localHandler(b, auth, &memTrail{})
	f.Fuzz(func(t *testing.T, body []byte) {
		n := b.created
		clear(auth.seen)
		status, out := do(t, h, "POST", "/v1/volumes", body)
		if status != 200 {
			if b.created != n {
				t.Fatalf("status %d, yet the backend created a volume: %s", status, out)
			}
			return
		}
		seen := auth.seen["compute:CreateVolume"]
		if got, want := seen["azote:encrypted"], []string{strconv.FormatBool(!b.vol.Plaintext)}; !slices.Equal(got, want) {
			t.Fatalf("policy saw azote:Encrypted %v, backend got plaintext=%v", got, b.vol.Plaintext)
		}
		tags := map[string]string{}
		for k, v := range seen {
			if tk, ok := strings.CutPrefix(k, "aws:requesttag/"); ok {
				tags[tk] = v[0]
			}
		}
		want := map[string]string{}
		for k, v := range b.vol.Tags {
			want[strings.ToLower(k)] = v
		}
		if !maps.Equal(tags, want) {
			t.Fatalf("policy saw tags %v, backend got %v", tags, b.vol.Tags)
		}
	})
}
