package sigv4

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// AWS's documented example: IAM ListUsers, signed 2015-08-30T12:36:00Z.
const (
	exampleSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	exampleSig    = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
)

var exampleTime = time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)

func exampleRequest(t *testing.T) *http.Request {
	r, err := http.NewRequest("GET", "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	return r
}

func TestAWSExampleVector(t *testing.T) {
	r := exampleRequest(t)
	Sign(r, EmptyPayloadHash, Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: exampleSecret}, "us-east-1", "iam", exampleTime)
	want := "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=" + exampleSig
	if got := r.Header.Get("Authorization"); got != want {
		t.Fatalf("Authorization\n got %s\nwant %s", got, want)
	}
	v := &Verifier{Region: "us-east-1", Service: "iam", Now: func() time.Time { return exampleTime.Add(time.Minute) }}
	if _, err := v.Verify(r, EmptyPayloadHash, staticKey("AKIDEXAMPLE", exampleSecret)); err != nil {
		t.Fatalf("the documented request does not verify: %v", err)
	}
}

func staticKey(id, secret string) KeyFunc {
	return func(akid, token string) (Key, error) {
		if akid != id {
			return Key{}, ErrUnknownKey
		}
		return Key{Secret: secret, Active: true}, nil
	}
}

// sdkSign signs r with the aws-sdk-go-v2 signer.
func sdkSign(t *testing.T, r *http.Request, body []byte, c Credentials, region, service string, at time.Time) {
	t.Helper()
	s := v4.NewSigner()
	err := s.SignHTTP(context.Background(), aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken},
		r, HashPayload(body), service, region, at)
	if err != nil {
		t.Fatal(err)
	}
}

func newReq(t *testing.T, method, url string, body []byte) *http.Request {
	r, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(body) > 0 {
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("Amz-Sdk-Invocation-Id", "6f1e3a4c-0000-4000-8000-"+strings.Repeat("a", 12))
	return r
}

func TestSDKRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	creds := Credentials{AccessKeyID: "AKIAAZOTETEST0000001", SecretAccessKey: "s3cr3t/with+chars", SessionToken: "tok"}
	cases := []struct {
		method, url string
		body        []byte
	}{
		{"GET", "https://127.0.0.1:8443/v1/instances", nil},
		{"GET", "https://127.0.0.1:8443/v1/audit/events?principal=arn%3Aazote%3Aiam%3A%3A1%3Auser%2Fa&limit=5&b=2&b=1", nil},
		{"POST", "https://host.example:8443/v1/instances", []byte(`{"name":"web","vcpus":1}`)},
		{"DELETE", "https://[::1]:8443/v1/volumes/vol%20x?now=1", nil},
		{"PUT", "https://h/v1/iam/users/a%2Bb/policies/p~1", []byte(`{}`)},
	}
	for _, c := range cases {
		for _, sdkSigns := range []bool{true, false} {
			r := newReq(t, c.method, c.url, c.body)
			r.Header.Set("X-Custom", "  a   b  ")
			if sdkSigns {
				sdkSign(t, r, c.body, creds, "local", "azote", now)
			} else {
				Sign(r, HashPayload(c.body), creds, "local", "azote", now)
			}
			// What the server sees after the request crossed the wire.
			sr := serverView(t, r)
			v := &Verifier{Region: "local", Service: "azote", Now: func() time.Time { return now }}
			keys := func(akid, token string) (Key, error) {
				if akid != creds.AccessKeyID || token != creds.SessionToken {
					return Key{}, ErrUnknownKey
				}
				return Key{Secret: creds.SecretAccessKey, Active: true}, nil
			}
			if _, err := v.Verify(sr, HashPayload(c.body), keys); err != nil {
				t.Errorf("%s %s (sdk=%v): %v", c.method, c.url, sdkSigns, err)
			}
			// Both signers agree on the signature.
			if !sdkSigns {
				r2 := newReq(t, c.method, c.url, c.body)
				r2.Header.Set("X-Custom", "  a   b  ")
				sdkSign(t, r2, c.body, creds, "local", "azote", now)
				if r2.Header.Get("Authorization") != r.Header.Get("Authorization") {
					t.Errorf("%s %s: ours\n%s\nsdk\n%s", c.method, c.url, r.Header.Get("Authorization"), r2.Header.Get("Authorization"))
				}
			}
		}
	}
}

// serverView serialises r and reads it back as net/http's server would.
func serverView(t *testing.T, r *http.Request) *http.Request {
	t.Helper()
	var buf bytes.Buffer
	if err := r.Write(&buf); err != nil {
		t.Fatal(err)
	}
	sr, err := http.ReadRequest(bufioReader(&buf))
	if err != nil {
		t.Fatal(err)
	}
	return sr
}

