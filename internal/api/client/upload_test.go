package client

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/sigv4"
)

// An import is streamed UNSIGNED-PAYLOAD with its Content-Length (so a
// body cut short is seen as such), its parameters in the signed query,
// and azoted's verifier accepts the signature.
func TestImportVolumeSigned(t *testing.T) {
	v := &sigv4.Verifier{Region: "local", Service: api.Service}
	keys := func(string, string) (sigv4.Key, error) { return sigv4.Key{Secret: "secret", Active: true}, nil }
	disk := bytes.Repeat([]byte{7}, 3<<20)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Content-Sha256") != sigv4.UnsignedPayload || r.ContentLength != int64(len(disk)) || r.URL.Path != api.VolumeImportPath {
			http.Error(w, `{"Code":"MalformedRequest","Message":"not an upload"}`, 400)
			return
		}
		if _, err := v.Verify(r, sigv4.UnsignedPayload, keys); err != nil {
			http.Error(w, `{"Code":"SignatureDoesNotMatch","Message":"bad signature"}`, http.StatusForbidden)
			return
		}
		body, _ := io.ReadAll(r.Body)
		q := r.URL.Query()
		if !bytes.Equal(body, disk) || q.Get("length") != "3145728" || q.Get("sha256") != strings.Repeat("c", 64) || q.Get("name") != "d" || q.Get("plaintext") != "" {
			http.Error(w, `{"Code":"InvalidParameterValue","Message":"wrong body or query"}`, 400)
			return
		}
		json.NewEncoder(w).Encode(api.Volume{ID: "vol-1", Name: "d"})
	}))
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c, err := NewNetwork(srv.URL, ca, sigv4.Credentials{AccessKeyID: "AKIATEST", SecretAccessKey: "secret"}, "local")
	if err != nil {
		t.Fatal(err)
	}
	// The body is a plain reader (no length of its own): the client
	// sends the declared length.
	vol, err := c.ImportVolume(context.Background(), api.ImportVolumeRequest{Name: "d", Length: int64(len(disk)), SHA256: strings.Repeat("c", 64)},
		io.MultiReader(bytes.NewReader(disk)))
	if err != nil || vol.ID != "vol-1" {
		t.Fatalf("%+v, %v", vol, err)
	}
}
