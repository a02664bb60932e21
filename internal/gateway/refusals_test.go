package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/azote/azote/internal/api"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/audit"
	"github.com/azote/azote/internal/testutil"
)

// networkHandler is the HTTPS handler with a settable clock.
func networkHandler(trail Auditor, now func() time.Time) http.Handler {
	return NewHandler(Config{Backend: &stubBackend{}, Auth: allowAll{}, Audit: trail, Region: "local", Network: true, Now: now})
}

// unsigned sends an unsigned request from addr and checks it is refused
// as unsigned requests are, whatever the trail did with it.
func unsigned(t *testing.T, h http.Handler, addr, path, agent string) {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	req.RemoteAddr = addr
	if agent != "" {
		req.Header.Set("User-Agent", agent)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var e api.Error
	if rec.Code != http.StatusForbidden || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Code != api.CodeMissingAuthentication {
		t.Fatalf("unsigned request from %s: %d %s", addr, rec.Code, rec.Body.Bytes())
	}
}

func (m *memTrail) all() []audit.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]audit.Record(nil), m.recs...)
}

// A refused request's record keeps a bounded prefix of what the client
// chose (path, user agent, claimed key id), however much it sent.
func TestRefusedRecordIsBounded(t *testing.T) {
	trail := &memTrail{}
	h := networkHandler(trail, nil)
	huge := strings.Repeat("A", 1<<20)
	unsigned(t, h, "192.0.2.1:1000", "/v1/"+huge, huge)

	req := httptest.NewRequest("GET", "/v1/instances", nil)
	req.RemoteAddr = "192.0.2.1:1000"
	akid := strings.Repeat("K", sigMaxKeyID())
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+akid+"/20250101/local/azote/aws4_request, SignedHeaders=host;x-amz-date, Signature="+strings.Repeat("0", 64))
	req.Header.Set("X-Amz-Date", "20250101T000000Z")
	h.ServeHTTP(httptest.NewRecorder(), req)

	recs := trail.all()
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	for _, r := range recs {
		b, _ := json.Marshal(r)
		if len(b) > 4<<10 {
			t.Errorf("a refusal record of %d bytes: %.200s", len(b), b)
		}
		if p, _ := r.RequestParameters["path"].(string); len(p) > maxRefusedPath || !strings.HasPrefix(p, "/v1/") {
			t.Errorf("path kept: %d bytes", len(p))
		}
		if len(r.UserAgent) > maxRefusedAgent || len(r.UserIdentity.AccessKeyID) > maxRefusedKeyID || len(r.ErrorMessage) > maxRefusedMsg {
			t.Errorf("record not bounded: agent %d, key id %d, message %d bytes", len(r.UserAgent), len(r.UserIdentity.AccessKeyID), len(r.ErrorMessage))
		}
	}
	if recs[1].UserIdentity.AccessKeyID == "" || !strings.HasPrefix(recs[1].UserIdentity.AccessKeyID, "KKKK") {
		t.Errorf("claimed key id not kept: %q", recs[1].UserIdentity.AccessKeyID)
	}
}

// sigMaxKeyID is a key id as long as an Authorization header allows.
func sigMaxKeyID() int { return 1800 }

// A flood of refusals from one source writes a few records and then one
// summary with the count; another source still gets its own records, and
// every client gets the right answer.
func TestRefusalFloodIsAggregated(t *testing.T) {
	trail := &memTrail{}
	clock := testutil.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	h := networkHandler(trail, clock.Now)
	const flood = 1000
	for i := 0; i < flood; i++ {
		unsigned(t, h, fmt.Sprintf("192.0.2.1:%d", 1000+i), "/v1/instances", "flood")
	}
	for i := 0; i < 3; i++ {
		unsigned(t, h, "198.51.100.7:1", "/v1/instances", "other")
	}
	// An IPv6 host rotating through its /64 is one source.
	for i := 0; i < 50; i++ {
		unsigned(t, h, fmt.Sprintf("[2001:db8::%x]:1", i+1), "/v1/instances", "v6")
	}
	bySource := map[string]int{}
	for _, r := range trail.all() {
		bySource[r.SourceIPAddress]++
	}
	if bySource["192.0.2.1"] != refusalsPerSource || bySource["198.51.100.7"] != 3 {
		t.Fatalf("records per source in the window: %v, want %d for the flood and 3 for the other", bySource, refusalsPerSource)
	}
	v6 := 0
	for src, n := range bySource {
		if strings.HasPrefix(src, "2001:db8::") {
			v6 += n
		}
	}
	if v6 != refusalsPerSource {
		t.Fatalf("records from one IPv6 /64: %d, want %d", v6, refusalsPerSource)
	}

	// The window ends: the next refusal (or the timer) writes the summaries.
	clock.Advance(refusalWindow + time.Second)
	before := len(trail.all())
	unsigned(t, h, "203.0.113.9:1", "/v1/instances", "late")
	var sums []audit.Record
	for _, r := range trail.all()[before:] {
		if r.AdditionalEventData["refusalSummary"] == true {
			sums = append(sums, r)
		}
	}
	if len(sums) != 2 {
		t.Fatalf("%d summaries, want 2 (the IPv4 flood and the IPv6 one)", len(sums))
	}
	got := map[string]any{}
	for _, s := range sums {
		got[s.SourceIPAddress] = s.AdditionalEventData["omittedCount"]
		if s.ErrorCode != string(api.CodeMissingAuthentication) || s.EventName != "Authenticate" {
			t.Errorf("summary %+v", s)
		}
	}
	if got["192.0.2.1"] != flood-refusalsPerSource || got["2001:db8::/64"] != 50-refusalsPerSource {
		t.Fatalf("summaries: %v", got)
	}
	// A new window: the flooding source is recorded again.
	unsigned(t, h, "192.0.2.1:1", "/v1/instances", "flood")
	if last := trail.last(); last.SourceIPAddress != "192.0.2.1" || last.AdditionalEventData != nil {
		t.Fatalf("first refusal of a new window not recorded: %+v", last)
	}
}