func TestRejections(t *testing.T) {
	now := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	creds := Credentials{AccessKeyID: "AKIAAZOTETEST0000001", SecretAccessKey: "secret"}
	body := []byte(`{"name":"x"}`)
	signed := func(mut func(*http.Request), at time.Time) *http.Request {
		r := newReq(t, "POST", "https://h:8443/v1/instances", body)
		Sign(r, HashPayload(body), creds, "local", "azote", at)
		if mut != nil {
			mut(r)
		}
		return serverView(t, r)
	}
	keys := staticKey(creds.AccessKeyID, creds.SecretAccessKey)
	cases := []struct {
		name string
		r    *http.Request
		body []byte
		keys KeyFunc
		want error
	}{
		{"unsigned", func() *http.Request { r := newReq(t, "GET", "https://h/v1/instances", nil); return serverView(t, r) }(), nil, keys, ErrMissingAuth},
		{"bad signature", signed(func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "Signature=", "Signature=0", 1)[:len(r.Header.Get("Authorization"))])
		}, now), body, keys, ErrSignatureMismatch},
		{"body changed", signed(nil, now), []byte(`{"name":"y"}`), keys, ErrSignatureMismatch},
		{"header changed", signed(func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") }, now), body, keys, ErrSignatureMismatch},
		{"path changed", signed(func(r *http.Request) { r.URL.Path = "/v1/volumes" }, now), body, keys, ErrSignatureMismatch},
		{"unknown key", signed(nil, now), body, staticKey("AKIAOTHER", "secret"), ErrUnknownKey},
		{"inactive key", signed(nil, now), body, func(string, string) (Key, error) { return Key{Secret: "secret"}, nil }, ErrInactiveKey},
		{"wrong secret", signed(nil, now), body, staticKey(creds.AccessKeyID, "other"), ErrSignatureMismatch},
		{"too old", signed(nil, now.Add(-6*time.Minute)), body, keys, ErrSkew},
		{"from the future", signed(nil, now.Add(6*time.Minute)), body, keys, ErrSkew},
		{"host unsigned", signed(func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "SignedHeaders=amz-sdk-invocation-id;content-length;content-type;host;x-amz-date", "SignedHeaders=amz-sdk-invocation-id;content-length;content-type;x-amz-date", 1))
		}, now), body, keys, ErrIncomplete},
		{"date unsigned", signed(func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), ";x-amz-date", "", 1))
		}, now), body, keys, ErrIncomplete},
		{"no x-amz-date", signed(func(r *http.Request) { r.Header.Del("X-Amz-Date") }, now), body, keys, ErrIncomplete},
		{"wrong region", func() *http.Request {
			r := newReq(t, "POST", "https://h:8443/v1/instances", body)
			Sign(r, HashPayload(body), creds, "us-east-1", "azote", now)
			return serverView(t, r)
		}(), body, keys, ErrIncomplete},
		{"wrong service", func() *http.Request {
			r := newReq(t, "POST", "https://h:8443/v1/instances", body)
			Sign(r, HashPayload(body), creds, "local", "kms", now)
			return serverView(t, r)
		}(), body, keys, ErrIncomplete},
		{"content sha mismatch", signed(func(r *http.Request) { r.Header.Set("X-Amz-Content-Sha256", EmptyPayloadHash) }, now), body, keys, ErrSignatureMismatch},
		{"token not signed", signed(func(r *http.Request) { r.Header.Set("X-Amz-Security-Token", "t") }, now), body, keys, ErrIncomplete},
	}
	for _, c := range cases {
		v := &Verifier{Region: "local", Service: "azote", Now: func() time.Time { return now }}
		_, err := v.Verify(c.r, HashPayload(c.body), c.keys)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestReplay(t *testing.T) {
	now := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	clock := now
	creds := Credentials{AccessKeyID: "AKIAAZOTETEST0000001", SecretAccessKey: "secret"}
	v := &Verifier{Region: "local", Service: "azote", Now: func() time.Time { return clock }}
	r := newReq(t, "GET", "https://h/v1/instances", nil)
	Sign(r, EmptyPayloadHash, creds, "local", "azote", now)
	keys := staticKey(creds.AccessKeyID, creds.SecretAccessKey)
	if _, err := v.Verify(serverView(t, r), EmptyPayloadHash, keys); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(serverView(t, r), EmptyPayloadHash, keys); !errors.Is(err, ErrReplay) {
		t.Fatalf("second copy: got %v, want replay", err)
	}
	// A different request id in the same second is a different request.
	r2 := newReq(t, "GET", "https://h/v1/instances", nil)
	r2.Header.Set("Amz-Sdk-Invocation-Id", "other")
	Sign(r2, EmptyPayloadHash, creds, "local", "azote", now)
	if _, err := v.Verify(serverView(t, r2), EmptyPayloadHash, keys); err != nil {
		t.Fatal(err)
	}
	// After the window the copy is refused for its age, and the cache
	// has let go of it.
	clock = now.Add(5*time.Minute + 2*time.Second)
	if _, err := v.Verify(serverView(t, r), EmptyPayloadHash, keys); !errors.Is(err, ErrSkew) {
		t.Fatalf("late copy: got %v, want skew", err)
	}
	r3 := newReq(t, "GET", "https://h/v1/instances", nil)
	Sign(r3, EmptyPayloadHash, creds, "local", "azote", clock)
	if _, err := v.Verify(serverView(t, r3), EmptyPayloadHash, keys); err != nil {
		t.Fatal(err)
	}
	if n := v.replay.len(); n != 1 {
		t.Fatalf("replay cache holds %d entries after the window, want 1", n)
	}
}

// TestNotBefore: after a restart the replay cache is empty, so requests
// signed before the verifier started are refused, compared at sub-second
// precision; later ones pass.
func TestNotBefore(t *testing.T) {
	start := time.Date(2026, 11, 27, 8, 0, 0, 500e6, time.UTC)
	now := start.Add(time.Minute)
	creds := Credentials{AccessKeyID: "AKIAAZOTETEST0000001", SecretAccessKey: "secret"}
	keys := staticKey(creds.AccessKeyID, creds.SecretAccessKey)
	v := &Verifier{Region: "local", Service: "azote", Now: func() time.Time { return now }, NotBefore: start}
	for _, c := range []struct {
		at time.Time
		ok bool
	}{
		{start.Add(-2 * time.Minute), false},
		{start.Add(-time.Second), false},
		// Dated the second the verifier started: signed either side of
		// the start, so a previous process may have accepted it.
		{start.Add(-100 * time.Millisecond), false},
		{start, false},
		{start.Add(400 * time.Millisecond), false},
		{start.Truncate(time.Second).Add(time.Second), true},
		{start.Add(30 * time.Second), true},
	} {
		r := newReq(t, "GET", "https://h/v1/instances", nil)
		r.Header.Set("Amz-Sdk-Invocation-Id", c.at.String()) // not a replay of the previous case
		Sign(r, EmptyPayloadHash, creds, "local", "azote", c.at)
		_, err := v.Verify(serverView(t, r), EmptyPayloadHash, keys)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrSkew)) {
			t.Errorf("signed %v after the start: %v, want ok=%v", c.at.Sub(start), err, c.ok)
		}
	}
}

