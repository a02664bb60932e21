package audit

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func gunzipT(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenConfig(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	dir := t.TempDir()
	good := testConfig(t, dir, nil)
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want error
	}{
		{"no dir", func(c *Config) { c.Dir = "" }, ErrConfig},
		{"no account", func(c *Config) { c.AccountID = "" }, ErrConfig},
		{"account with separator", func(c *Config) { c.AccountID = "1_2" }, ErrConfig},
		{"region with slash", func(c *Config) { c.Region = "../x" }, ErrConfig},
		{"no signer", func(c *Config) { c.Signer = nil }, ErrConfig},
		{"ecdsa signer", func(c *Config) { c.Signer = ec }, ErrBadKey},
		{"rsa-1024 signer", func(c *Config) { c.Signer = small }, ErrBadKey},
	} {
		cfg := good
		tc.edit(&cfg)
		if tr, err := Open(cfg); !errors.Is(err, tc.want) {
			if tr != nil {
				tr.Close()
			}
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestAppendLookupRotateDigest(t *testing.T) {
	clock := newClock()
	tr, dir := newTrail(t, clock)
	ids := appendN(t, tr, clock, 0, 5)
	if err := tr.Rotate(); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, appendN(t, tr, clock, 5, 3)...)

	got, err := tr.Lookup(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 8 {
		t.Fatalf("Lookup returned %d records, want 8", len(got))
	}
	for i, r := range got { // newest first
		if r.EventID != ids[len(ids)-1-i] {
			t.Errorf("Lookup[%d] = %s, want %s", i, r.EventID, ids[len(ids)-1-i])
		}
	}

	logs := listKind(t, dir, kindLog)
	if len(logs) != 1 {
		t.Fatalf("%d logs after one Rotate, want 1: %v", len(logs), logs)
	}
	if !regexp.MustCompile(`^logs/2025/03/14/111122223333_Azote_local-1_20250314T0926Z_[A-Za-z0-9]{16}\.json\.gz$`).MatchString(logs[0]) {
		t.Errorf("log name %s", logs[0])
	}
	var body map[string][]map[string]any
	if err := json.Unmarshal(gunzipT(t, filepath.Join(dir, logs[0])), &body); err != nil {
		t.Fatalf("log is not JSON: %v", err)
	}
	if len(body) != 1 || len(body["Records"]) != 5 {
		t.Fatalf("log body has keys %v and %d records, want only Records with 5", keysOfRecords(body), len(body["Records"]))
	}
	if body["Records"][0]["eventID"] != ids[0] || body["Records"][0]["eventTime"] != "2025-03-14T09:26:53Z" {
		t.Errorf("first record %v", body["Records"][0])
	}

	if err := tr.WriteDigest(); err != nil {
		t.Fatal(err)
	}
	if logs := listKind(t, dir, kindLog); len(logs) != 2 {
		t.Errorf("WriteDigest did not rotate: %v", logs)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, activeDir)); len(ents) != 0 {
		t.Errorf("journal left after rotation: %v", ents)
	}
	s := tr.Stats()
	if s.Records != 8 || s.LogFiles != 2 || s.Digests != 1 || s.Batches == 0 || s.Fsyncs != s.Batches || s.Bytes == 0 {
		t.Errorf("Stats = %+v", s)
	}
	rep := mustValidate(t, dir)
	if rep.Digests != 1 || rep.LogFiles != 2 {
		t.Errorf("Validate report %+v", rep)
	}
}

func keysOfRecords(m map[string][]map[string]any) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	return k
}

// TestDigestFormat checks a digest field by field and its signature with
// code written from CloudTrail's documentation, not from the package.
func TestDigestFormat(t *testing.T) {
	clock := newClock()
	tr, dir := newTrail(t, clock)
	if err := tr.WriteDigest(); err != nil { // empty period
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	appendN(t, tr, clock, 0, 3)
	if err := tr.WriteDigest(); err != nil {
		t.Fatal(err)
	}
	digests := listKind(t, dir, kindDigest)
	if len(digests) != 2 {
		t.Fatalf("digests %v", digests)
	}
	if digests[0] != "digests/2025/03/14/111122223333_Azote-Digest_local-1_20250314T092653Z.json.gz" {
		t.Errorf("first digest name %s", digests[0])
	}
	pub := &testKey(t, 0).PublicKey
	fp := md5.Sum(x509.MarshalPKCS1PublicKey(pub))
	wantFP := hex.EncodeToString(fp[:])
	if tr.Fingerprint() != wantFP {
		t.Errorf("fingerprint %s, want %s", tr.Fingerprint(), wantFP)
	}
	pemBytes, err := os.ReadFile(filepath.Join(dir, keysDir, wantFP+".pem"))
	if err != nil || !bytes.Equal(pemBytes, tr.PublicKeyPEM()) {
		t.Errorf("public key file: %v", err)
	}

	var docs []map[string]any
	var raws [][]byte
	var sigs []string
	for _, rel := range digests {
		raw, _ := os.ReadFile(filepath.Join(dir, rel))
		raws = append(raws, raw)
		var m map[string]any
		if err := json.Unmarshal(gunzipT(t, filepath.Join(dir, rel)), &m); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, m)
		sig, err := os.ReadFile(filepath.Join(dir, rel+".sig"))
		if err != nil {
			t.Fatal(err)
		}
		sigs = append(sigs, string(sig))
	}
	wantKeys := []string{"awsAccountId", "digestEndTime", "digestPublicKeyFingerprint", "digestS3Bucket",
		"digestS3Object", "digestSignatureAlgorithm", "digestStartTime", "logFiles", "newestEventTime",
		"oldestEventTime", "previousDigestHashAlgorithm", "previousDigestHashValue", "previousDigestS3Bucket",
		"previousDigestS3Object", "previousDigestSignature"}
	for i, m := range docs {
		if got := keysOf(m); !reflect.DeepEqual(got, wantKeys) {
			t.Errorf("digest %d keys\n got %v\nwant %v", i, got, wantKeys)
		}
		if m["awsAccountId"] != "111122223333" || m["digestS3Bucket"] != "local" || m["digestS3Object"] != digests[i] ||
			m["digestPublicKeyFingerprint"] != wantFP || m["digestSignatureAlgorithm"] != "SHA256withRSA" {
			t.Errorf("digest %d header %v", i, m)
		}
		// CloudTrail's string to sign, and SHA256withRSA over it.
		prev := "null"
		if s, ok := m["previousDigestSignature"].(string); ok {
			prev = s
		}
		sum := sha256.Sum256(raws[i])
		sts := fmt.Sprintf("%s\n%s/%s\n%s\n%s", m["digestEndTime"], "local", digests[i], hex.EncodeToString(sum[:]), prev)
		h := sha256.Sum256([]byte(sts))
		sig, err := hex.DecodeString(sigs[i])
		if err != nil {
			t.Fatalf("signature %d is not hex: %v", i, err)
		}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig); err != nil {
			t.Errorf("digest %d signature does not verify: %v", i, err)
		}
	}
	first, second := docs[0], docs[1]
	for _, k := range []string{"previousDigestS3Bucket", "previousDigestS3Object", "previousDigestHashValue",
		"previousDigestHashAlgorithm", "previousDigestSignature", "newestEventTime", "oldestEventTime"} {
		if first[k] != nil {
			t.Errorf("first digest %s = %v, want null", k, first[k])
		}
	}
	if l, ok := first["logFiles"].([]any); !ok || len(l) != 0 {
		t.Errorf("empty digest logFiles = %#v, want []", first["logFiles"])
	}
	prevSum := sha256.Sum256(raws[0])
	if second["previousDigestS3Object"] != digests[0] || second["previousDigestS3Bucket"] != "local" ||
		second["previousDigestHashValue"] != hex.EncodeToString(prevSum[:]) ||
		second["previousDigestHashAlgorithm"] != "SHA-256" || second["previousDigestSignature"] != sigs[0] {
		t.Errorf("second digest does not chain to the first: %v", second)
	}
	if second["digestStartTime"] != first["digestEndTime"] {
		t.Errorf("coverage gap: %v then %v", first["digestEndTime"], second["digestStartTime"])
	}
	if second["oldestEventTime"] != "2025-03-14T10:26:53Z" || second["newestEventTime"] != "2025-03-14T10:26:55Z" {
		t.Errorf("event times %v..%v", second["oldestEventTime"], second["newestEventTime"])
	}
	lf := second["logFiles"].([]any)
	if len(lf) != 1 {
		t.Fatalf("logFiles %v", lf)
	}
	e := lf[0].(map[string]any)
	logRaw, _ := os.ReadFile(filepath.Join(dir, e["s3Object"].(string)))
	logSum := sha256.Sum256(logRaw)
	if e["s3Bucket"] != "local" || e["hashAlgorithm"] != "SHA-256" || e["hashValue"] != hex.EncodeToString(logSum[:]) {
		t.Errorf("logFiles entry %v", e)
	}
	// Two digests in the same second still get distinct, increasing names.
	if err := tr.WriteDigest(); err != nil {
		t.Fatal(err)
	}
	if d := listKind(t, dir, kindDigest); len(d) != 3 || d[2] <= d[1] {
		t.Errorf("same-second digest: %v", d)
	}
	mustValidate(t, dir)
}

