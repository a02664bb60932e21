package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/azote/azote/internal/api"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/audit"
)

// stubBackend accepts what it is given; it checks the handler's decoding
// and error mapping, not the controller.
type stubBackend struct {
	Backend // methods a test does not use panic, which the handler turns into InternalError
	got     api.RunInstanceRequest
}

func (s *stubBackend) HostInfo(context.Context) api.HostInfo { return api.HostInfo{Engine: "stub"} }
func (s *stubBackend) RunInstance(_ context.Context, r api.RunInstanceRequest) (api.Instance, error) {
	s.got = r
	if r.VCPUs < 1 {
		return api.Instance{}, api.Errorf(api.CodeInvalidVCPUCount, "vcpus %d", r.VCPUs)
	}
	return api.Instance{ID: "i-1", Name: r.Name, VCPUs: r.VCPUs}, nil
}
func (s *stubBackend) ListInstances(context.Context) ([]api.Instance, error) {
	panic("a handler bug") // must come back as InternalError, not a crash
}
func (s *stubBackend) DescribeInstance(_ context.Context, ref string, after uint64, wait time.Duration) (api.Instance, error) {
	return api.Instance{ID: ref, Revision: after}, nil
}
func (s *stubBackend) ModifyInstance(context.Context, string, api.ModifyInstanceRequest) (api.Instance, error) {
	return api.Instance{}, nil
}
func (s *stubBackend) StopInstance(context.Context, string, api.StopInstanceRequest) (api.Instance, error) {
	return api.Instance{}, io.ErrUnexpectedEOF // an uncoded error: its text must not leak
}
func (s *stubBackend) StartInstance(context.Context, string) (api.Instance, error) {
	return api.Instance{}, nil
}
func (s *stubBackend) RebootInstance(context.Context, string) (api.Instance, error) {
	return api.Instance{}, nil
}
func (s *stubBackend) TerminateInstance(context.Context, string) (api.Instance, error) {
	return api.Instance{}, nil
}
func (s *stubBackend) Console(_ context.Context, _ string, _ int64, _ bool, w io.Writer, flush func()) error {
	w.Write([]byte("console bytes"))
	flush()
	return nil
}
func (s *stubBackend) PutBlob(context.Context, string, io.Reader) error { return nil }
func (s *stubBackend) CreateImage(context.Context, api.CreateImageRequest) (api.CreateImageResponse, error) {
	return api.CreateImageResponse{}, nil
}
func (s *stubBackend) ListImages(context.Context) ([]api.Image, error) { return nil, nil }
func (s *stubBackend) DescribeImage(context.Context, string) (api.Image, error) {
	return api.Image{}, nil
}
func (s *stubBackend) DeleteImage(context.Context, string) (string, error) { return "", nil }
func (s *stubBackend) ResolveID(_ context.Context, _, ref string) (string, map[string]string, bool) {
	return ref, nil, true
}

// allowAll authorises everything except what deny names; it stands in for
// the IAM so these tests check routing, decoding and auditing.
type allowAll struct{ deny map[string]bool }

func (a allowAll) Credentials(akid, token string) (string, bool, *api.Caller, error) {
	return "", false, nil, errors.New("no keys")
}
func (a allowAll) HostRoot(pid int32) *api.Caller {
	return &api.Caller{Type: api.PrincipalHostRoot, ARN: "arn:azote:iam::123456789012:host-root"}
}
func (a allowAll) Authorize(c *api.Caller, action, resource string, _ map[string][]string) (bool, string) {
	if a.deny[action] {
		return false, "denied by test"
	}
	return true, ""
}
func (a allowAll) AccountID() string { return "123456789012" }

// memTrail keeps records in memory.
type memTrail struct {
	mu   sync.Mutex
	recs []audit.Record
	fail bool
}

func (m *memTrail) Append(_ context.Context, r *audit.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("disk full")
	}
	m.recs = append(m.recs, *r)
	return nil
}

func (m *memTrail) last() audit.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.recs[len(m.recs)-1]
}

