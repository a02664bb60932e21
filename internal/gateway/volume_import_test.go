package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/azote/azote/internal/api"
)

// importStub takes imports, keeping what it was given.
type importStub struct {
	stubBackend
	calls int
	req   api.ImportVolumeRequest
	body  []byte
}

func (s *importStub) ImportVolume(_ context.Context, r api.ImportVolumeRequest, body io.Reader) (api.Volume, error) {
	s.calls++
	s.req = r
	s.body, _ = io.ReadAll(body)
	return api.Volume{ID: "vol-1", Name: r.Name, State: api.VolumeAvailable, Encrypted: !r.Plaintext, SizeBytes: 1 << 20}, nil
}

// An import is the Operation compute:ImportVolume on volume/*, with
// azote:Encrypted: allowed, it reaches the backend with its query and
// its body as sent; refused, the backend never sees it; either way the
// trail records it, without the body.
func TestImportVolumeAuthorisedAndAudited(t *testing.T) {
	auth := newPolicyAuth(t, api.PrincipalUser, `{"Version": "2012-10-17", "Statement": [
	  {"Effect": "Allow", "Action": "compute:ImportVolume", "Resource": "arn:azote:compute:*:*:volume/*"},
	  {"Effect": "Deny", "Action": "compute:ImportVolume", "Resource": "*", "Condition": {"Bool": {"azote:Encrypted": "false"}}}]}`)
	trail := &memTrail{}
	b := &importStub{}
	h := localHandler(b, auth, trail)
	disk := bytes.Repeat([]byte("a disk sector "), 1000)
	path := api.VolumeImportPath + "?name=d&length=14000&sha256=" + strings.Repeat("ab", 32)

	code, out := do(t, h, "POST", path, disk)
	if code != http.StatusOK || b.calls != 1 {
		t.Fatalf("allowed import: %d %s (backend called %d times)", code, out, b.calls)
	}
	if !bytes.Equal(b.body, disk) || b.req.Name != "d" || b.req.Length != 14000 || b.req.SHA256 != strings.Repeat("ab", 32) || b.req.Plaintext {
		t.Errorf("the backend got %+v and %d body bytes", b.req, len(b.body))
	}
	if got := auth.seen["compute:ImportVolume"]["azote:encrypted"]; len(got) != 1 || got[0] != "true" {
		t.Errorf("azote:Encrypted in the decision: %v", got)
	}
	r := trail.last()
	if r.EventName != "ImportVolume" || r.ErrorCode != "" {
		t.Errorf("audit record: event %q, error %q", r.EventName, r.ErrorCode)
	}
	rec, _ := json.Marshal(r)
	if bytes.Contains(rec, []byte("a disk sector")) || !bytes.Contains(rec, []byte("vol-1")) || !bytes.Contains(rec, []byte(`"length":"14000"`)) {
		t.Errorf("the audit record must keep the query and the answer, not the body: %s", rec)
	}

	// A plaintext import is denied by the condition, before any byte
	// reaches the backend, and the refusal is recorded.
	code, out = do(t, h, "POST", path+"&plaintext=true", disk)
	if code != http.StatusForbidden || b.calls != 1 {
		t.Errorf("plaintext import: %d %s (backend called %d times)", code, out, b.calls)
	}
	if r := trail.last(); r.EventName != "ImportVolume" || r.ErrorCode != string(api.CodeAccessDenied) {
		t.Errorf("refusal audited as %q %q", r.EventName, r.ErrorCode)
	}

	// CreateVolume does not allow an import.
	create := newPolicyAuth(t, api.PrincipalUser, `{"Version": "2012-10-17", "Statement": [
	  {"Effect": "Allow", "Action": "compute:CreateVolume", "Resource": "*"}]}`)
	if code, out := do(t, localHandler(b, create, trail), "POST", path, disk); code != http.StatusForbidden || b.calls != 1 {
		t.Errorf("import with CreateVolume only: %d %s", code, out)
	}

	// Bad parameters are refused with a code, before the backend.
	for _, q := range []string{"?length=10&sha256=ab&colour=red", "?length=ten&sha256=ab", "?sha256=ab", "?length=1&length=2&sha256=ab"} {
		code, out := do(t, h, "POST", api.VolumeImportPath+q, disk)
		var e api.Error
		if code != http.StatusBadRequest || json.Unmarshal(out, &e) != nil || e.Code != api.CodeInvalidParameter || b.calls != 1 {
			t.Errorf("%s: %d %s", q, code, out)
		}
	}
}
