package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/audit"
)

// fakeSession plays a command: it prints out, then exits with code once
// its stdin is closed; with echo it prints back what it reads.
type fakeSession struct {
	mu     sync.Mutex
	events chan agent.Output
	exit   chan agent.ExitStatus
	code   int
	echo   bool
	stdin  bytes.Buffer
	closed bool
	killed bool
	resize [2]uint16
}

func newFakeSession(out string, code int, echo bool) *fakeSession {
	s := &fakeSession{events: make(chan agent.Output, 64), exit: make(chan agent.ExitStatus, 1), code: code, echo: echo}
	if out != "" {
		s.events <- agent.Output{Data: []byte(out)}
	}
	return s
}

func (s *fakeSession) Recv(ctx context.Context) (agent.Output, *agent.ExitStatus, error) {
	select {
	case o := <-s.events:
		return o, nil, nil
	default:
	}
	select {
	case o := <-s.events:
		return o, nil, nil
	case e := <-s.exit:
		return agent.Output{}, &e, nil
	case <-ctx.Done():
		return agent.Output{}, nil, ctx.Err()
	}
}

func (s *fakeSession) Write(_ context.Context, p []byte) error {
	s.mu.Lock()
	s.stdin.Write(p)
	s.mu.Unlock()
	if s.echo {
		s.events <- agent.Output{Data: append([]byte(nil), p...)}
	}
	return nil
}

func (s *fakeSession) CloseStdin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.exit <- agent.ExitStatus{Code: s.code}
	}
	return nil
}

func (s *fakeSession) Resize(rows, cols uint16) error {
	s.mu.Lock()
	s.resize = [2]uint16{rows, cols}
	s.mu.Unlock()
	s.events <- agent.Output{Data: []byte(fmt.Sprintf("size %d %d\n", rows, cols))}
	return nil
}

func (s *fakeSession) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.killed && !s.closed {
		s.killed = true
		s.exit <- agent.ExitStatus{Code: 137, Signal: "SIGKILL"}
	}
	return nil
}

func (s *fakeSession) Close() {}

// execStub is a backend whose instances run fakeSessions.
type execStub struct {
	stubBackend
	mu    sync.Mutex
	calls []agent.OpenRequest
	next  *fakeSession
	err   error
}

func (b *execStub) ResolveID(_ context.Context, _, ref string) (string, map[string]string, bool) {
	return ref, nil, ref != "i-gone"
}

func (b *execStub) Exec(_ context.Context, id string, req agent.OpenRequest) (ExecSession, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, req)
	if b.err != nil {
		return nil, b.err
	}
	return b.next, nil
}

// execRecords returns the trail's ExecuteCommand records.
func execRecords(trail *memTrail) []audit.Record {
	var out []audit.Record
	for _, r := range trail.all() {
		if r.EventName == "ExecuteCommand" {
			out = append(out, r)
		}
	}
	return out
}

func readEvents(t *testing.T, body []byte) (stdout string, exit *api.ExecExit, e *api.Error) {
	t.Helper()
	var out strings.Builder
	for _, l := range bytes.Split(bytes.TrimSpace(body), []byte("\n")) {
		var ev api.ExecEvent
		if err := json.Unmarshal(l, &ev); err != nil {
			t.Fatalf("stream line %q: %v", l, err)
		}
		out.Write(ev.Stdout)
		if ev.Exit != nil {
			exit = ev.Exit
		}
		if ev.Error != nil {
			e = ev.Error
		}
	}
	return out.String(), exit, e
}