// localHandler is the unix-socket handler with a fake peer: tests run as
// root in CI, but httptest requests carry no connection, so the peer
// check is replaced by a context value.
func localHandler(b Backend, auth Auth, trail Auditor) http.Handler {
	h := NewHandler(Config{Backend: b, Auth: auth, Audit: trail, Region: "local"})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), testPeerKey{}, int32(1))))
	})
}

func do(t testing.TB, h http.Handler, method, path string, body []byte) (int, []byte) {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

func TestHandlerErrors(t *testing.T) {
	trail := &memTrail{}
	h := localHandler(&stubBackend{}, allowAll{}, trail)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     api.Code
	}{
		{"malformed", "POST", "/v1/instances", "{", 400, api.CodeMalformedRequest},
		{"unknown field", "POST", "/v1/instances", `{"vcpus":1,"x":1}`, 400, api.CodeMalformedRequest},
		{"two values", "POST", "/v1/instances", `{"vcpus":1}{"vcpus":2}`, 400, api.CodeMalformedRequest},
		{"stray brace", "POST", "/v1/instances", `{"vcpus":1}}`, 400, api.CodeMalformedRequest},
		{"field on start", "POST", "/v1/instances/x/start", `{"force":true}`, 400, api.CodeMalformedRequest},
		{"too large", "POST", "/v1/instances", `{"name":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}`, 413, api.CodeRequestTooLarge},
		{"backend code", "POST", "/v1/instances", `{"vcpus":0}`, 400, api.CodeInvalidVCPUCount},
		{"panic", "GET", "/v1/instances", "", 500, api.CodeInternal},
		{"uncoded error", "POST", "/v1/instances/x/stop", "", 500, api.CodeInternal},
		{"bad after", "GET", "/v1/instances/x?after=-1", "", 400, api.CodeInvalidParameter},
		{"wait too long", "GET", "/v1/instances/x?wait=1h", "", 400, api.CodeInvalidParameter},
		{"bad tail", "GET", "/v1/instances/x/console?tail=many", "", 400, api.CodeInvalidParameter},
		{"wrong method", "DELETE", "/v1/host", "", 404, api.CodeNotFound},
		{"unknown path", "GET", "/nope", "", 404, api.CodeNotFound},
	} {
		status, body := do(t, h, tc.method, tc.path, []byte(tc.body))
		if status != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, status, tc.status, body)
			continue
		}
		if tc.code == "" {
			continue
		}
		var e api.Error
		if err := json.Unmarshal(body, &e); err != nil || e.Code != tc.code {
			t.Errorf("%s: body %s, want code %s", tc.name, body, tc.code)
		}
		if tc.code == api.CodeInternal && strings.Contains(e.Message, "EOF") {
			t.Errorf("%s: internal error text leaked: %q", tc.name, e.Message)
		}
	}
	status, body := do(t, h, "GET", "/v1/instances/x/console", nil)
	if status != 200 || string(body) != "console bytes" {
		t.Errorf("console: %d %q", status, body)
	}
	if r := trail.last(); r.EventName != "GetConsoleOutput" || r.EventSource != "compute.azote" || r.UserIdentity.Type != api.PrincipalHostRoot {
		t.Errorf("console read audited as %+v", r)
	}
}

