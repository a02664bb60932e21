package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/keypairs"
	"github.com/azote/azote/internal/controller/refusal"
)

// keyStub answers the key pair routes: refs starting "nope" name
// nothing; a create returns a private key the trail must never see.
type keyStub struct {
	stubBackend
	mu    sync.Mutex
	calls []string
}

const stubPrivateKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LXByaXZhdGUta2V5\n-----END OPENSSH PRIVATE KEY-----\n"

func (s *keyStub) called(c string) {
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.mu.Unlock()
}
func (s *keyStub) ResolveID(_ context.Context, _, ref string) (string, map[string]string, bool) {
	return ref, nil, !strings.HasPrefix(ref, "nope")
}
func (s *keyStub) ImportKeyPair(_ context.Context, r api.ImportKeyPairRequest) (api.KeyPair, error) {
	s.called("import " + r.KeyName)
	if _, err := keypairs.ParsePublicKey(r.PublicKeyMaterial); err != nil {
		return api.KeyPair{}, err
	}
	return api.KeyPair{ID: "key-new", KeyName: r.KeyName}, nil
}
func (s *keyStub) CreateKeyPair(_ context.Context, r api.CreateKeyPairRequest) (api.CreateKeyPairResponse, error) {
	s.called("create " + r.KeyName)
	if r.KeyName == "taken" {
		return api.CreateKeyPairResponse{}, refusal.New(refusal.ErrNameInUse, "a key pair named %q exists", r.KeyName)
	}
	return api.CreateKeyPairResponse{KeyPair: api.KeyPair{ID: "key-new", KeyName: r.KeyName, KeyType: "ed25519"}, KeyMaterial: stubPrivateKey}, nil
}
func (s *keyStub) DeleteKeyPair(_ context.Context, id string) (api.KeyPair, error) {
	s.called("delete " + id)
	return api.KeyPair{ID: id}, nil
}
func (s *keyStub) InstanceUserData(_ context.Context, id string) (api.UserDataResponse, error) {
	s.called("user-data " + id)
	return api.UserDataResponse{InstanceID: id, UserData: []byte("#!/bin/sh\n")}, nil
}
func (s *keyStub) IdentityKey(context.Context) ([]byte, error) {
	return []byte("-----BEGIN PUBLIC KEY-----\nMFk=\n-----END PUBLIC KEY-----\n"), nil
}
func (s *keyStub) RunInstance(_ context.Context, r api.RunInstanceRequest) (api.Instance, error) {
	s.called("run " + r.KeyName)
	return api.Instance{ID: "i-new"}, nil
}

