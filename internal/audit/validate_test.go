package audit

import (
	"crypto/rsa"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// buildTrail writes a trail of four hourly digests, each listing two logs,
// and a pending log after the last digest. It returns the directory.
func buildTrail(t testing.TB) string {
	t.Helper()
	clock := newClock()
	tr, dir := newTrail(t, clock)
	for h := 0; h < 4; h++ {
		appendN(t, tr, clock, h*10, 3)
		if err := tr.Rotate(); err != nil {
			t.Fatal(err)
		}
		clock.Advance(2 * time.Minute)
		appendN(t, tr, clock, h*10+3, 3)
		if err := tr.WriteDigest(); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Hour)
	}
	appendN(t, tr, clock, 100, 2)
	if err := tr.Rotate(); err != nil {
		t.Fatal(err)
	}
	// Copy before Close, whose digest would list the last log: the copy
	// keeps it pending.
	out := copyTree(t, dir)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// rewriteDigest edits a digest's JSON, recompresses it and, when key is not
// nil, signs it again over the edited bytes (an attacker holding a key).
func rewriteDigest(t testing.TB, dir, rel string, key *rsa.PrivateKey, edit func(*digestFile)) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		t.Fatal(err)
	}
	d, err := parseDigestFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	edit(&d.digestFile)
	if key != nil {
		d.DigestPublicKeyFingerprint = fingerprint(&key.PublicKey)
	}
	j, _ := json.Marshal(d.digestFile)
	gz, _ := gzipBytes(j)
	if err := os.WriteFile(filepath.Join(dir, rel), gz, 0o600); err != nil {
		t.Fatal(err)
	}
	if key != nil {
		sig, err := signDigest(key, d.DigestEndTime, d.DigestS3Object, gz, d.PreviousDigestSignature)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel+sigSuffix), []byte(sig), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// withID is log name rel with its 16-character id replaced.
func withID(rel, id string) string {
	const idAndExt = len("0123456789abcdef.json.gz")
	return rel[:len(rel)-idAndExt] + id + ".json.gz"
}