// TestExecStreamsAndAudits: an authorised exec streams the command's
// output and exit code, and the trail has its start and its end (with the
// exit code and start time), with the command but never the input.
func TestExecStreamsAndAudits(t *testing.T) {
	trail := &memTrail{}
	b := &execStub{next: newFakeSession("hello\n", 3, false)}
	h := localHandler(b, allowAll{}, trail)
	code, body := do(t, h, "POST", "/v1/instances/i-1/exec", []byte(`{"command":["sh","-c","echo hello; exit 3"],"stdin":"c2VjcmV0LWlucHV0"}`))
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	out, exit, e := readEvents(t, body)
	if out != "hello\n" || exit == nil || exit.Code != 3 || e != nil {
		t.Fatalf("stream: %q exit %+v error %v", out, exit, e)
	}
	if got := b.next.stdin.String(); got != "secret-input" {
		t.Fatalf("stdin reached the command as %q", got)
	}
	recs := execRecords(trail)
	if len(recs) != 2 {
		t.Fatalf("%d ExecuteCommand records, want start and end", len(recs))
	}
	start, end := recs[0], recs[1]
	if start.ErrorCode != "" || start.RequestParameters["command"] == nil || start.Resources[0].ARN != "arn:azote:compute::123456789012:instance/i-1" {
		t.Fatalf("start record %+v", start)
	}
	if end.RequestID != start.RequestID || end.ResponseElements["exitStatus"] != 3 || end.ResponseElements["sessionStart"] == nil {
		t.Fatalf("end record %+v", end)
	}
	for _, r := range recs {
		raw, _ := json.Marshal(r)
		if bytes.Contains(raw, []byte("secret")) || bytes.Contains(raw, []byte("c2VjcmV0")) {
			t.Fatalf("the input reached the trail: %s", raw)
		}
		if !strings.Contains(string(raw), `"echo hello; exit 3"`) {
			t.Fatalf("the command is not in the record: %s", raw)
		}
	}
}

func TestExecRefusals(t *testing.T) {
	trail := &memTrail{}
	b := &execStub{next: newFakeSession("", 0, false)}
	h := localHandler(b, allowAll{deny: map[string]bool{"compute:ExecuteCommand": true}}, trail)
	code, body := do(t, h, "POST", "/v1/instances/i-1/exec", []byte(`{"command":["id"]}`))
	if code != 403 || !strings.Contains(string(body), string(api.CodeAccessDenied)) || len(b.calls) != 0 {
		t.Fatalf("without compute:ExecuteCommand: %d %s, %d sessions", code, body, len(b.calls))
	}
	if r := trail.last(); r.EventName != "ExecuteCommand" || r.ErrorCode != string(api.CodeAccessDenied) {
		t.Fatalf("refusal not audited: %+v", r)
	}

	h = localHandler(b, allowAll{}, trail)
	for _, c := range []struct {
		name, path, body string
		code             api.Code
	}{
		{"no command", "/v1/instances/i-1/exec", `{}`, api.CodeInvalidParameter},
		{"timeout", "/v1/instances/i-1/exec", `{"command":["id"],"timeout_seconds":-1}`, api.CodeInvalidParameter},
		{"nul", "/v1/instances/i-1/exec", `{"command":["a\u0000b"]}`, api.CodeInvalidParameter},
		{"interactive without upgrade", "/v1/instances/i-1/exec", `{"interactive":true}`, api.CodeInvalidParameter},
		{"unknown field", "/v1/instances/i-1/exec", `{"command":["id"],"env":["A=B"]}`, api.CodeMalformedRequest},
		{"no instance", "/v1/instances/i-gone/exec", `{"command":["id"]}`, api.CodeInstanceNotFound},
	} {
		code, body := do(t, h, "POST", c.path, []byte(c.body))
		var e api.Error
		if json.Unmarshal(body, &e) != nil || e.Code != c.code || code != e.Status() {
			t.Errorf("%s: %d %s, want %s", c.name, code, body, c.code)
		}
	}
	b.err = api.Errorf(api.CodeAgentUnavailable, "no agent")
	code, body = do(t, h, "POST", "/v1/instances/i-1/exec", []byte(`{"command":["id"]}`))
	if code != 503 || !strings.Contains(string(body), "AgentUnavailable") {
		t.Fatalf("no agent: %d %s", code, body)
	}
	if r := trail.last(); r.ErrorCode != string(api.CodeAgentUnavailable) || r.AdditionalEventData["session"] != "end" {
		t.Fatalf("the failed session's end is not audited: %+v", r)
	}
}

// mfaAuth evaluates one policy with aws:MultiFactorAuthPresent set from
// the caller, as the IAM does for session credentials.
type mfaAuth struct {
	*policyAuth
	mfa bool
}

func (a *mfaAuth) HostRoot(int32) *api.Caller {
	return &api.Caller{Type: api.PrincipalAssumedRole, ARN: "arn:azote:sts::123456789012:assumed-role/ops/s", Session: true, MFA: a.mfa}
}

