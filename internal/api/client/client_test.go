package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/sigv4"
)

// The client signs with the AWS SDK's signer; azoted's verifier accepts
// what it signs: JSON bodies covered by the signature, blobs sent
// UNSIGNED-PAYLOAD, session tokens signed; and it sends its User-Agent.
func TestSignedRequestsVerify(t *testing.T) {
	v := &sigv4.Verifier{Region: "local", Service: api.Service}
	keys := func(akid, token string) (sigv4.Key, error) {
		if akid != "AKIATEST" {
			return sigv4.Key{}, sigv4.ErrUnknownKey
		}
		return sigv4.Key{Secret: "secret", Active: true}, nil
	}
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(body)
		payload := hex.EncodeToString(sum[:])
		if r.Header.Get("X-Amz-Content-Sha256") == sigv4.UnsignedPayload {
			payload = sigv4.UnsignedPayload
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		ver, err := v.Verify(r, payload, keys)
		mu.Lock()
		seen = append(seen, r.URL.Path+" "+r.UserAgent())
		mu.Unlock()
		if err != nil {
			w.WriteHeader(403)
			w.Write([]byte(`{"Code":"SignatureDoesNotMatch","Message":"` + strings.ReplaceAll(err.Error(), `"`, `'`) + `"}`))
			return
		}
		w.Write([]byte(`{"Token":"` + ver.Token + `"}`))
	}))
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c, err := NewNetwork(srv.URL, ca, sigv4.Credentials{AccessKeyID: "AKIATEST", SecretAccessKey: "secret", SessionToken: "tok"}, "local")
	if err != nil {
		t.Fatal(err)
	}
	c.SetUserAgent("azote-cli/test")
	var out struct{ Token string }
	if err := c.Call(context.Background(), "iam:ListUsers", map[string]string{"a": "b"}, &out); err != nil {
		t.Fatal(err)
	}
	if out.Token != "tok" {
		t.Errorf("session token %q", out.Token)
	}
	// A second identical call in the same second is a new request.
	if err := c.Call(context.Background(), "iam:ListUsers", map[string]string{"a": "b"}, &out); err != nil {
		t.Fatal(err)
	}
	if err := c.PutBlob(context.Background(), strings.Repeat("0", 96), []byte("blob")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	for _, s := range seen {
		if !strings.HasSuffix(s, " azote-cli/test") {
			t.Errorf("request %q: want User-Agent azote-cli/test", s)
		}
	}
	mu.Unlock()
	// A wrong secret is refused by the verifier.
	bad, _ := NewNetwork(srv.URL, ca, sigv4.Credentials{AccessKeyID: "AKIATEST", SecretAccessKey: "wrong"}, "local")
	if err := bad.Call(context.Background(), "iam:ListUsers", nil, nil); !api.IsCode(err, "SignatureDoesNotMatch") {
		t.Errorf("wrong secret: %v", err)
	}
}
