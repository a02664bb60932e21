package audit

import (
	"bytes"
	"encoding/json"
	"path"
	"reflect"
	"strings"
	"testing"
)

// journalSeed is n small records as Append writes them; small, because
// the mutator does better on short inputs.
func journalSeed(n int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		r := Record{
			UserIdentity: UserIdentity{Type: "IAMUser", UserName: "u", SessionContext: &SessionContext{}},
			EventTime:    newClock().Now(), EventSource: "s", EventName: "n", EventID: "e",
			RequestParameters: map[string]any{"k": []any{1, "v", nil, true}},
		}
		j, _ := json.Marshal(r)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// FuzzJournal feeds arbitrary bytes to the journal reader recovery uses.
// Properties: every complete line is either a record or counted as
// dropped, never both; an accepted line re-parses to the same record; the
// accepted lines, embedded verbatim as a finished log, parse back to the
// same records (so recovery can never write a log it cannot read); and a
// record's encoding is stable after one round trip.
func FuzzJournal(f *testing.F) {
	good := journalSeed(2)
	f.Add(good)
	f.Add(good[:len(good)-7]) // torn tail
	f.Add(append(append([]byte{}, good...), 0, 0, 0, 0))
	f.Add([]byte("\n\n{}\nnull\n[]\n"))
	f.Add([]byte(`{"eventID":"e","eventTime":"2025-01-01T00:00:00Z"}` + "\n"))
	f.Add([]byte(`{"eventID":"e","eventTime":"2025-01-01T00:00:00+02:00","requestParameters":{"n":1e400}}` + "\n"))
	f.Add([]byte("\v{\"eventID\":\"e\",\"eventTime\":\"2025-01-01T00:00:00Z\"}\u0085\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		recs, lines, dropped := parseJournal(in)
		if len(recs) != len(lines) {
			t.Fatalf("%d records, %d lines", len(recs), len(lines))
		}
		segments := bytes.Count(in, []byte{'\n'})
		if len(in) > 0 && in[len(in)-1] != '\n' {
			segments++
		}
		if len(lines)+dropped != segments {
			t.Fatalf("%d kept + %d dropped != %d lines", len(lines), dropped, segments)
		}
		for i, l := range lines {
			if bytes.IndexByte(l, '\n') >= 0 {
				t.Fatalf("line %d holds a newline", i)
			}
			r, err := parseRecord(l)
			if err != nil || !reflect.DeepEqual(r, recs[i]) {
				t.Fatalf("line %d does not re-parse to its record: %v", i, err)
			}
		}
		if len(lines) > 0 {
			gz, err := gzipBytes(logJSON(lines))
			if err != nil {
				t.Fatal(err)
			}
			fromLog, err := parseLogFile(gz)
			if err != nil {
				t.Fatalf("accepted lines make an unreadable log: %v", err)
			}
			if !reflect.DeepEqual(fromLog, recs) {
				t.Fatal("log records differ from journal records")
			}
		}
		for i, r := range recs {
			once, err := json.Marshal(r)
			if err != nil {
				continue // a time whose year leaves 0-9999 when moved to UTC
			}
			r2, err := parseRecord(once)
			if err != nil {
				t.Fatalf("record %d: own encoding rejected: %v\n%s", i, err, once)
			}
			twice, err := json.Marshal(r2)
			if err != nil || !bytes.Equal(once, twice) {
				t.Fatalf("record %d: encoding not stable\n%s\n%s", i, once, twice)
			}
		}
	})
}

func digestSeed() []byte {
	d := digestFile{
		AWSAccountID: "111122223333", DigestStartTime: "2025-03-14T09:26:53Z", DigestEndTime: "2025-03-14T10:26:53Z",
		DigestS3Bucket: bucket, DigestS3Object: "digests/2025/03/14/111122223333_Azote-Digest_local-1_20250314T102653Z.json.gz",
		DigestPublicKeyFingerprint: "31e8b5433410dfb61a9dc45cc65b22ff", DigestSignatureAlgorithm: signatureAlgorithm,
		NewestEventTime: strp("2025-03-14T10:20:00Z"), OldestEventTime: strp("2025-03-14T09:30:00Z"),
		PreviousDigestS3Bucket: strp(bucket), PreviousDigestS3Object: strp("digests/2025/03/14/111122223333_Azote-Digest_local-1_20250314T092653Z.json.gz"),
		PreviousDigestHashValue: strp(strings.Repeat("ab", 32)), PreviousDigestHashAlg: strp(hashAlgorithm),
		PreviousDigestSignature: strp("00ff"),
		LogFiles: []logEntry{{S3Bucket: bucket, S3Object: "logs/2025/03/14/111122223333_Azote_local-1_20250314T0930Z_AbCdEfGhIjKlMnOp.json.gz",
			HashValue: strings.Repeat("cd", 32), HashAlgorithm: hashAlgorithm,
			NewestEventTime: "2025-03-14T10:20:00Z", OldestEventTime: "2025-03-14T09:30:00Z"}},
	}
	j, _ := json.Marshal(d)
	return j
}

// FuzzDigest feeds arbitrary JSON to the digest parser. Properties: an
// accepted digest re-encodes to JSON the parser accepts with the same
// fields, the encoding is stable, every path it names is inside the
// layout, and the gzip form parses the same.
func FuzzDigest(f *testing.F) {
	seed := digestSeed()
	f.Add(seed)
	f.Add(bytes.Replace(seed, []byte(`"previousDigestS3Bucket":"local"`), []byte(`"previousDigestS3Bucket":null`), 1))
	f.Add([]byte(`{"logFiles":[]}`))
	f.Add([]byte(`{"awsAccountId":"1","digestStartTime":"2025-03-14T09:26:53Z","digestEndTime":"2025-03-14T09:26:53Z","digestS3Bucket":"local","digestS3Object":"digests/2025/03/14/1_Azote-Digest_r_20250314T092653Z.json.gz","digestPublicKeyFingerprint":"31e8b5433410dfb61a9dc45cc65b22ff","digestSignatureAlgorithm":"SHA256withRSA","newestEventTime":null,"oldestEventTime":null,"previousDigestS3Bucket":null,"previousDigestS3Object":null,"previousDigestHashValue":null,"previousDigestHashAlgorithm":null,"previousDigestSignature":null,"logFiles":[]}`))
	f.Add(bytes.Replace(seed, []byte("logs/2025"), []byte("../../25"), 1))
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := parseDigestJSON(in)
		if err != nil {
			return
		}
		for _, p := range append([]string{d.DigestS3Object}, logObjects(d)...) {
			if strings.Contains(p, "..") || path.IsAbs(p) || path.Clean(p) != p {
				t.Fatalf("accepted path %q", p)
			}
		}
		once, err := json.Marshal(d.digestFile)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := parseDigestJSON(once)
		if err != nil {
			t.Fatalf("own encoding rejected: %v\n%s", err, once)
		}
		if !reflect.DeepEqual(d.digestFile, d2.digestFile) || !d.start.Equal(d2.start) || !d.end.Equal(d2.end) {
			t.Fatal("digest changed in a round trip")
		}
		twice, _ := json.Marshal(d2.digestFile)
		if !bytes.Equal(once, twice) {
			t.Fatalf("encoding not stable\n%s\n%s", once, twice)
		}
		gz, _ := gzipBytes(in)
		d3, err := parseDigestFile(gz)
		if err != nil || !reflect.DeepEqual(d.digestFile, d3.digestFile) {
			t.Fatalf("gzip form parses differently: %v", err)
		}
	})
}