func TestForgedRequestsDoNotFillReplayCache(t *testing.T) {
	now := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	v := &Verifier{Region: "local", Service: "azote", Now: func() time.Time { return now }, MaxReplayEntries: 4}
	keys := staticKey("AKIAAZOTETEST0000001", "secret")
	for i := 0; i < 20; i++ {
		r := newReq(t, "GET", "https://h/v1/instances", nil)
		r.Header.Set("Amz-Sdk-Invocation-Id", strings.Repeat("x", i+1))
		Sign(r, EmptyPayloadHash, Credentials{AccessKeyID: "AKIAAZOTETEST0000001", SecretAccessKey: "wrong"}, "local", "azote", now)
		if _, err := v.Verify(serverView(t, r), EmptyPayloadHash, keys); !errors.Is(err, ErrSignatureMismatch) {
			t.Fatal(err)
		}
	}
	r := newReq(t, "GET", "https://h/v1/instances", nil)
	Sign(r, EmptyPayloadHash, Credentials{AccessKeyID: "AKIAAZOTETEST0000001", SecretAccessKey: "secret"}, "local", "azote", now)
	if _, err := v.Verify(serverView(t, r), EmptyPayloadHash, keys); err != nil {
		t.Fatalf("a good request after forged ones: %v", err)
	}
}