func (a *mfaAuth) Authorize(c *api.Caller, action, resource string, extra map[string][]string) (bool, string) {
	ctx := map[string][]string{"aws:multifactorauthpresent": {strconv.FormatBool(c.MFA)}}
	for k, v := range extra {
		ctx[k] = v
	}
	return a.policyAuth.Authorize(c, action, resource, ctx)
}

// TestExecNeedsMFA: a policy that allows exec only with MFA refuses a
// caller without it.
func TestExecNeedsMFA(t *testing.T) {
	doc := `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "compute:ExecuteCommand", "Resource": "*",
	  "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}}]}`
	for _, mfa := range []bool{false, true} {
		trail := &memTrail{}
		b := &execStub{next: newFakeSession("ok\n", 0, false)}
		h := localHandler(b, &mfaAuth{policyAuth: newPolicyAuth(t, api.PrincipalAssumedRole, doc), mfa: mfa}, trail)
		code, body := do(t, h, "POST", "/v1/instances/i-1/exec", []byte(`{"command":["true"]}`))
		if mfa && code != 200 {
			t.Fatalf("with MFA: %d %s", code, body)
		}
		if !mfa && (code != 403 || len(b.calls) != 0) {
			t.Fatalf("without MFA: %d %s, %d sessions", code, body, len(b.calls))
		}
	}
}

// TestExecInteractive upgrades the connection and talks to the session
// both ways.
func TestExecInteractive(t *testing.T) {
	trail := &memTrail{}
	b := &execStub{next: newFakeSession("", 0, true)}
	srv := httptest.NewServer(localHandler(b, allowAll{}, trail))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	body := `{"interactive":true,"rows":30,"cols":100}`
	fmt.Fprintf(conn, "POST /v1/instances/i-1/exec HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", api.ExecUpgrade, len(body), body)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %+v", err, resp)
	}
	enc := json.NewEncoder(conn)
	enc.Encode(api.ExecEvent{Stdin: []byte("ls\n")})
	enc.Encode(api.ExecEvent{Resize: &api.WindowSize{Rows: 50, Cols: 132}})
	dec := json.NewDecoder(br)
	var got strings.Builder
	for !strings.Contains(got.String(), "size 50 132") {
		var ev api.ExecEvent
		if err := dec.Decode(&ev); err != nil {
			t.Fatalf("after %q: %v", got.String(), err)
		}
		got.Write(ev.Stdout)
	}
	if !strings.HasPrefix(got.String(), "ls\n") {
		t.Fatalf("echo: %q", got.String())
	}
	enc.Encode(api.ExecEvent{CloseStdin: true})
	for {
		var ev api.ExecEvent
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		if ev.Exit != nil {
			if ev.Exit.Code != 0 {
				t.Fatalf("exit %+v", ev.Exit)
			}
			break
		}
	}
	if len(b.calls) != 1 || !b.calls[0].TTY || !b.calls[0].Login || b.calls[0].Rows != 30 {
		t.Fatalf("open request %+v", b.calls)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(execRecords(trail)) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	recs := execRecords(trail)
	if len(recs) != 2 || recs[0].RequestParameters["command"] != "interactive shell" || recs[1].ResponseElements["exitStatus"] != 0 {
		t.Fatalf("records %+v", recs)
	}
}

// TestExecInteractiveHangup: a client that hangs up kills the command,
// and the end is audited with how it ended.
func TestExecInteractiveHangup(t *testing.T) {
	trail := &memTrail{}
	sess := newFakeSession("", 0, true)
	b := &execStub{next: sess}
	srv := httptest.NewServer(localHandler(b, allowAll{}, trail))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	body := `{"interactive":true}`
	fmt.Fprintf(conn, "POST /v1/instances/i-1/exec HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: %s\r\nContent-Length: %d\r\n\r\n%s", api.ExecUpgrade, len(body), body)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v", err)
	}
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(execRecords(trail)) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	sess.mu.Lock()
	killed := sess.killed
	sess.mu.Unlock()
	recs := execRecords(trail)
	if !killed || len(recs) != 2 || recs[1].ResponseElements["signal"] != "SIGKILL" {
		t.Fatalf("killed %v, records %+v", killed, recs)
	}
}
