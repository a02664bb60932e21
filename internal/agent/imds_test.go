package agent

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeIMDS answers as IMDSv2 does: a token from PUT /latest/api/token
// (TTL header required), and GETs only with that token.
type fakeIMDS struct {
	values map[string]string
	tokens atomic.Int32
	gets   atomic.Int32
}

func (f *fakeIMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const tok = "tok-123"
	if r.URL.Path == "/latest/api/token" {
		if r.Method != http.MethodPut || r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
			http.Error(w, "", http.StatusBadRequest)
			return
		}
		f.tokens.Add(1)
		w.Write([]byte(tok))
		return
	}
	if r.Header.Get("X-aws-ec2-metadata-token") != tok {
		http.Error(w, "", http.StatusUnauthorized)
		return
	}
	f.gets.Add(1)
	v, ok := f.values[strings.TrimPrefix(r.URL.Path, "/latest/")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write([]byte(v))
}

func TestIMDSTokenAndGet(t *testing.T) {
	f := &fakeIMDS{values: map[string]string{"meta-data/hostname": "ip-10-0-1-10.azote.internal"}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := NewIMDS(srv.URL, 2*time.Second)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		b, err := c.Get(ctx, "meta-data/hostname")
		if err != nil || string(b) != "ip-10-0-1-10.azote.internal" {
			t.Fatalf("Get: %q %v", b, err)
		}
	}
	if n := f.tokens.Load(); n != 1 {
		t.Errorf("%d token requests for 3 GETs; want the token reused", n)
	}
	if _, err := c.Get(ctx, "meta-data/nothing"); !errors.Is(err, ErrIMDSNotFound) {
		t.Errorf("missing path: %v, want ErrIMDSNotFound", err)
	}
	c.TokenTTL = 0
	c.token = ""
	if _, err := c.Get(ctx, "meta-data/hostname"); err == nil {
		t.Error("a token lifetime of 0 was sent")
	}
}

func TestIMDSUnreachableIsFast(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A service that never answers in time.
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer srv.Close()
	c := NewIMDS(srv.URL, 300*time.Millisecond)
	start := time.Now()
	var out bytes.Buffer
	err := AuthorizedKeys(context.Background(), c, "admin", "admin", &out)
	if err == nil || time.Since(start) > 2*time.Second || out.Len() != 0 {
		t.Fatalf("AuthorizedKeys against a silent service: err %v after %v, wrote %q", err, time.Since(start), out.String())
	}
}

func TestAuthorizedKeys(t *testing.T) {
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6b my-key"
	f := &fakeIMDS{values: map[string]string{
		"meta-data/public-keys/0/openssh-key": key + "\ncommand=\"/bin/sh\" ssh-ed25519 AAAAevil\n",
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := NewIMDS(srv.URL, 2*time.Second)
	for _, tc := range []struct{ user, want string }{
		{"admin", key + "\n"}, // the option line is dropped
		{"root", ""},
		{"nobody", ""},
	} {
		var out bytes.Buffer
		if err := AuthorizedKeys(context.Background(), c, tc.user, "admin", &out); err != nil || out.String() != tc.want {
			t.Errorf("user %s: %q %v, want %q", tc.user, out.String(), err, tc.want)
		}
	}
	// No key pair: nothing, and no error (sshd then denies the key).
	delete(f.values, "meta-data/public-keys/0/openssh-key")
	var out bytes.Buffer
	if err := AuthorizedKeys(context.Background(), c, "admin", "admin", &out); err != nil || out.Len() != 0 {
		t.Errorf("no key: %q %v", out.String(), err)
	}
}

func TestConfiguredSSHUser(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ssh-user")
	if u := ConfiguredSSHUser(p); u != DefaultSSHUser {
		t.Errorf("without the file: %q", u)
	}
	os.WriteFile(p, []byte("debian\n"), 0o644)
	if u := ConfiguredSSHUser(p); u != "debian" {
		t.Errorf("with the file: %q", u)
	}
}
