package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
)

// The environment overrides a profile and the command line overrides the
// environment, as AWS defines it: AWS_CA_BUNDLE over ca_bundle,
// AWS_ENDPOINT_URL over endpoint_url, AWS_REGION (then AWS_DEFAULT_REGION)
// over region, --endpoint and --region over both. The test runs the CLI
// against an HTTPS server: a request arrives only if the endpoint and the
// CA chosen are the server's, and its signature names the region chosen.
func TestEnvironmentOverridesProfile(t *testing.T) {
	var mu sync.Mutex
	var region string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Credential=AKID/DATE/REGION/SERVICE/aws4_request
		_, cred, _ := strings.Cut(r.Header.Get("Authorization"), "Credential=")
		scope := strings.Split(cred, "/")
		mu.Lock()
		if len(scope) > 2 {
			region = scope[2]
		}
		mu.Unlock()
		json.NewEncoder(w).Encode(api.HostInfo{Version: "test"})
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	good := filepath.Join(dir, "server.pem")
	os.WriteFile(good, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	other := filepath.Join(dir, "other.pem")
	os.WriteFile(other, otherCA(t), 0o600)
	const dead = "https://127.0.0.1:1" // nothing listens there

	for _, tc := range []struct {
		name                        string
		profCA, profURL, profRegion string
		env                         map[string]string
		args                        []string
		want                        string // the signing region; "" for a refused connection
	}{
		{name: "profile alone", profCA: good, profURL: srv.URL, profRegion: "prof", want: "prof"},
		{name: "AWS_CA_BUNDLE over ca_bundle", profCA: other, profURL: srv.URL, profRegion: "prof",
			env: map[string]string{"AWS_CA_BUNDLE": good}, want: "prof"},
		{name: "AWS_ENDPOINT_URL over endpoint_url", profCA: good, profURL: dead, profRegion: "prof",
			env: map[string]string{"AWS_ENDPOINT_URL": srv.URL}, want: "prof"},
		{name: "AWS_REGION over region", profCA: good, profURL: srv.URL, profRegion: "prof",
			env: map[string]string{"AWS_REGION": "env"}, want: "env"},
		{name: "AWS_DEFAULT_REGION over region", profCA: good, profURL: srv.URL, profRegion: "prof",
			env: map[string]string{"AWS_DEFAULT_REGION": "default-env"}, want: "default-env"},
		{name: "AWS_REGION over AWS_DEFAULT_REGION", profCA: good, profURL: srv.URL, profRegion: "prof",
			env: map[string]string{"AWS_REGION": "env", "AWS_DEFAULT_REGION": "default-env"}, want: "env"},
		{name: "flags over the environment", profCA: good, profURL: dead, profRegion: "prof",
			env:  map[string]string{"AWS_ENDPOINT_URL": dead, "AWS_REGION": "env"},
			args: []string{"--endpoint", srv.URL, "--region", "flag"}, want: "flag"},
		// The CA the environment names is the only one trusted, and the
		// refusal says which CA the profile named.
		{name: "AWS_CA_BUNDLE that does not sign the server", profCA: good, profURL: srv.URL, profRegion: "prof",
			env: map[string]string{"AWS_CA_BUNDLE": other}, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range []string{"AZOTE_CREDENTIALS_FILE", "AZOTE_PROFILE", "AZOTE_ENDPOINT", "AWS_PROFILE",
				"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
				"AWS_CA_BUNDLE", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"} {
				t.Setenv(v, "")
			}
			d := t.TempDir()
			t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(d, "credentials"))
			t.Setenv("AWS_CONFIG_FILE", filepath.Join(d, "config"))
			os.WriteFile(filepath.Join(d, "credentials"), []byte("[p]\naws_access_key_id = AKIATEST\naws_secret_access_key = s\n"), 0o600)
			os.WriteFile(filepath.Join(d, "config"), []byte("[profile p]\nendpoint_url = "+tc.profURL+
				"\nca_bundle = "+tc.profCA+"\nregion = "+tc.profRegion+"\n"), 0o600)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			mu.Lock()
			region = ""
			mu.Unlock()
			code, out, errs := runArgs(append([]string{"host", "info", "-o", "json", "--profile", "p"}, tc.args...)...)
			mu.Lock()
			got := region
			mu.Unlock()
			if tc.want == "" {
				if code != 1 || got != "" || !strings.Contains(errs, "certificate") {
					t.Errorf("exit %d, region %q, stderr %q; want the server's certificate refused", code, got, errs)
				}
				if hint := "hint: AWS_CA_BUNDLE (" + other + ") overrides the profile's ca_bundle (" + good + ")"; !strings.Contains(errs, hint) {
					t.Errorf("stderr %q; want %q", errs, hint)
				}
				return
			}
			if code != 0 || got != tc.want || !strings.Contains(out, `"test"`) {
				t.Errorf("exit %d, signed for region %q, stdout %q, stderr %q; want region %q", code, got, out, errs, tc.want)
			}
		})
	}
}

// otherCA is the PEM of a CA that signed nothing the tests serve.
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