func TestEveryCallAudited(t *testing.T) {
	trail := &memTrail{}
	h := localHandler(&stubBackend{}, allowAll{deny: map[string]bool{"compute:TerminateInstances": true}}, trail)
	cases := []struct {
		method, path, body string
		status             int
		event, errCode     string
	}{
		{"POST", "/v1/instances", `{"name":"web","vcpus":1}`, 200, "RunInstances", ""},
		{"POST", "/v1/instances", `{"vcpus":0}`, 400, "RunInstances", "InvalidVCPUCount"},
		{"POST", "/v1/instances/i-1/terminate", ``, 403, "TerminateInstances", "AccessDenied"},
		{"GET", "/v1/host", ``, 200, "DescribeHost", ""},
		{"POST", "/v1/iam/NoSuchThing", `{}`, 404, "NoSuchThing", "UnknownOperation"},
		{"GET", "/nope", ``, 404, "", "NotFound"},
	}
	for _, c := range cases {
		n := len(trail.recs)
		status, body := do(t, h, c.method, c.path, []byte(c.body))
		if status != c.status {
			t.Errorf("%s %s: status %d, want %d: %s", c.method, c.path, status, c.status, body)
			continue
		}
		if len(trail.recs) != n+1 {
			t.Errorf("%s %s: %d records written, want 1", c.method, c.path, len(trail.recs)-n)
			continue
		}
		r := trail.last()
		if r.EventName != c.event || r.ErrorCode != c.errCode || r.RequestID == "" || r.SourceIPAddress != "local" {
			t.Errorf("%s %s: record %+v", c.method, c.path, r)
		}
	}
	// A call whose record cannot be written is not answered as done.
	trail.fail = true
	status, body := do(t, h, "POST", "/v1/instances", []byte(`{"name":"web","vcpus":1}`))
	if status != 503 || !strings.Contains(string(body), "audit trail") {
		t.Errorf("with a failing trail: %d %s", status, body)
	}
}

func FuzzRunInstanceBody(f *testing.F) {
	f.Add([]byte(`{"name":"a","image":"default","vcpus":1,"memory_mib":128}`))
	f.Add([]byte(`{"vcpus":1e999}`))
	f.Add([]byte(`[]`))
	f.Add([]byte("\xff\xfe"))
	b := &stubBackend{}
	h := localHandler(b, allowAll{}, &memTrail{})
	f.Fuzz(func(t *testing.T, body []byte) {
		status, out := do(t, h, "POST", "/v1/instances", body)
		switch {
		case status == 200:
			var inst api.Instance
			if err := json.Unmarshal(out, &inst); err != nil || inst.VCPUs < 1 {
				t.Fatalf("200 with %s", out)
			}
		case status == 400 || status == 413:
			var e api.Error
			if err := json.Unmarshal(out, &e); err != nil || e.Code == "" || e.Message == "" {
				t.Fatalf("%d without a coded error: %s", status, out)
			}
		default:
			t.Fatalf("status %d for body %q: %s", status, body, out)
		}
	})
}

// byResource authorises every action except on the resources it names.
type byResource struct {
	allowAll
	denied map[string]bool
}

func (a byResource) Authorize(c *api.Caller, action, resource string, tags map[string][]string) (bool, string) {
	if a.denied[resource] {
		return false, "denied by test"
	}
	return true, ""
}

// volumeStub attaches and detaches anything; vol-in is attached to i-theirs.
type volumeStub struct {
	stubBackend
	attached, detached int
}

func (s *volumeStub) AttachVolume(_ context.Context, ref string, _ api.AttachVolumeRequest) (api.Volume, error) {
	s.attached++
	return api.Volume{ID: ref}, nil
}
func (s *volumeStub) DetachVolume(_ context.Context, ref string) (api.Volume, error) {
	s.detached++
	return api.Volume{ID: ref}, nil
}
func (s *volumeStub) DescribeVolume(_ context.Context, ref string) (api.Volume, error) {
	if ref == "vol-in" {
		return api.Volume{ID: ref, AttachedTo: "i-theirs"}, nil
	}
	return api.Volume{ID: ref}, nil
}

