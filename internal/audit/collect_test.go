package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// sourceTrail is a live trail to collect from, with a fake clock.
type sourceTrail struct {
	dir   string
	clock *fakeClock
	tr    *Trail
	n     int
}

func newSourceTrail(t *testing.T) *sourceTrail {
	s := &sourceTrail{dir: t.TempDir(), clock: newClock()}
	s.tr = openTrail(t, testConfig(t, s.dir, s.clock))
	return s
}

// hour appends a few records and writes a digest an hour later.
func (s *sourceTrail) hour(t *testing.T) {
	t.Helper()
	appendN(t, s.tr, s.clock, s.n, 3)
	s.n += 3
	s.clock.Advance(time.Hour)
	if err := s.tr.WriteDigest(); err != nil {
		t.Fatal(err)
	}
}

func readRel(t *testing.T, dir, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func collectOK(t *testing.T, src Source, dst string) CollectResult {
	t.Helper()
	res, err := Collect(context.Background(), src, dst, nil)
	if err != nil {
		t.Fatalf("Collect: %v (%+v)", err, res)
	}
	if len(res.Report.Problems) != 0 {
		t.Fatalf("collected copy does not validate: %v", res.Report.Problems)
	}
	return res
}

func TestCollect(t *testing.T) {
	s := newSourceTrail(t)
	s.hour(t)
	s.hour(t)
	dst := t.TempDir()
	src := DirSource(s.dir)
	ctx := context.Background()

	if _, err := Collect(ctx, src, dst, nil); !errors.Is(err, ErrNoTrustedKey) {
		t.Fatalf("Collect with no key = %v, want ErrNoTrustedKey", err)
	}
	res, err := Collect(ctx, src, dst, &testKey(t, 0).PublicKey)
	if err != nil {
		t.Fatalf("first Collect: %v", err)
	}
	listed, _ := ListFiles(s.dir, "")
	if res.Listed != len(listed) || res.Fetched != len(listed) || res.Report.Digests != 2 || len(res.Report.Problems) != 0 {
		t.Fatalf("first Collect %+v, source has %d files", res, len(listed))
	}
	for _, rel := range listed {
		if !bytes.Equal(readRel(t, s.dir, rel), readRel(t, dst, rel)) {
			t.Errorf("%s differs from the source", rel)
		}
	}
	res = collectOK(t, src, dst)
	if res.Fetched != 0 || res.Unchanged != len(listed) {
		t.Errorf("second Collect %+v", res)
	}
	s.hour(t)
	res = collectOK(t, src, dst)
	if res.Fetched != 3 || res.Report.Digests != 3 { // a log, a digest and its signature
		t.Errorf("incremental Collect %+v", res)
	}
}

func TestCollectTampering(t *testing.T) {
	other := testKey(t, 1)
	s := newSourceTrail(t)
	s.hour(t)
	s.hour(t)
	s.hour(t)
	dst := t.TempDir()
	src := DirSource(s.dir)
	ctx := context.Background()
	if _, err := Collect(ctx, src, dst, &testKey(t, 0).PublicKey); err != nil {
		t.Fatal(err)
	}
	logs := listKind(t, s.dir, kindLog)
	digests := listKind(t, s.dir, kindDigest)
	collected, _ := ListFiles(dst, "")
	before := map[string][]byte{}
	for _, rel := range collected {
		before[rel] = readRel(t, dst, rel)
	}

	// 1. A collected log edited at the source.
	p := filepath.Join(s.dir, logs[1])
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0x40
	os.WriteFile(p, b, 0o600)

	// 2. A collected digest replaced by one re-signed with another key.
	rewriteDigest(t, s.dir, digests[2], other, func(d *digestFile) { d.LogFiles = []logEntry{} })

	// 3. A new digest forged with another key, chained to the last one.
	last := digests[2]
	lastRaw, lastSig := before[last], string(before[last+sigSuffix])
	end, _ := time.Parse(timeLayout, "2025-03-14T13:30:00Z")
	forgedRel := digestName("111122223333", "local-1", end)
	forged := digestFile{
		AWSAccountID: "111122223333", DigestStartTime: "2025-03-14T12:26:56Z", DigestEndTime: fmtTime(end),
		DigestS3Bucket: bucket, DigestS3Object: forgedRel, DigestPublicKeyFingerprint: fingerprint(&other.PublicKey),
		DigestSignatureAlgorithm: signatureAlgorithm, LogFiles: []logEntry{},
		PreviousDigestS3Bucket: strp(bucket), PreviousDigestS3Object: strp(last),
		PreviousDigestHashValue: strp(hashHex(lastRaw)), PreviousDigestHashAlg: strp(hashAlgorithm),
		PreviousDigestSignature: strp(lastSig),
	}
	j, _ := json.Marshal(forged)
	gz, _ := gzipBytes(j)
	sig, _ := signDigest(other, forged.DigestEndTime, forgedRel, gz, forged.PreviousDigestSignature)
	if err := writeFileAtomic(s.dir, forgedRel, gz, true); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(s.dir, forgedRel+sigSuffix), []byte(sig), 0o600)

	// 4. A collected digest deleted at the source.
	os.Remove(filepath.Join(s.dir, digests[0]))

	res, err := Collect(ctx, src, dst, nil)
	for _, want := range []error{ErrHistoryRewritten, ErrDigestRefused, ErrSourceDeleted} {
		if !errors.Is(err, want) {
			t.Errorf("Collect error %v does not report %v", err, want)
		}
	}
	if !slices.Contains(res.Rewritten, logs[1]) || !slices.Contains(res.Rewritten, digests[2]) ||
		!slices.Contains(res.Rewritten, digests[2]+sigSuffix) {
		t.Errorf("Rewritten = %v", res.Rewritten)
	}
	if !slices.Equal(res.Refused, []string{forgedRel}) {
		t.Errorf("Refused = %v, want %s", res.Refused, forgedRel)
	}
	if !slices.Equal(res.Deleted, []string{digests[0]}) {
		t.Errorf("Deleted = %v, want %s", res.Deleted, digests[0])
	}
	if len(res.Report.Problems) != 0 || res.Report.Digests != 3 {
		t.Errorf("collected copy after tampering: %+v", res.Report)
	}
	for rel, want := range before {
		if !bytes.Equal(readRel(t, dst, rel), want) {
			t.Errorf("collected %s was overwritten", rel)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, forgedRel)); !os.IsNotExist(err) {
		t.Errorf("forged digest collected: %v", err)
	}

	// The real trail goes on; its next digest still chains to the copy.
	os.Remove(filepath.Join(s.dir, forgedRel))
	os.Remove(filepath.Join(s.dir, forgedRel+sigSuffix))
	s.clock.Advance(2 * time.Hour)
	s.hour(t)
	res, err = Collect(ctx, src, dst, nil)
	if !errors.Is(err, ErrHistoryRewritten) || errors.Is(err, ErrDigestRefused) {
		t.Errorf("Collect after the trail moved on: %v", err)
	}
	if len(res.Report.Problems) != 0 || res.Report.Digests != 4 {
		t.Errorf("collected copy: %+v", res.Report)
	}
}

