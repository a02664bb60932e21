package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSizeRotationSignsAtOnce: a log the writer finishes by size is listed
// by a digest signed at once. Before, it waited unsigned for the hourly
// digest; whoever could write the trail directory edited it, and after a
// restart Open signed the edited log as it found it.
func TestSizeRotationSignsAtOnce(t *testing.T) {
	clock := newClock()
	dir := t.TempDir()
	cfg := testConfig(t, dir, clock)
	cfg.MaxFileBytes = 2000 // ~600 bytes a record: a rotation every few records
	tr := openTrail(t, cfg)
	appendN(t, tr, clock, 0, 5)
	logs := listKind(t, dir, kindLog)
	if len(logs) == 0 {
		t.Fatal("no size rotation")
	}
	rep, err := Validate(dir, nil, time.Time{}, time.Time{})
	if err != nil || len(rep.Problems) != 0 || rep.Pending != 0 || rep.LogFiles != len(logs) {
		t.Errorf("after a size rotation: %+v, %v; want every finished log listed", rep, err)
	}

	// Someone edits the finished log, then azoted restarts.
	crashed := copyTree(t, dir)
	gz, _ := gzipBytes([]byte(`{"Records":[]}`))
	if err := os.WriteFile(filepath.Join(crashed, logs[0]), gz, 0o600); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	tr2 := openTrail(t, testConfig(t, crashed, clock))
	if err := tr2.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err = Validate(crashed, nil, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if k := kinds(rep); len(k[KindModified]) != 1 || k[KindModified][0] != logs[0] {
		t.Errorf("problems %v, want %s modified", rep.Problems, logs[0])
	}
}

// TestJournalEditNotSigned: what someone writes into the open journal (a
// record changed, a forged one appended) does not reach the log the
// rotation signs; the log holds what Append acknowledged.
func TestJournalEditNotSigned(t *testing.T) {
	clock := newClock()
	tr, dir := newTrail(t, clock)
	ids := appendN(t, tr, clock, 0, 3)
	journals := journalFiles(t, dir)
	if len(journals) != 1 {
		t.Fatalf("journals %v", journals)
	}
	b, err := os.ReadFile(journals[0])
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Replace(b, []byte(ids[1]), []byte("00000000-0000-4000-8000-000000000000"), 1)
	forged = append(forged, bytes.Replace(bytes.SplitAfter(b, []byte("\n"))[0], []byte(ids[0]), []byte("11111111-1111-4111-8111-111111111111"), 1)...)
	if err := os.WriteFile(journals[0], forged, 0o600); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, appendN(t, tr, clock, 3, 1)...)
	if err := tr.WriteDigest(); err != nil {
		t.Fatal(err)
	}
	if n := tr.JournalRestores(); n != 1 {
		t.Errorf("JournalRestores = %d, want 1", n)
	}
	got := eventIDs(t, dir)
	wantEachOnce(t, got, ids, " in the signed logs")
	for id := range got {
		if strings.HasPrefix(id, "00000000") || strings.HasPrefix(id, "11111111") {
			t.Errorf("forged record %s was signed into a log", id)
		}
	}
	mustValidate(t, dir)
}