// The key pair routes are authorised on the pair (a launch on its pair
// too, for compute:RunInstances), audited, and bad keys are refused with
// their codes; no private key and no user data reaches the trail.
func TestKeyPairsAuthorisedAndAudited(t *testing.T) {
	arn := func(r string) string { return "arn:azote:compute::123456789012:" + r }
	ed := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb0a8WbVGDJkVZs9RmvXxDAcPAl/JDYwmSvCyAOmKyN me"
	userData := base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\necho s3cr3t-user-data\n"))
	for _, c := range []struct {
		method, path, body string
		want               int
		code               api.Code
		event              string
		asked              []string
		call               string
	}{
		{"POST", "/v1/key-pairs/import", `{"key_name":"me","public_key_material":"` + ed + `"}`, 200, "", "ImportKeyPair",
			[]string{"compute:ImportKeyPair key-pair/*"}, "import me"},
		{"POST", "/v1/key-pairs/import", `{"key_name":"me","public_key_material":"ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGSNLs5gf/WZfnesXUR7qPK2hHSCRNx2Um2ekvaVNeh/Qy4mfEd87p+qASnIEmT5onp13qohUrV5XgrIH2DM/3Y="}`,
			400, api.CodeUnsupportedKeyType, "ImportKeyPair", []string{"compute:ImportKeyPair key-pair/*"}, "import me"},
		{"POST", "/v1/key-pairs/import", `{"key_name":"me","public_key_material":"hello"}`, 400, api.CodeInvalidKeyFormat, "ImportKeyPair",
			[]string{"compute:ImportKeyPair key-pair/*"}, "import me"},
		{"POST", "/v1/key-pairs/import", `{"key_name":"me","extra":1}`, 400, api.CodeMalformedRequest, "ImportKeyPair",
			[]string{"compute:ImportKeyPair key-pair/*"}, ""},
		{"POST", "/v1/key-pairs", `{"key_name":"new"}`, 200, "", "CreateKeyPair", []string{"compute:CreateKeyPair key-pair/*"}, "create new"},
		{"POST", "/v1/key-pairs", `{"key_name":"taken"}`, 409, api.CodeNameInUse, "CreateKeyPair", []string{"compute:CreateKeyPair key-pair/*"}, "create taken"},
		{"DELETE", "/v1/key-pairs/key-theirs", ``, 403, api.CodeAccessDenied, "DeleteKeyPair", []string{"compute:DeleteKeyPair key-pair/key-theirs"}, ""},
		{"DELETE", "/v1/key-pairs/nope", ``, 404, api.CodeKeyPairNotFound, "DeleteKeyPair", []string{"compute:DeleteKeyPair key-pair/nope"}, ""},
		{"DELETE", "/v1/key-pairs/key-mine", ``, 200, "", "DeleteKeyPair", []string{"compute:DeleteKeyPair key-pair/key-mine"}, "delete key-mine"},
		{"GET", "/v1/instances/i-mine/user-data", ``, 200, "", "DescribeInstanceAttribute",
			[]string{"compute:DescribeInstanceAttribute instance/i-mine"}, "user-data i-mine"},
		{"GET", "/v1/host/identity-key", ``, 200, "", "DescribeHost", []string{"compute:DescribeHost host/local"}, ""},
		{"POST", "/v1/instances", `{"name":"x","vcpus":1,"key_name":"key-theirs","user_data":"` + userData + `"}`, 403, api.CodeAccessDenied, "RunInstances",
			[]string{"compute:RunInstances instance/*", "compute:RunInstances key-pair/key-theirs"}, ""},
		{"POST", "/v1/instances", `{"name":"x","vcpus":1,"key_name":"nope-key","user_data":"` + userData + `"}`, 404, api.CodeKeyPairNotFound, "RunInstances",
			[]string{"compute:RunInstances instance/*", "compute:RunInstances key-pair/nope-key"}, ""},
		{"POST", "/v1/instances", `{"name":"x","vcpus":1,"key_name":"key-mine","user_data":"` + userData + `"}`, 200, "", "RunInstances",
			[]string{"compute:RunInstances instance/*", "compute:RunInstances key-pair/key-mine"}, "run key-mine"},
	} {
		trail := &memTrail{}
		b := &keyStub{}
		auth := &decisions{denied: map[string]bool{arn("key-pair/key-theirs"): true}}
		h := localHandler(b, auth, trail)
		code, out := do(t, h, c.method, c.path, []byte(c.body))
		name := c.method + " " + c.path + " " + c.body
		if code != c.want {
			t.Errorf("%s: %d %s, want %d", name, code, out, c.want)
			continue
		}
		if c.code != "" {
			var e api.Error
			if json.Unmarshal(out, &e); e.Code != c.code {
				t.Errorf("%s: %s, want %s", name, out, c.code)
			}
		}
		if !slices.Equal(auth.asked, c.asked) {
			t.Errorf("%s: asked\n %q\nwant\n %q", name, auth.asked, c.asked)
		}
		var wantCalls []string
		if c.call != "" {
			wantCalls = []string{c.call}
		}
		if !slices.Equal(b.calls, wantCalls) {
			t.Errorf("%s: backend handed %q, want %q", name, b.calls, wantCalls)
		}
		if len(trail.recs) != 1 {
			t.Errorf("%s: %d records", name, len(trail.recs))
			continue
		}
		rec := trail.last()
		if rec.EventName != c.event || rec.EventSource != "compute.azote" || rec.ErrorCode != string(c.code) {
			t.Errorf("%s: audited as %s/%s %q", name, rec.EventSource, rec.EventName, rec.ErrorCode)
		}
		raw, _ := json.Marshal(rec)
		for _, secret := range []string{"c2VjcmV0LXByaXZhdGUta2V5", "PRIVATE KEY", userData, "s3cr3t-user-data"} {
			if strings.Contains(string(raw), secret) {
				t.Errorf("%s: the audit record holds %q: %s", name, secret, raw)
			}
		}
		if strings.Contains(c.body, "user_data") && !strings.Contains(string(raw), `"sha256"`) {
			t.Errorf("%s: the audit record lacks the user data's digest: %s", name, raw)
		}
		if c.path == "/v1/key-pairs" && code == 200 {
			if !strings.Contains(string(out), "c2VjcmV0LXByaXZhdGUta2V5") {
				t.Errorf("the caller did not get the private key: %s", out)
			}
			if rec.ResponseElements["id"] != "key-new" {
				t.Errorf("response elements %v", rec.ResponseElements)
			}
		}
		if c.path == "/v1/host/identity-key" && !strings.HasPrefix(string(out), "-----BEGIN PUBLIC KEY-----") {
			t.Errorf("identity key: %s", out)
		}
	}
}
