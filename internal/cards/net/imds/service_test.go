package imds

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/azote/azote/internal/cards/cardproto"
)

// do answers one raw request as the stack would and parses the answer
// with net/http, as a client reads it.
func do(t *testing.T, s *Service, raw string) (*http.Response, string) {
	t.Helper()
	req, n, err := ParseRequest([]byte(raw))
	var resp Response
	closing := true
	switch {
	case errors.Is(err, ErrIncomplete):
		t.Fatalf("%q: incomplete", raw)
	case err != nil:
		resp = s.Malformed()
	default:
		if n != len(raw) {
			t.Fatalf("%q: took %d of %d bytes", raw, n, len(raw))
		}
		resp, closing = s.Serve(s.Data(), &req), req.Close
	}
	out := AppendResponse(nil, &resp, closing, s.now())
	hr, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
	if err != nil {
		t.Fatalf("%q: the answer does not parse: %v\n%s", raw, err, out)
	}
	body, err := io.ReadAll(hr.Body)
	if err != nil {
		t.Fatal(err)
	}
	return hr, string(body)
}

func get(path, token string) string {
	r := "GET " + path + " HTTP/1.1\r\nHost: 169.254.169.254\r\n"
	if token != "" {
		r += "X-aws-ec2-metadata-token: " + token + "\r\n"
	}
	return r + "\r\n"
}

func tokenRequest(ttl string, extra string) string {
	r := "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n"
	if ttl != "" {
		r += "X-aws-ec2-metadata-token-ttl-seconds: " + ttl + "\r\n"
	}
	return r + extra + "\r\n"
}

func newToken(t *testing.T, s *Service, ttl string) string {
	t.Helper()
	hr, body := do(t, s, tokenRequest(ttl, ""))
	if hr.StatusCode != 200 || hr.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") != ttl || body == "" {
		t.Fatalf("token: %d %v %q", hr.StatusCode, hr.Header, body)
	}
	return body
}

// The token request: lifetime bounds, X-Forwarded-For refused, methods.
func TestTokenRequest(t *testing.T) {
	s, _ := newTestService(t, testMetadata(), 0, 0)
	for _, c := range []struct {
		raw  string
		want int
	}{
		{tokenRequest("21600", ""), 200},
		{tokenRequest("1", ""), 200},
		{tokenRequest("0", ""), 400},
		{tokenRequest("21601", ""), 400},
		{tokenRequest("-5", ""), 400},
		{tokenRequest("ten", ""), 400},
		{tokenRequest("", ""), 400},
		{tokenRequest("60", "X-Forwarded-For: 10.0.1.9\r\n"), 403},
		{tokenRequest("60", "x-forwarded-for: 10.0.1.9\r\n"), 403},
		{"GET /latest/api/token HTTP/1.1\r\n\r\n", 405},
		{"PUT /latest/meta-data/ HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n", 405},
		{"POST /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n", 405},
		{"DELETE /latest/meta-data/ HTTP/1.1\r\n\r\n", 405},
	} {
		hr, body := do(t, s, c.raw)
		if hr.StatusCode != c.want {
			t.Errorf("%q: %d, want %d", c.raw, hr.StatusCode, c.want)
		}
		if c.want != 200 && !strings.Contains(body, "<title>"+strings.Replace(hr.Status, " ", " - ", 1)+"</title>") {
			t.Errorf("%q: body %q", c.raw, body)
		}
	}
}