// TestCollectRefusesRestartedChain: a digest signed with the right key
// but not chained to what the collector holds (the host's history was
// wiped and the trail started again) is refused.
func TestCollectRefusesRestartedChain(t *testing.T) {
	s := newSourceTrail(t)
	s.hour(t)
	dst := t.TempDir()
	if _, err := Collect(context.Background(), DirSource(s.dir), dst, &testKey(t, 0).PublicKey); err != nil {
		t.Fatal(err)
	}
	wiped := t.TempDir()
	clock := newClock()
	clock.Advance(5 * time.Hour)
	tr := openTrail(t, testConfig(t, wiped, clock))
	appendN(t, tr, clock, 0, 1)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := Collect(context.Background(), DirSource(wiped), dst, nil)
	if !errors.Is(err, ErrDigestRefused) || !errors.Is(err, ErrSourceDeleted) || len(res.Refused) != 1 {
		t.Errorf("restarted chain: %v, %+v", err, res)
	}
	if len(res.Report.Problems) != 0 {
		t.Errorf("copy: %v", res.Report.Problems)
	}
}

type hostileSource struct {
	DirSource
	extra []string
}

func (h hostileSource) List(ctx context.Context, after string) ([]string, error) {
	l, err := h.DirSource.List(ctx, after)
	return append(l, h.extra...), err
}

func (h hostileSource) Fetch(ctx context.Context, rel string) ([]byte, error) {
	if slices.Contains(h.extra, rel) {
		return []byte("pwned"), nil
	}
	return h.DirSource.Fetch(ctx, rel)
}

func TestCollectHostilePaths(t *testing.T) {
	s := newSourceTrail(t)
	s.hour(t)
	parent := t.TempDir()
	dst := filepath.Join(parent, "copy")
	bad := []string{"../escape", "logs/../../escape", "/tmp/escape", "logs/2025/03/14/x.json.gz",
		"public-keys/../../escape.pem", "digests/2025/03/14/a_Azote-Digest_b_20250314T000000Z.json.gz/../../x", ""}
	res, err := Collect(context.Background(), hostileSource{DirSource(s.dir), bad}, dst, &testKey(t, 0).PublicKey)
	if !errors.Is(err, ErrBadPath) || len(res.BadPaths) != len(bad) {
		t.Errorf("hostile paths: %v, %+v", err, res.BadPaths)
	}
	if _, err := os.Stat(filepath.Join(parent, "escape")); !os.IsNotExist(err) {
		t.Error("a hostile path escaped the collector's directory")
	}
	if len(res.Report.Problems) != 0 || res.Report.Digests != 1 {
		t.Errorf("copy: %+v", res.Report)
	}
	if _, err := DirSource(s.dir).Fetch(context.Background(), "../x"); !errors.Is(err, ErrBadPath) {
		t.Errorf("DirSource.Fetch(../x) = %v", err)
	}
}
