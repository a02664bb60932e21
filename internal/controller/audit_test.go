package controller

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azote/azote/internal/audit"
)

// TestValidateTrustsOnlyPinnedKeys: someone who can write the trail
// directory (not azoted's state) drops a record from a log, rewrites the
// digest over it, signs it with a key of their own and adds that key to
// public-keys/. azoted's ValidateLogs must report the digest; it trusted
// any key public-keys/ held.
func TestValidateTrustsOnlyPinnedKeys(t *testing.T) {
	fx := newFixture(t)
	c := fx.c
	for _, name := range []string{"Kept", "Dropped"} {
		if err := c.trail.Append(context.Background(), &audit.Record{EventSource: "iam.azote", EventName: name}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.trail.WriteDigest(); err != nil {
		t.Fatal(err)
	}
	if rep, err := c.validateTrail(time.Time{}, time.Time{}); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("intact trail: %+v, %v", rep, err)
	}

	dir := c.auditDir()
	digests := findFiles(t, dir, "digests", ".json.gz")
	logs := findFiles(t, dir, "logs", ".json.gz")
	if len(digests) != 1 || len(logs) != 1 {
		t.Fatalf("digests %v, logs %v", digests, logs)
	}
	// Drop the record from the log.
	var body struct{ Records []map[string]any }
	json.Unmarshal(gunzipFile(t, logs[0]), &body)
	var kept []map[string]any
	for _, r := range body.Records {
		if r["eventName"] != "Dropped" {
			kept = append(kept, r)
		}
	}
	body.Records = kept
	forgedLog := gzipJSON(t, body)
	os.WriteFile(logs[0], forgedLog, 0o600)
	// Rewrite the digest over it and sign it with the attacker's key.
	attacker, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	json.Unmarshal(gunzipFile(t, digests[0]), &d)
	sum := sha256.Sum256(forgedLog)
	d["logFiles"].([]any)[0].(map[string]any)["hashValue"] = hex.EncodeToString(sum[:])
	fp := md5.Sum(x509.MarshalPKCS1PublicKey(&attacker.PublicKey))
	d["digestPublicKeyFingerprint"] = hex.EncodeToString(fp[:])
	forged := gzipJSON(t, d)
	os.WriteFile(digests[0], forged, 0o600)
	prev := "null"
	if p, ok := d["previousDigestSignature"].(string); ok {
		prev = p
	}
	dsum := sha256.Sum256(forged)
	h := sha256.Sum256([]byte(d["digestEndTime"].(string) + "\nlocal/" + d["digestS3Object"].(string) + "\n" + hex.EncodeToString(dsum[:]) + "\n" + prev))
	sig, err := rsa.SignPKCS1v15(nil, attacker, crypto.SHA256, h[:])
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(digests[0]+".sig", []byte(hex.EncodeToString(sig)), 0o600)
	der, _ := x509.MarshalPKIXPublicKey(&attacker.PublicKey)
	os.WriteFile(filepath.Join(dir, "public-keys", hex.EncodeToString(fp[:])+".pem"),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)

	// The forgery is consistent: a validator that trusts public-keys/
	// finds nothing wrong.
	if rep, err := audit.Validate(dir, nil, time.Time{}, time.Time{}); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("the forgery itself is not consistent: %+v, %v", rep.Problems, err)
	}
	rep, err := c.validateTrail(time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range rep.Problems {
		if p.Kind == audit.KindBadSignature && p.File == strings.TrimPrefix(filepath.ToSlash(strings.TrimPrefix(digests[0], dir)), "/") {
			found = true
		}
	}
	if !found {
		t.Fatalf("ValidateLogs after a re-signed forgery: problems %v, want the digest reported as signed by an unpinned key", rep.Problems)
	}

	// A key the operator retired into audit-keys/ is trusted again.
	os.WriteFile(filepath.Join(c.auditKeysDir(), hex.EncodeToString(fp[:])+".pem"),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	if rep, err := c.validateTrail(time.Time{}, time.Time{}); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("with the key pinned by the operator: %+v, %v", rep.Problems, err)
	}
}

func findFiles(t *testing.T, dir, top, suffix string) []string {
	t.Helper()
	var out []string
	filepath.Walk(filepath.Join(dir, top), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && strings.HasSuffix(p, suffix) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func gunzipFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func gzipJSON(t *testing.T, v any) []byte {
	t.Helper()
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(j)
	zw.Close()
	return buf.Bytes()
}