func logObjects(d *digest) []string {
	var out []string
	for _, e := range d.LogFiles {
		out = append(out, e.S3Object)
	}
	if d.PreviousDigestS3Object != nil {
		out = append(out, *d.PreviousDigestS3Object)
	}
	return out
}

// FuzzLogFile feeds arbitrary JSON, gzipped, to the log reader Lookup and
// the collector use. Property: accepted records re-encode into a log that
// parses to the same records.
func FuzzLogFile(f *testing.F) {
	j := journalSeed(2)
	lines := bytes.Split(bytes.TrimSpace(j), []byte{'\n'})
	f.Add(logJSON(lines))
	f.Add([]byte(`{"Records":[]}`))
	f.Add([]byte(`{"Records":null}`))
	f.Add([]byte(`{"Records":[{}],"x":1}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		gz, err := gzipBytes(in)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := parseLogFile(gz)
		if err != nil {
			return
		}
		var lines [][]byte
		for _, r := range recs {
			b, err := json.Marshal(r)
			if err != nil {
				return // a time whose year leaves 0-9999 when moved to UTC
			}
			lines = append(lines, b)
		}
		gz2, _ := gzipBytes(logJSON(lines))
		again, err := parseLogFile(gz2)
		if err != nil {
			t.Fatalf("re-encoded log rejected: %v", err)
		}
		if len(again) != len(recs) {
			t.Fatalf("%d records, then %d", len(recs), len(again))
		}
		for i := range recs {
			if again[i].EventID != recs[i].EventID || !again[i].EventTime.Equal(recs[i].EventTime.UTC().Truncate(1e9)) {
				t.Fatalf("record %d changed: %+v vs %+v", i, recs[i], again[i])
			}
		}
	})
}

// FuzzClassify: a path the layout accepts is relative, clean and stays
// inside the directory, so joining it to a root is safe.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"logs/2025/03/14/111122223333_Azote_local-1_20250314T0930Z_AbCdEfGhIjKlMnOp.json.gz",
		"digests/2025/03/14/111122223333_Azote-Digest_local-1_20250314T102653Z.json.gz",
		"digests/2025/03/14/111122223333_Azote-Digest_local-1_20250314T102653Z.json.gz.sig",
		"public-keys/31e8b5433410dfb61a9dc45cc65b22ff.pem",
		"../logs", "logs/../x", "/abs",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rel string) {
		if classify(rel) == kindNone {
			return
		}
		if strings.Contains(rel, "..") || path.IsAbs(rel) || path.Clean(rel) != rel || strings.ContainsAny(rel, "\\\x00") {
			t.Fatalf("accepted %q", rel)
		}
		if _, ok := nameTime(rel); !ok && classify(rel) != kindSig && classify(rel) != kindKey {
			t.Fatalf("accepted %q without a time", rel)
		}
	})
}