// A call that touches two resources needs permission on both: attaching
// my volume to an instance I may not touch, detaching from it, and
// launching with a volume I may not attach are refused, and audited with
// every resource.
func TestEveryResourceAuthorised(t *testing.T) {
	arn := func(r string) string { return "arn:azote:compute::123456789012:" + r }
	trail := &memTrail{}
	b := &volumeStub{}
	auth := byResource{denied: map[string]bool{arn("instance/i-theirs"): true, arn("volume/vol-theirs"): true}}
	h := localHandler(b, auth, trail)
	for _, c := range []struct {
		method, path, body string
		want               int
		resources          []string
	}{
		{"POST", "/v1/volumes/vol-mine/attach", `{"instance":"i-theirs"}`, 403, []string{"volume/vol-mine", "instance/i-theirs"}},
		{"POST", "/v1/volumes/vol-mine/attach", `{"instance":"i-mine"}`, 200, []string{"volume/vol-mine", "instance/i-mine"}},
		{"POST", "/v1/volumes/vol-in/detach", `{}`, 403, []string{"volume/vol-in", "instance/i-theirs"}},
		{"POST", "/v1/volumes/vol-free/detach", `{}`, 200, []string{"volume/vol-free"}},
		{"POST", "/v1/instances", `{"name":"x","vcpus":1,"volumes":[{"volume":"vol-mine"},{"volume":"vol-theirs"}]}`, 403, []string{"instance/*", "volume/vol-mine", "volume/vol-theirs"}},
		{"POST", "/v1/instances", `{"name":"x","vcpus":1,"root_volume":"vol-theirs"}`, 403, []string{"instance/*", "volume/vol-theirs"}},
		{"POST", "/v1/instances", `{"name":"x","vcpus":1,"root_volume":"vol-mine"}`, 200, []string{"instance/*", "volume/vol-mine"}},
	} {
		code, body := do(t, h, c.method, c.path, []byte(c.body))
		if code != c.want {
			t.Errorf("%s %s %s: %d %s, want %d", c.method, c.path, c.body, code, body, c.want)
			continue
		}
		rec := trail.last()
		var got []string
		for _, r := range rec.Resources {
			got = append(got, strings.TrimPrefix(r.ARN, arn("")))
		}
		if strings.Join(got, " ") != strings.Join(c.resources, " ") {
			t.Errorf("%s %s: audited resources %v, want %v", c.method, c.path, got, c.resources)
		}
		if (c.want == 403) != (rec.ErrorCode == string(api.CodeAccessDenied)) {
			t.Errorf("%s %s: audited error code %q", c.method, c.path, rec.ErrorCode)
		}
	}
	if b.attached != 1 || b.detached != 1 {
		t.Errorf("backend saw %d attaches and %d detaches, want 1 and 1", b.attached, b.detached)
	}
}

// An operation that names further resources (api.Operation.Also) runs only
// when the caller is allowed the action on each of them too, and its
// record lists every resource evaluated.
func TestOperationAlsoAuthorised(t *testing.T) {
	trail := &memTrail{}
	ran := 0
	op := &api.Operation{Name: "iam:CreateThing", NewRequest: func() any { return new(struct{ User string }) },
		Resource: func(context.Context, any) (string, error) { return "arn:azote:iam::123456789012:thing/t", nil },
		Also: func(_ context.Context, r any) ([]string, error) {
			return []string{"arn:azote:iam::123456789012:user/" + r.(*struct{ User string }).User}, nil
		},
		Do: func(context.Context, *api.Caller, any) (any, error) { ran++; return struct{}{}, nil }}
	auth := byResource{denied: map[string]bool{"arn:azote:iam::123456789012:user/alice": true}}
	h := NewHandler(Config{Backend: &stubBackend{}, Auth: auth, Audit: trail, Region: "local", Operations: []*api.Operation{op}})
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), testPeerKey{}, int32(1))))
	})
	for _, c := range []struct {
		user string
		want int
	}{{"alice", 403}, {"bob", 200}} {
		code, body := do(t, local, "POST", "/v1/iam/CreateThing", []byte(`{"User":"`+c.user+`"}`))
		if code != c.want {
			t.Fatalf("user %s: %d %s, want %d", c.user, code, body, c.want)
		}
		var got []string
		for _, r := range trail.last().Resources {
			got = append(got, r.ARN)
		}
		if want := []string{"arn:azote:iam::123456789012:thing/t", "arn:azote:iam::123456789012:user/" + c.user}; !slices.Equal(got, want) {
			t.Errorf("user %s: audited resources %q, want %q", c.user, got, want)
		}
	}
	if ran != 1 {
		t.Errorf("Do ran %d times, want once (for bob)", ran)
	}
}