func TestAutomaticRotationAndDigests(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, nil)
	cfg.MaxFileBytes = 2000
	cfg.MaxFileAge = 50 * time.Millisecond
	cfg.DigestEvery = 300 * time.Millisecond
	tr := openTrail(t, cfg)
	appendN(t, tr, nil, 0, 20) // ~600 bytes each: size rotations
	if n := tr.Stats().LogFiles; n < 4 {
		t.Errorf("%d logs after 20 records of ~600 bytes with MaxFileBytes 2000", n)
	}
	appendN(t, tr, nil, 20, 1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := tr.Stats()
		journals, _ := os.ReadDir(filepath.Join(dir, activeDir))
		if s.Digests >= 2 && len(journals) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no age rotation or periodic digest: %+v", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustValidate(t, dir)
	if rep.LogFiles != len(listKind(t, dir, kindLog)) || rep.Pending != 0 {
		t.Errorf("after Close every log should be listed: %+v", rep)
	}
	got, err := Lookup(dir, Filter{})
	if err != nil || len(got) != 21 {
		t.Errorf("Lookup after Close: %d records, %v", len(got), err)
	}
}

// TestPeriodicUnderLoad: digests and age rotations keep their schedule
// while Appends never stop.
func TestPeriodicUnderLoad(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, nil)
	cfg.MaxFileAge = 30 * time.Millisecond
	cfg.DigestEvery = 100 * time.Millisecond
	tr := openTrail(t, cfg)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := tr.Append(context.Background(), testRecord(i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	time.Sleep(time.Second)
	s := tr.Stats()
	close(stop)
	wg.Wait()
	// A second holds ten digest periods and thirty log ages; allow for a
	// slow disk but not for starvation.
	if s.Digests < 3 || s.LogFiles < 6 {
		t.Errorf("under load in 1s: %d digests, %d logs (%d records)", s.Digests, s.LogFiles, s.Records)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	mustValidate(t, dir)
}

func TestCloseStopsWriter(t *testing.T) {
	dir := t.TempDir()
	tr, err := Open(testConfig(t, dir, nil))
	if err != nil {
		t.Fatal(err)
	}
	first := testRecord(0)
	if err := tr.Append(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	if !writerRunning() {
		t.Fatal("no writer goroutine while open")
	}
	var wg sync.WaitGroup
	var acked sync.Map
	acked.Store(first.EventID, true)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				r := testRecord(g*1000 + i)
				err := tr.Append(context.Background(), r)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				acked.Store(r.EventID, true)
			}
		}(g)
	}
	time.Sleep(50 * time.Millisecond)
	if err := tr.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	noWriterLeft(t)
	if err := tr.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
	if err := tr.Rotate(); !errors.Is(err, ErrClosed) {
		t.Errorf("Rotate after Close = %v", err)
	}
	if err := tr.Append(context.Background(), testRecord(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v", err)
	}
	// Everything acknowledged before Close is in a finished, listed log.
	got, err := Lookup(dir, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range got {
		seen[r.EventID] = true
	}
	n := 0
	acked.Range(func(k, _ any) bool {
		n++
		if !seen[k.(string)] {
			t.Errorf("acknowledged %s lost at Close", k)
		}
		return true
	})
	if n == 0 || len(got) != n {
		t.Errorf("%d acknowledged, %d found", n, len(got))
	}
	rep := mustValidate(t, dir)
	if rep.Pending != 0 {
		t.Errorf("Close left %d logs unlisted", rep.Pending)
	}
}

func TestAppendContext(t *testing.T) {
	tr, _ := newTrail(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Either outcome is allowed for a cancelled context, but it must
	// return, and a record it reports written must be there.
	r := testRecord(0)
	err := tr.Append(ctx, r)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with cancelled ctx = %v", err)
	}
	got, _ := tr.Lookup(Filter{})
	if err == nil && len(got) != 1 {
		t.Error("Append reported success but the record is missing")
	}
}

// TestGroupCommit checks that concurrent Appends share fsyncs and that a
// Lookup running alongside them and alongside rotations sees every record
// acknowledged before it started, exactly once.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, nil)
	cfg.MaxFileBytes = 64 << 10
	tr := openTrail(t, cfg)
	const workers, each = 64, 40
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	lookups := 0
	var lookupErr error
	var lwg sync.WaitGroup
	lwg.Add(1)
	go func() {
		defer lwg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			before := make([]string, 0, len(acked))
			for id := range acked {
				before = append(before, id)
			}
			mu.Unlock()
			got, err := tr.Lookup(Filter{})
			if err != nil {
				lookupErr = err
				return
			}
			seen := make(map[string]int, len(got))
			for _, r := range got {
				seen[r.EventID]++
			}
			for _, id := range before {
				if seen[id] != 1 {
					lookupErr = fmt.Errorf("lookup %d saw acknowledged %s %d times", lookups, id, seen[id])
					return
				}
			}
			for id, n := range seen {
				if n != 1 {
					lookupErr = fmt.Errorf("lookup %d saw %s %d times", lookups, id, n)
					return
				}
			}
			lookups++
		}
	}()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r := testRecord(w*each + i)
				if err := tr.Append(context.Background(), r); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				acked[r.EventID] = true
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	lwg.Wait()
	if lookupErr != nil {
		t.Fatal(lookupErr)
	}
	s := tr.Stats()
	if s.Records != workers*each {
		t.Errorf("Records = %d, want %d", s.Records, workers*each)
	}
	if s.Batches >= s.Records/2 {
		t.Errorf("%d batches for %d records: Appends are not sharing fsyncs", s.Batches, s.Records)
	}
	if s.LogFiles < 2 || lookups == 0 {
		t.Errorf("test did not exercise rotation under lookup: %d logs, %d lookups", s.LogFiles, lookups)
	}
	t.Logf("%d records in %d batches, %d lookups, %d logs, fsync total %v", s.Records, s.Batches, lookups, s.LogFiles, s.FsyncTime)
}