// Many sources together still write at most refusalsPerWindow records one
// by one, and at most refusalSummaries summaries.
func TestRefusalsFromManySources(t *testing.T) {
	trail := &memTrail{}
	clock := testutil.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	h := networkHandler(trail, clock.Now)
	for i := 0; i < 1000; i++ {
		unsigned(t, h, fmt.Sprintf("10.%d.%d.1:1", i/250, i%250), "/v1/x", "")
	}
	if n := len(trail.all()); n != refusalsPerWindow {
		t.Fatalf("%d records from 1000 sources, want %d", n, refusalsPerWindow)
	}
	clock.Advance(refusalWindow)
	unsigned(t, h, "203.0.113.9:1", "/v1/x", "")
	sums, omitted, sources := 0, 0, 0
	for _, r := range trail.all() {
		if r.AdditionalEventData["refusalSummary"] == true {
			sums++
			omitted += r.AdditionalEventData["omittedCount"].(int)
			sources += r.AdditionalEventData["sources"].(int)
		}
	}
	if sums != refusalSummaries || omitted != 1000-refusalsPerWindow || sources != 1000-refusalsPerWindow {
		t.Fatalf("%d summaries covering %d refusals from %d sources", sums, omitted, sources)
	}
}

// failedTrail is a trail that cannot write, as audit.Trail reports it.
type failedTrail struct {
	mu      sync.Mutex
	err     error
	appends int
}

func (f *failedTrail) Append(context.Context, *audit.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.appends++
	return f.err
}

func (f *failedTrail) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// While the trail cannot write, calls are refused with a code of their own
// before they run; once it can, they are served again.
func TestCallsRefusedWhileTrailFailed(t *testing.T) {
	trail := &failedTrail{err: fmt.Errorf("%w: no space left on device", audit.ErrFailed)}
	b := &stubBackend{}
	h := localHandler(b, allowAll{}, trail)
	status, body := do(t, h, "POST", "/v1/instances", []byte(`{"name":"web","vcpus":1}`))
	var e api.Error
	if status != http.StatusServiceUnavailable || json.Unmarshal(body, &e) != nil || e.Code != api.CodeAuditUnavailable {
		t.Fatalf("with a failed trail: %d %s", status, body)
	}
	if b.got.Name != "" {
		t.Fatal("the call ran although it could not be recorded")
	}
	trail.mu.Lock()
	trail.err = nil
	trail.mu.Unlock()
	if status, body := do(t, h, "POST", "/v1/instances", []byte(`{"name":"web","vcpus":1}`)); status != 200 || b.got.Name != "web" {
		t.Fatalf("after the trail recovered: %d %s", status, body)
	}
}

// An authenticated caller's query and path are bounded in its record too.
func TestRequestParamsBounded(t *testing.T) {
	q := url.Values{}
	for i := 0; i < 1000; i++ {
		q.Set(fmt.Sprintf("k%04d", i), strings.Repeat("v", 5000))
	}
	r := httptest.NewRequest("GET", "/v1/instances/"+strings.Repeat("p", 5000)+"?"+q.Encode(), nil)
	m := requestParams(r, nil)
	b, _ := json.Marshal(m)
	if len(b) > 64<<10 {
		t.Fatalf("request parameters of %d bytes", len(b))
	}
	if qm := m["query"].(map[string]any); len(qm) != maxQueryParams || m["queryTruncated"] != true {
		t.Fatalf("%d query parameters kept", len(qm))
	}
}