func TestParseAuthorization(t *testing.T) {
	good := "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=" + exampleSig
	a, err := ParseAuthorization(good)
	if err != nil {
		t.Fatal(err)
	}
	if a.AccessKeyID != "AKID" || a.Region != "us-east-1" || a.Service != "iam" || len(a.SignedHeaders) != 3 {
		t.Fatalf("parsed %+v", a)
	}
	bad := []string{
		"",
		"AWS4-HMAC-SHA1 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=" + exampleSig,
		"AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam, SignedHeaders=host, Signature=" + exampleSig,
		"AWS4-HMAC-SHA256 Credential=AKID/2015083/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=" + exampleSig,
		"AWS4-HMAC-SHA256 Credential=/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=" + exampleSig,
		"AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=zz" + exampleSig[2:],
		"AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=" + exampleSig[1:],
		"AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=x-amz-date;host, Signature=" + exampleSig,
		"AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=Host, Signature=" + exampleSig,
		"AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=host;host, Signature=" + exampleSig,
		"AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, Signature=" + exampleSig,
		"AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, SignedHeaders=host, Signature=" + exampleSig,
		"AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=" + exampleSig + ", Extra=1",
		"AWS4-HMAC-SHA256 " + strings.Repeat("x", MaxAuthorizationLen),
	}
	for _, h := range bad {
		if _, err := ParseAuthorization(h); err == nil {
			t.Errorf("accepted %q", h)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	now := time.Now()
	creds := Credentials{AccessKeyID: "AKIAAZOTETEST0000001", SecretAccessKey: "secret"}
	v := &Verifier{Region: "local", Service: "azote", MaxReplayEntries: 1 << 30, MaxReplayPerKey: 1 << 30}
	keys := staticKey(creds.AccessKeyID, creds.SecretAccessKey)
	reqs := make([]*http.Request, b.N)
	for i := range reqs {
		r, _ := http.NewRequest("GET", "https://h/v1/instances", nil)
		r.Header.Set("Amz-Sdk-Invocation-Id", strings.Repeat("x", 8)+string(rune('a'+i%26))+time.Duration(i).String())
		Sign(r, EmptyPayloadHash, creds, "local", "azote", now)
		reqs[i] = r
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := v.Verify(reqs[i], EmptyPayloadHash, keys); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNoReplayAcrossRestartOfFutureDated: a request dated ahead of the
// host clock (within the skew) is accepted, and refused by the verifier of
// the next process, which starts before its date, through the mark the
// first one wrote for its key. Other keys are not held back, and the fast
// client's later requests pass.
func TestNoReplayAcrossRestartOfFutureDated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mark")
	creds := Credentials{AccessKeyID: "AKIAAZOTETEST0000001", SecretAccessKey: "secret"}
	other := Credentials{AccessKeyID: "AKIAAZOTETEST0000002", SecretAccessKey: "secret2"}
	keys := func(akid, token string) (Key, error) {
		switch akid {
		case creds.AccessKeyID:
			return Key{Secret: creds.SecretAccessKey, Active: true}, nil
		case other.AccessKeyID:
			return Key{Secret: other.SecretAccessKey, Active: true}, nil
		}
		return Key{}, ErrUnknownKey
	}
	start := time.Date(2026, 11, 27, 8, 0, 0, 500e6, time.UTC)
	now := start.Add(time.Minute)
	verifier := func(started time.Time) *Verifier {
		m, err := OpenMark(path)
		if err != nil {
			t.Fatal(err)
		}
		return &Verifier{Region: "local", Service: "azote", Now: func() time.Time { return now }, NotBefore: started, Mark: m}
	}
	signed := func(c Credentials, path string, at time.Time) *http.Request {
		r := newReq(t, "GET", "https://h"+path, nil)
		Sign(r, EmptyPayloadHash, c, "local", "azote", at)
		return r
	}
	ahead := now.Add(2 * time.Minute).Truncate(time.Second)
	r := signed(creds, "/v1/instances", ahead)
	v := verifier(start)
	if _, err := v.Verify(serverView(t, r), EmptyPayloadHash, keys); err != nil {
		t.Fatalf("dated 2 min ahead: %v", err)
	}
	// A second request from the same fast client, a second later: covered
	// by the mark already written.
	r2 := signed(creds, "/v1/volumes", ahead.Add(time.Second))
	if _, err := v.Verify(serverView(t, r2), EmptyPayloadHash, keys); err != nil {
		t.Fatalf("dated 2 min 1 s ahead: %v", err)
	}
	if _, err := v.Verify(serverView(t, r), EmptyPayloadHash, keys); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed to the same process: %v, want ErrReplay", err)
	}
	// Restart 10 s later: the new process starts well before the date.
	now = now.Add(10 * time.Second)
	v2 := verifier(now.Add(-100 * time.Millisecond))
	for _, req := range []*http.Request{r, r2} {
		if _, err := v2.Verify(serverView(t, req), EmptyPayloadHash, keys); !errors.Is(err, ErrSkew) {
			t.Errorf("replayed after a restart: %v, want ErrSkew", err)
		}
	}
	// Another key, with the host's time, is not held back.
	if _, err := v2.Verify(serverView(t, signed(other, "/v1/instances", now.Add(time.Second))), EmptyPayloadHash, keys); err != nil {
		t.Fatalf("another key after the restart: %v", err)
	}
	// The fast client's next request is dated 10 s after its last one,
	// past the mark (MarkMargin after it).
	if _, err := v2.Verify(serverView(t, signed(creds, "/v1/instances", ahead.Add(10*time.Second))), EmptyPayloadHash, keys); err != nil {
		t.Fatalf("the fast client's next request: %v", err)
	}
}

// TestMarkWrittenOnlyAhead: requests dated at or before the host clock
// write no mark (NotBefore covers them); one dated ahead writes its key's,
// which is rewritten only once a request passes it; marks that have passed
// the clock are dropped.
func TestMarkWrittenOnlyAhead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mark")
	m, err := OpenMark(path)
	if err != nil {
		t.Fatal(err)
	}
	creds := Credentials{AccessKeyID: "AKIAAZOTETEST0000001", SecretAccessKey: "secret"}
	keys := staticKey(creds.AccessKeyID, creds.SecretAccessKey)
	now := time.Date(2026, 11, 27, 8, 0, 0, 500e6, time.UTC)
	v := &Verifier{Region: "local", Service: "azote", Now: func() time.Time { return now }, Mark: m}
	sign := func(at time.Time, i int) error {
		r := newReq(t, "GET", "https://h/v1/instances", nil)
		r.Header.Set("Amz-Sdk-Invocation-Id", strconv.Itoa(i))
		Sign(r, EmptyPayloadHash, creds, "local", "azote", at)
		_, err := v.Verify(serverView(t, r), EmptyPayloadHash, keys)
		return err
	}
	for i, at := range []time.Time{now.Add(-time.Minute), now.Truncate(time.Second)} {
		if err := sign(at, i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("mark written for requests not ahead of the clock: %v", err)
	}
	read := func() string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ahead := now.Add(time.Second).Truncate(time.Second)
	if err := sign(ahead, 10); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%s %d\n", creds.AccessKeyID, ahead.Add(MarkMargin).Unix())
	if got := read(); got != want {
		t.Fatalf("mark %q, want %q", got, want)
	}
	os.Remove(path)
	if err := sign(ahead.Add(MarkMargin-time.Second), 11); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("mark rewritten for a request it covers: %v", err)
	}
	// Another key much later: the first key's mark has passed and goes.
	now = now.Add(time.Minute)
	v.Now = func() time.Time { return now }
	creds = Credentials{AccessKeyID: "AKIAAZOTETEST0000003", SecretAccessKey: "secret"}
	keys = staticKey(creds.AccessKeyID, creds.SecretAccessKey)
	if err := sign(now.Add(2*time.Second).Truncate(time.Second), 12); err != nil {
		t.Fatal(err)
	}
	if got, want := read(), fmt.Sprintf("%s %d\n", creds.AccessKeyID, now.Add(2*time.Second).Truncate(time.Second).Add(MarkMargin).Unix()); got != want {
		t.Fatalf("marks %q, want %q", got, want)
	}
	// A corrupt mark refuses to open rather than forget.
	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, err := OpenMark(path); err == nil {
		t.Fatal("a corrupt mark opened")
	}
}

// TestServices: an endpoint serving several services accepts each one's
// signing name, says which one a request used, and refuses the others.
func TestServices(t *testing.T) {
	now := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	creds := Credentials{AccessKeyID: "AKIAAZOTETEST0000001", SecretAccessKey: "secret"}
	keys := staticKey(creds.AccessKeyID, creds.SecretAccessKey)
	v := &Verifier{Region: "local", Services: []string{"azote", "kms"}, Now: func() time.Time { return now }}
	for i, c := range []struct {
		service string
		ok      bool
	}{{"azote", true}, {"kms", true}, {"iam", false}, {"", false}} {
		body := []byte(fmt.Sprintf(`{"n":%d}`, i))
		r := newReq(t, "POST", "https://h:8443/", body)
		Sign(r, HashPayload(body), creds, "local", c.service, now)
		got, err := v.Verify(serverView(t, r), HashPayload(body), keys)
		if c.ok && (err != nil || got.Auth.Service != c.service) {
			t.Errorf("service %q: %v, %+v", c.service, err, got)
		}
		if !c.ok && !errors.Is(err, ErrIncomplete) {
			t.Errorf("service %q: %v, want ErrIncomplete", c.service, err)
		}
	}
}