func TestKeyRotation(t *testing.T) {
	clock := newClock()
	tr, dir := newTrail(t, clock)
	appendN(t, tr, clock, 0, 2)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	cfg := testConfig(t, dir, clock)
	cfg.Signer = testKey(t, 1)
	tr2 := openTrail(t, cfg)
	appendN(t, tr2, clock, 2, 2)
	if err := tr2.Close(); err != nil {
		t.Fatal(err)
	}
	if k := listKind(t, dir, kindKey); len(k) != 2 {
		t.Errorf("public keys %v, want both", k)
	}
	rep := mustValidate(t, dir)
	if rep.Digests != 2 || rep.LogFiles != 2 {
		t.Errorf("report %+v", rep)
	}
	// Trusting only the old key, the new digest is refused.
	old := map[string]*rsa.PublicKey{tr.Fingerprint(): &testKey(t, 0).PublicKey}
	rep, err := Validate(dir, old, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if k := kinds(rep); len(k[KindBadSignature]) != 1 || len(rep.Problems) != 1 {
		t.Errorf("with the old key only: %v", rep.Problems)
	}
}

func TestListFiles(t *testing.T) {
	clock := newClock()
	tr, dir := newTrail(t, clock)
	appendN(t, tr, clock, 0, 2)
	if err := tr.WriteDigest(); err != nil {
		t.Fatal(err)
	}
	appendN(t, tr, clock, 2, 2) // stays in the journal
	if err := os.WriteFile(filepath.Join(dir, logsDir, ".tmp-123"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	all, err := ListFiles(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 {
		t.Fatalf("ListFiles = %v, want digest, sig, log, key", all)
	}
	wantKinds := []fileKind{kindDigest, kindSig, kindLog, kindKey}
	for i, rel := range all {
		if classify(rel) != wantKinds[i] {
			t.Errorf("ListFiles[%d] = %s", i, rel)
		}
		if strings.Contains(rel, activeDir) || strings.Contains(rel, tempPrefix) {
			t.Errorf("ListFiles lists %s", rel)
		}
	}
	rest, _ := ListFiles(dir, all[1])
	if !reflect.DeepEqual(rest, all[2:]) {
		t.Errorf("ListFiles after %s = %v", all[1], rest)
	}
	if none, _ := ListFiles(dir, all[3]); len(none) != 0 {
		t.Errorf("ListFiles after the last = %v", none)
	}
}