func swap(t testing.TB, dir, a, b string) {
	t.Helper()
	pa, pb := filepath.Join(dir, a), filepath.Join(dir, b)
	tmp := pa + ".swap"
	for _, mv := range [][2]string{{pa, tmp}, {pb, pa}, {tmp, pb}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
}

func TestValidateIntact(t *testing.T) {
	dir := buildTrail(t)
	rep := mustValidate(t, dir)
	if rep.Digests != 4 || rep.LogFiles != 8 || rep.Pending != 1 {
		t.Errorf("report %+v, want 4 digests, 8 logs, 1 pending", rep)
	}
	digests := listKind(t, dir, kindDigest)
	first, _ := readDigest(dir, digests[0])
	last, _ := readDigest(dir, digests[3])
	if !rep.From.Equal(first.start) || !rep.To.Equal(last.end) {
		t.Errorf("coverage %v..%v, want %v..%v", rep.From, rep.To, first.start, last.end)
	}

	// A window holding the middle two digests checks only those.
	d1, _ := readDigest(dir, digests[1])
	d2, _ := readDigest(dir, digests[2])
	rep, err := Validate(dir, nil, d1.end, d2.end)
	if err != nil || len(rep.Problems) != 0 || rep.Digests != 2 || rep.LogFiles != 4 {
		t.Errorf("windowed: %+v, %v", rep, err)
	}
	if _, err := Validate(dir, nil, last.end.Add(time.Hour), time.Time{}); !errors.Is(err, ErrNoDigest) {
		t.Errorf("empty window: %v", err)
	}
	if _, err := Validate(t.TempDir(), nil, time.Time{}, time.Time{}); !errors.Is(err, ErrNoDigest) {
		t.Errorf("empty dir: %v", err)
	}
}

func TestValidateTampering(t *testing.T) {
	other := testKey(t, 1)
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, dir string, logs, digests []string) (file string)
		kind   string
	}{
		{"one byte of a log edited", func(t *testing.T, dir string, logs, _ []string) string {
			p := filepath.Join(dir, logs[2])
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0x01
			os.WriteFile(p, b, 0o600)
			return logs[2]
		}, KindModified},
		{"log recompressed with a record removed", func(t *testing.T, dir string, logs, _ []string) string {
			p := filepath.Join(dir, logs[1])
			b, _ := os.ReadFile(p)
			recs, _ := parseLogFile(b)
			var lines [][]byte
			for _, r := range recs[1:] {
				j, _ := json.Marshal(r)
				lines = append(lines, j)
			}
			gz, _ := gzipBytes(logJSON(lines))
			os.WriteFile(p, gz, 0o600)
			return logs[1]
		}, KindModified},
		{"log deleted", func(t *testing.T, dir string, logs, _ []string) string {
			os.Remove(filepath.Join(dir, logs[4]))
			return logs[4]
		}, KindDeleted},
		{"digest dropped", func(t *testing.T, dir string, _, digests []string) string {
			os.Remove(filepath.Join(dir, digests[1]))
			os.Remove(filepath.Join(dir, digests[1]+sigSuffix))
			return digests[1]
		}, KindMissingDigest},
		{"first digest dropped", func(t *testing.T, dir string, _, digests []string) string {
			os.Remove(filepath.Join(dir, digests[0]))
			return digests[0]
		}, KindMissingDigest},
		{"two logs swapped", func(t *testing.T, dir string, logs, _ []string) string {
			swap(t, dir, logs[3], logs[5])
			return logs[3]
		}, KindOutOfChain},
		{"two digests swapped", func(t *testing.T, dir string, _, digests []string) string {
			swap(t, dir, digests[1], digests[2])
			return digests[2]
		}, KindOutOfChain},
		{"log renamed", func(t *testing.T, dir string, logs, _ []string) string {
			renamed := withID(logs[0], "RenamedRenamed00")
			os.Rename(filepath.Join(dir, logs[0]), filepath.Join(dir, renamed))
			return renamed
		}, KindOutOfChain},
		{"digest edited, not re-signed", func(t *testing.T, dir string, _, digests []string) string {
			rewriteDigest(t, dir, digests[2], nil, func(d *digestFile) { d.LogFiles = d.LogFiles[1:] })
			return digests[2]
		}, KindBadSignature},
		{"digest edited, previous hash no longer matches", func(t *testing.T, dir string, _, digests []string) string {
			rewriteDigest(t, dir, digests[1], nil, func(d *digestFile) { d.AWSAccountID = "999999999999" })
			return digests[1]
		}, KindModified},
		{"digest byte flipped", func(t *testing.T, dir string, _, digests []string) string {
			p := filepath.Join(dir, digests[3])
			b, _ := os.ReadFile(p)
			b[len(b)-10] ^= 0xff
			os.WriteFile(p, b, 0o600)
			return digests[3]
		}, KindModified},
		{"digest re-signed with another key", func(t *testing.T, dir string, _, digests []string) string {
			rewriteDigest(t, dir, digests[3], other, func(d *digestFile) { d.LogFiles = d.LogFiles[:1] })
			return digests[3]
		}, KindBadSignature},
		{"signature replaced by another key's", func(t *testing.T, dir string, _, digests []string) string {
			raw, _ := os.ReadFile(filepath.Join(dir, digests[2]))
			d, _ := parseDigestFile(raw)
			sig, _ := signDigest(other, d.DigestEndTime, digests[2], raw, d.PreviousDigestSignature)
			os.WriteFile(filepath.Join(dir, digests[2]+sigSuffix), []byte(sig), 0o600)
			return digests[2]
		}, KindBadSignature},
		{"signature replaced by garbage", func(t *testing.T, dir string, _, digests []string) string {
			os.WriteFile(filepath.Join(dir, digests[0]+sigSuffix), []byte("zz"), 0o600)
			return digests[0]
		}, KindBadSignature},
		{"signature deleted", func(t *testing.T, dir string, _, digests []string) string {
			os.Remove(filepath.Join(dir, digests[3]+sigSuffix))
			return digests[3]
		}, KindBadSignature},
		{"log planted in the past", func(t *testing.T, dir string, logs, _ []string) string {
			gz, _ := gzipBytes(logJSON(nil))
			planted := withID(logs[0], "PlantedPlanted00")
			os.WriteFile(filepath.Join(dir, planted), gz, 0o600)
			return planted
		}, KindUnlisted},
		{"coverage gap (attacker with the key)", func(t *testing.T, dir string, _, digests []string) string {
			rewriteDigest(t, dir, digests[3], testKey(t, 0), func(d *digestFile) {
				s, _ := time.Parse(timeLayout, d.DigestStartTime)
				d.DigestStartTime = fmtTime(s.Add(10 * time.Minute))
			})
			return digests[3]
		}, KindMissingDigest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := buildTrail(t)
			logs := listKind(t, dir, kindLog)
			digests := listKind(t, dir, kindDigest)
			if len(logs) != 9 || len(digests) != 4 {
				t.Fatalf("fixture has %d logs, %d digests", len(logs), len(digests))
			}
			file := tc.tamper(t, dir, logs, digests)
			rep, err := Validate(dir, nil, time.Time{}, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, p := range rep.Problems {
				if p.Kind == tc.kind && (p.File == file || p.File == file+sigSuffix) {
					found = true
				}
			}
			if !found {
				t.Errorf("want %s on %s, got %v", tc.kind, file, rep.Problems)
			}
		})
	}
}