// Tokens: required by default, valid until they expire, on this
// interface only; a bad one is refused even when tokens are optional.
func TestTokens(t *testing.T) {
	s, clk := newTestService(t, testMetadata(), 0, 0)
	tok := newToken(t, s, "60")
	for _, c := range []struct {
		tok  string
		want int
	}{
		{tok, 200},
		{"", 401},
		{"garbage", 401},
		{tok[:len(tok)-2] + "AA", 401},
		{strings.Repeat("A", len(tok)), 401},
	} {
		if hr, _ := do(t, s, get("/latest/meta-data/instance-id", c.tok)); hr.StatusCode != c.want {
			t.Errorf("token %q: %d, want %d", c.tok, hr.StatusCode, c.want)
		}
	}
	clk.add(59 * time.Second)
	if hr, _ := do(t, s, get("/latest/meta-data/instance-id", tok)); hr.StatusCode != 200 {
		t.Errorf("a token 1 s before expiry: %d", hr.StatusCode)
	}
	clk.add(time.Second)
	if hr, _ := do(t, s, get("/latest/meta-data/instance-id", tok)); hr.StatusCode != 401 {
		t.Errorf("an expired token: %d", hr.StatusCode)
	}

	// Another interface's service (another card, or the same card for
	// another interface) does not take it.
	other, err := NewService("02:aa:00:00:00:02", "eni-2", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	other.key = s.key // even under the same key: bound to the interface
	other.now = s.now
	other.SetData(s.Data())
	tok = newToken(t, s, "60")
	if hr, _ := do(t, other, get("/latest/meta-data/instance-id", tok)); hr.StatusCode != 401 {
		t.Errorf("a token of another interface: %d", hr.StatusCode)
	}

	// IMDSv1 when optional: no token is fine, a bad one is not.
	md := testMetadata()
	md.HTTPTokens = "optional"
	v1, _ := newTestService(t, md, 0, 0)
	if hr, body := do(t, v1, get("/latest/meta-data/instance-id", "")); hr.StatusCode != 200 || body != md.InstanceID {
		t.Errorf("IMDSv1: %d %q", hr.StatusCode, body)
	}
	if hr, _ := do(t, v1, get("/latest/meta-data/instance-id", "garbage")); hr.StatusCode != 401 {
		t.Errorf("IMDSv1 with a bad token: %d", hr.StatusCode)
	}
}

// The tree, as EC2 lays it out.
func TestTree(t *testing.T) {
	s, _ := newTestService(t, testMetadata(), 0, 0)
	tok := newToken(t, s, "21600")
	m := "/latest/meta-data/"
	mac := guestMAC.String()
	for path, want := range map[string]string{
		"/":                            "latest",
		"/latest":                      "dynamic\nmeta-data\nuser-data",
		"/latest/":                     "dynamic\nmeta-data\nuser-data",
		m:                              "ami-id\nhostname\niam/\ninstance-id\ninstance-type\nlocal-hostname\nlocal-ipv4\nmac\nnetwork/\nplacement/\npublic-keys/\nsecurity-groups",
		m + "ami-id":                   "ami-busybox",
		m + "instance-id":              "i-0123456789abcdef0",
		m + "instance-id/":             "i-0123456789abcdef0",
		m + "instance-type":            "azote.2c.1024m",
		m + "hostname":                 "ip-10-0-1-5",
		m + "local-hostname":           "ip-10-0-1-5",
		m + "local-ipv4":               "10.0.1.5",
		m + "mac":                      mac,
		m + "security-groups":          "default\nweb",
		m + "placement/":               "availability-zone\nregion",
		m + "placement/region":         "local",
		m + "network/":                 "interfaces/",
		m + "network/interfaces":       "macs/",
		m + "network/interfaces/macs/": mac + "/",
		m + "network/interfaces/macs/" + mac + "/":                       "device-number\ninterface-id\nlocal-ipv4s\nmac\nsecurity-group-ids\nsecurity-groups\nsubnet-id\nsubnet-ipv4-cidr-block\nvpc-id\nvpc-ipv4-cidr-block\nvpc-ipv4-cidr-blocks",
		m + "network/interfaces/macs/" + mac + "/device-number":          "0",
		m + "network/interfaces/macs/" + mac + "/interface-id":           "eni-1",
		m + "network/interfaces/macs/" + mac + "/local-ipv4s":            "10.0.1.5",
		m + "network/interfaces/macs/" + mac + "/subnet-ipv4-cidr-block": "10.0.1.0/24",
		m + "network/interfaces/macs/" + mac + "/vpc-ipv4-cidr-blocks":   "10.0.0.0/16",
		m + "network/interfaces/macs/" + mac + "/security-group-ids":     "sg-1\nsg-2",
		m + "public-keys/":                            "0=alice",
		m + "public-keys/0/":                          "openssh-key",
		m + "public-keys/0/openssh-key":               "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice",
		m + "iam/":                                    "info\nsecurity-credentials/",
		m + "iam/security-credentials/":               "app-role",
		"/latest/dynamic/":                            "instance-identity/",
		"/latest/dynamic/instance-identity/":          "document\nsignature",
		"/latest/dynamic/instance-identity/document":  `{"instanceId":"i-0123456789abcdef0"}`,
		"/latest/dynamic/instance-identity/signature": "c2lnbmF0dXJl",
		"/latest/user-data":                           "#!/bin/sh\necho hi\n",
		"/latest/user-data?x=1":                       "#!/bin/sh\necho hi\n",
	} {
		hr, body := do(t, s, get(path, tok))
		if hr.StatusCode != 200 || body != want {
			t.Errorf("%s: %d %q, want %q", path, hr.StatusCode, body, want)
		}
	}

	hr, body := do(t, s, get(m+"iam/security-credentials/app-role", tok))
	var creds struct{ Code, LastUpdated, Type, AccessKeyId, SecretAccessKey, Token, Expiration string }
	if err := json.Unmarshal([]byte(body), &creds); hr.StatusCode != 200 || err != nil {
		t.Fatalf("credentials: %d %v", hr.StatusCode, err)
	}
	if creds.Code != "Success" || creds.Type != "AWS-HMAC" || creds.AccessKeyId != "ASIA1" || creds.SecretAccessKey != "secret" ||
		creds.Token != "session" || creds.Expiration != "2030-01-01T06:00:00Z" || creds.LastUpdated != "2030-01-01T00:00:00Z" {
		t.Errorf("credentials: %+v", creds)
	}
	_, body = do(t, s, get(m+"iam/info", tok))
	var info struct{ Code, LastUpdated, InstanceProfileArn, InstanceProfileId string }
	if err := json.Unmarshal([]byte(body), &info); err != nil || info.Code != "Success" ||
		info.InstanceProfileArn != "arn:aws:iam::123456789012:instance-profile/app" || info.InstanceProfileId != "AIPA1" {
		t.Errorf("iam/info: %q", body)
	}

	// Not there: 404 with EC2's page.
	for _, path := range []string{m + "nothing", m + "iam/security-credentials/other", "/latest/meta-data//instance-id",
		"/latest/meta-data/../meta-data/instance-id", "/2009-04-04/meta-data/", "/latest/meta-data/instance-id/x"} {
		hr, body := do(t, s, get(path, tok))
		if hr.StatusCode != 404 || !strings.Contains(body, "<h1>404 - Not Found</h1>") || hr.Header.Get("Content-Type") != "text/html" {
			t.Errorf("%s: %d %q", path, hr.StatusCode, body)
		}
	}

	// Without a role, no iam/; without user data, 404.
	md := testMetadata()
	md.Role, md.UserData, md.PublicKeys = nil, nil, nil
	bare, _ := newTestService(t, md, 0, 0)
	tok = newToken(t, bare, "60")
	for _, path := range []string{m + "iam/", m + "iam/info", "/latest/user-data", m + "public-keys/"} {
		if hr, _ := do(t, bare, get(path, tok)); hr.StatusCode != 404 {
			t.Errorf("%s without it: %d", path, hr.StatusCode)
		}
	}
	if _, body := do(t, bare, get(m, tok)); strings.Contains(body, "iam/") {
		t.Errorf("meta-data/ lists iam/ without a role: %q", body)
	}

	// HEAD: the headers of a GET, no body.
	req, _, err := ParseRequest([]byte("HEAD /latest/meta-data/instance-id HTTP/1.1\r\nX-aws-ec2-metadata-token: " + tok + "\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp := bare.Serve(bare.Data(), &req)
	if out := string(AppendResponse(nil, &resp, false, time.Now())); resp.Status != 200 || !strings.HasSuffix(out, "\r\n\r\n") ||
		!strings.Contains(out, "Content-Length: 19\r\n") {
		t.Errorf("HEAD: %q", out)
	}
}

// Compile refuses what azoted should never send, rather than serve it.
func TestCompileRefuses(t *testing.T) {
	for name, f := range map[string]func(*cardproto.NetMetadata){
		"http tokens":  func(m *cardproto.NetMetadata) { m.HTTPTokens = "sometimes" },
		"hop limit 0-": func(m *cardproto.NetMetadata) { m.HopLimit = -1 },
		"hop limit 65": func(m *cardproto.NetMetadata) { m.HopLimit = 65 },
		"user data":    func(m *cardproto.NetMetadata) { m.UserData = make([]byte, MaxUserData+1) },
		"role name":    func(m *cardproto.NetMetadata) { m.Role.RoleName = "../x" },
		"mac":          func(m *cardproto.NetMetadata) { m.Interfaces[0].MAC = "a/b" },
		"key name":     func(m *cardproto.NetMetadata) { m.PublicKeys[0].Name = "a\nb" },
	} {
		md := testMetadata()
		f(md)
		if _, err := Compile(md, guestMAC.String(), guestIP); err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
	md := testMetadata()
	md.HopLimit = 3
	if d, err := Compile(md, guestMAC.String(), guestIP); err != nil || d.TTL != 3 {
		t.Errorf("hop limit 3: %v", err)
	}
	if d, _ := Compile(testMetadata(), guestMAC.String(), guestIP); d.TTL != 1 || d.Optional {
		t.Errorf("defaults: TTL %d, optional %v", d.TTL, d.Optional)
	}
}

// The throttle: a burst, then 429 until the bucket refills, counted.
func TestThrottle(t *testing.T) {
	s, clk := newTestService(t, testMetadata(), 10, 5)
	tok := newToken(t, s, "60") // takes one
	for i := range 4 {
		if hr, _ := do(t, s, get("/latest/meta-data/instance-id", tok)); hr.StatusCode != 200 {
			t.Fatalf("request %d of the burst: %d", i, hr.StatusCode)
		}
	}
	if hr, body := do(t, s, get("/latest/meta-data/instance-id", tok)); hr.StatusCode != 429 || !strings.Contains(body, "429 - Too Many Requests") {
		t.Fatalf("over the burst: %d", hr.StatusCode)
	}
	clk.add(100 * time.Millisecond) // one more at 10/s
	if hr, _ := do(t, s, get("/latest/meta-data/instance-id", tok)); hr.StatusCode != 200 {
		t.Fatalf("after a refill: %d", hr.StatusCode)
	}
	if hr, _ := do(t, s, get("/latest/meta-data/instance-id", tok)); hr.StatusCode != 429 {
		t.Fatalf("again over: %d", hr.StatusCode)
	}
	c := s.Counts()
	if c[Throttled] != 2 || c[OK] != 6 {
		t.Errorf("counts %v", c)
	}
}

// ParseRequest: bounds and malformed requests are errors, never a panic;
// a partial request asks for more.
func TestParseRequest(t *testing.T) {
	for raw, want := range map[string]error{
		"GET / HTTP/1.1\r\n":                                                                   ErrIncomplete,
		"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab":                                        ErrIncomplete,
		"GET / HTTP/2\r\n\r\n":                                                                 ErrMalformed,
		"GET http://x/ HTTP/1.1\r\n\r\n":                                                       ErrMalformed,
		"GET  / HTTP/1.1\r\n\r\n":                                                              ErrMalformed,
		"GET / HTTP/1.1\r\nNoColon\r\n\r\n":                                                    ErrMalformed,
		"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n":                                                ErrMalformed,
		"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n":                                                  ErrMalformed,
		"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n":                                         ErrMalformed,
		"GET / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n":                                      ErrTooLarge,
		"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n":                                 ErrMalformed,
		"GET / HTTP/1.1\r\nX-aws-ec2-metadata-token: a\r\nX-aws-ec2-metadata-token: b\r\n\r\n": ErrMalformed,
		"GET / HTTP/1.1\r\nX: " + strings.Repeat("a", MaxHeader) + "\r\n\r\n":                  ErrTooLarge,
		"GET / HTTP/1.1\r\n" + strings.Repeat("X: a\r\n", maxHeaders+1) + "\r\n":               ErrTooLarge,
		strings.Repeat("a", MaxHeader):                                                         ErrTooLarge,
	} {
		if _, _, err := ParseRequest([]byte(raw)); !errors.Is(err, want) {
			t.Errorf("%.60q: %v, want %v", raw, err, want)
		}
	}
	r, n, err := ParseRequest([]byte("GET /a?b HTTP/1.0\nX-aws-ec2-metadata-token: t\n\nGET /next"))
	if err != nil || r.Path != "/a" || !r.Close || r.Token != "t" || n != len("GET /a?b HTTP/1.0\nX-aws-ec2-metadata-token: t\n\n") {
		t.Errorf("bare LFs, HTTP/1.0: %+v %d %v", r, n, err)
	}
	r, _, _ = ParseRequest([]byte("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
	if r.Close {
		t.Error("HTTP/1.0 with keep-alive closes")
	}
	r, _, _ = ParseRequest([]byte("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"))
	if !r.Close {
		t.Error("Connection: close does not close")
	}
	// A body is taken whole (and ignored).
	raw := "PUT /latest/api/token HTTP/1.1\r\nContent-Length: 3\r\nX-aws-ec2-metadata-token-ttl-seconds: 5\r\n\r\nabc"
	if _, n, err := ParseRequest([]byte(raw + "GET")); err != nil || n != len(raw) {
		t.Errorf("body: %d %v", n, err)
	}
}
