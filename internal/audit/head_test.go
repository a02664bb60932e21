package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// crashWithJournal appends records (the first ones signed into a digest,
// the rest in the open journal), and returns a copy of the trail as a
// crash now would leave it, the open journal's path in it, and the IDs.
func crashWithJournal(t *testing.T, clock *fakeClock) (crashed, journal string, ids []string) {
	t.Helper()
	tr, dir := newTrail(t, clock)
	ids = appendN(t, tr, clock, 0, 3)
	if err := tr.WriteDigest(); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, appendN(t, tr, clock, 3, 4)...)
	crashed = copyTree(t, dir)
	j := journalFiles(t, crashed)
	if len(j) != 1 {
		t.Fatalf("journals %v", j)
	}
	return crashed, j[0], ids
}

// crashWithUndigestedLog appends records signed into a digest, finishes
// a log of two more that no digest lists yet, then appends `after` records
// to the next journal, and returns a copy of the trail as a crash now
// would leave it and that log's name (relative to the copy).
func crashWithUndigestedLog(t *testing.T, clock *fakeClock, after int) (crashed, log string) {
	t.Helper()
	tr, dir := newTrail(t, clock)
	appendN(t, tr, clock, 0, 2)
	if err := tr.WriteDigest(); err != nil {
		t.Fatal(err)
	}
	digested := map[string]bool{}
	for _, l := range listKind(t, dir, kindLog) {
		digested[l] = true
	}
	appendN(t, tr, clock, 2, 2)
	if err := tr.Rotate(); err != nil { // the log, without its digest
		t.Fatal(err)
	}
	appendN(t, tr, clock, 4, after)
	crashed = copyTree(t, dir)
	// (Names carry the minute and a random suffix, so two logs of one
	// minute sort in either order.)
	for _, l := range listKind(t, crashed, kindLog) {
		if !digested[l] {
			log = l
		}
	}
	if log == "" {
		t.Fatal("no log written after the digest")
	}
	return crashed, log
}

// wantTampered checks that start-up set one journal aside and that
// Validate reports it, and returns what Validate found, by kind.
func wantTampered(t *testing.T, s Stats, dir string) map[string][]string {
	t.Helper()
	if s.Tampered != 1 {
		t.Errorf("Tampered %d, want 1", s.Tampered)
	}
	k := validateKinds(t, dir)
	if len(k[KindTampered]) != 1 {
		t.Errorf("Validate: %v; want one %s", k, KindTampered)
	}
	return k
}

// restartAndClose opens the crashed trail, appends one record and closes
// it (which signs a digest over whatever start-up finished).
func restartAndClose(t *testing.T, dir string, clock *fakeClock) Stats {
	t.Helper()
	clock.Advance(time.Minute)
	tr := openTrail(t, testConfig(t, dir, clock))
	appendN(t, tr, clock, 100, 1)
	s := tr.Stats()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	return s
}

func validateKinds(t *testing.T, dir string) map[string][]string {
	t.Helper()
	rep, err := Validate(dir, nil, time.Time{}, time.Time{})
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return kinds(rep)
}

// lookupHas reports whether any record in the trail's logs holds s.
func lookupHas(t *testing.T, dir, s string) bool {
	t.Helper()
	recs, err := Lookup(dir, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.SourceIPAddress == s || r.RequestID == s {
			return true
		}
	}
	return false
}

func editJournal(t *testing.T, path string, edit func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, edit(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCrashEditedJournalNotSigned: after a crash, someone who can write the
// trail directory changes an acknowledged record in the open journal. The
// start-up must not sign the edit: the journal is kept aside, counted,
// and Validate reports it.
func TestCrashEditedJournalNotSigned(t *testing.T) {
	clock := newClock()
	crashed, journal, _ := crashWithJournal(t, clock)
	editJournal(t, journal, func(b []byte) []byte {
		// Same length, still valid JSON: only the hash can tell.
		return bytes.Replace(b, []byte(`"192.0.2.10"`), []byte(`"192.0.2.66"`), 1)
	})
	forged := `192.0.2.66`
	k := wantTampered(t, restartAndClose(t, crashed, clock), crashed)
	if lookupHas(t, crashed, forged) {
		t.Error("the edited record is in a log")
	}
	if _, err := os.Stat(journal + tamperedExt); err != nil {
		t.Errorf("journal not kept aside: %v", err)
	}
	if len(k) != 1 {
		t.Errorf("Validate: %v; want only %s", k, KindTampered)
	}
}

// TestCrashTruncatedJournalNotSigned: acknowledged records cut off the
// end of the open journal are a tampering, not a torn write.
func TestCrashTruncatedJournalNotSigned(t *testing.T) {
	clock := newClock()
	crashed, journal, ids := crashWithJournal(t, clock)
	editJournal(t, journal, func(b []byte) []byte {
		lines := splitLines(b)
		return b[:len(b)-len(lines[len(lines)-1])-1] // drop the last record
	})
	wantTampered(t, restartAndClose(t, crashed, clock), crashed)
	got := eventIDs(t, crashed)
	if got[ids[len(ids)-2]] != 0 {
		t.Error("a record of the truncated journal was signed into a log")
	}
}

// TestCrashDeletedJournalReported: the open journal deleted after a crash
// leaves the head naming acknowledged bytes that are gone.
func TestCrashDeletedJournalReported(t *testing.T) {
	clock := newClock()
	crashed, journal, _ := crashWithJournal(t, clock)
	os.Remove(journal)
	wantTampered(t, restartAndClose(t, crashed, clock), crashed)
}

// TestCrashForgedAppendCut: a whole, well-formed record appended to the
// open journal after a crash was never acknowledged: it is cut, and every
// acknowledged record is kept, once.
func TestCrashForgedAppendCut(t *testing.T) {
	clock := newClock()
	crashed, journal, ids := crashWithJournal(t, clock)
	editJournal(t, journal, func(b []byte) []byte {
		lines := splitLines(b)
		forged := bytes.Replace(lines[0], []byte(`"requestID":"req-3"`), []byte(`"requestID":"forged"`), 1)
		if bytes.Equal(forged, lines[0]) {
			t.Fatalf("no request ID in %s", lines[0])
		}
		return append(b, append(forged, '\n')...)
	})
	s := restartAndClose(t, crashed, clock)
	if s.Tampered != 0 || s.Dropped != 1 || s.Recovered != 4 {
		t.Errorf("tampered %d, dropped %d, recovered %d; want 0, 1, 4", s.Tampered, s.Dropped, s.Recovered)
	}
	if lookupHas(t, crashed, "forged") {
		t.Error("the appended record is in a log")
	}
	got := eventIDs(t, crashed)
	wantEachOnce(t, got, ids, "")
	mustValidate(t, crashed)
}

// TestCrashUnacknowledgedCut: records written to the journal whose head
// was never written (the crash came between the journal's fdatasync and
// the head's, or before a new journal's first head) were not acknowledged,
// and are cut.
func TestCrashUnacknowledgedCut(t *testing.T) {
	clock := newClock()
	crashed, journal, ids := crashWithJournal(t, clock)
	b, _ := os.ReadFile(journal)
	lines := splitLines(b)

	// The last batch's head was torn: the newest slot does not verify.
	head, _ := os.ReadFile(filepath.Join(crashed, headFileName))
	h0, ok0 := unmarshalHead(mustHeadKey(t), head[:headSlot])
	h1, ok1 := unmarshalHead(mustHeadKey(t), head[headSlot:2*headSlot])
	if !ok0 || !ok1 {
		t.Fatal("head slots do not verify")
	}
	newest := 0
	if h1.seq > h0.seq {
		newest = 1
	}
	head[newest*headSlot+10] ^= 0xff
	os.WriteFile(filepath.Join(crashed, headFileName), head, 0o600)

	// A journal opened just before the crash holds a batch with no head.
	other := filepath.Join(crashed, activeDir, journalName(clock.Now().Add(time.Hour), "ZZZZZZZZZZZZZZZZ"))
	os.WriteFile(other, append(bytes.Clone(lines[1]), '\n'), 0o600)

	s := restartAndClose(t, crashed, clock)
	if s.Tampered != 0 || s.Dropped != 2 || s.Recovered != 3 {
		t.Errorf("tampered %d, dropped %d, recovered %d; want 0, 2, 3", s.Tampered, s.Dropped, s.Recovered)
	}
	got := eventIDs(t, crashed)
	wantEachOnce(t, got, ids[:len(ids)-1], "")
	if got[ids[len(ids)-1]] != 0 {
		t.Error("the batch whose head was torn is in a log")
	}
	if j := journalFiles(t, crashed); len(j) != 0 {
		t.Errorf("journals left: %v", j)
	}
	mustValidate(t, crashed)
}

// TestCrashForgedHeadNotSigned: a head written without the key (or by
// another key) vouches for nothing.
func TestCrashForgedHeadNotSigned(t *testing.T) {
	clock := newClock()
	crashed, journal, _ := crashWithJournal(t, clock)
	editJournal(t, journal, func(b []byte) []byte { return append(b, b...) })
	b, _ := os.ReadFile(journal)
	h := journalHead{seq: 1 << 40, length: int64(len(b)), name: filepath.Base(journal)}
	h.sum = sha256Sum(b)
	forged := h.marshal(newMAC([]byte("not the key")), nil)
	head, _ := os.ReadFile(filepath.Join(crashed, headFileName))
	copy(head, forged)
	copy(head[headSlot:], forged)
	os.WriteFile(filepath.Join(crashed, headFileName), head, 0o600)
	wantTampered(t, restartAndClose(t, crashed, clock), crashed)
}

// TestCrashNoHeadFileUpgrade: a trail an older azoted left (no head file
// at all) is finished as found, once; from then on the head is kept.
func TestCrashNoHeadFileUpgrade(t *testing.T) {
	clock := newClock()
	crashed, _, ids := crashWithJournal(t, clock)
	os.Remove(filepath.Join(crashed, headFileName))
	s := restartAndClose(t, crashed, clock)
	if s.Tampered != 0 || s.Recovered != 4 {
		t.Errorf("tampered %d, recovered %d; want 0, 4", s.Tampered, s.Recovered)
	}
	if got := eventIDs(t, crashed); len(got) != len(ids)+1 {
		t.Errorf("%d records, want %d", len(got), len(ids)+1)
	}
	if _, err := os.Stat(filepath.Join(crashed, headFileName)); err != nil {
		t.Errorf("no head file after the upgrade: %v", err)
	}
	mustValidate(t, crashed)
}

// TestHeadFileOutsideTrail: with HeadFile outside the trail directory
// (as azoted keeps it), the trail directory holds no head.
func TestHeadFileOutsideTrail(t *testing.T) {
	clock := newClock()
	dir, state := t.TempDir(), t.TempDir()
	cfg := testConfig(t, dir, clock)
	cfg.HeadFile = filepath.Join(state, "audit-journal.head")
	tr := openTrail(t, cfg)
	appendN(t, tr, clock, 0, 2)
	journal := journalFiles(t, dir)[0]
	b, _ := os.ReadFile(journal)
	os.WriteFile(journal, []byte(strings.Replace(string(b), "req-0", "req-X", 1)), 0o600)
	crashed := copyTree(t, dir)
	cfg.Dir = crashed
	tr2 := openTrail(t, cfg)
	if s := tr2.Stats(); s.Tampered != 1 {
		t.Errorf("Tampered %d, want 1", s.Tampered)
	}
	if _, err := os.Stat(filepath.Join(dir, headFileName)); err == nil {
		t.Error("head file in the trail directory")
	}
}

func mustHeadKey(t *testing.T) []byte {
	t.Helper()
	k, err := headKey(testKey(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

func newMAC(key []byte) hash.Hash { return hmac.New(sha256.New, key) }

// TestCrashForgedLogNotSigned: the crash came between a rotation's log and
// its digest, and someone replaced that log. The head still names its
// journal, and the log does not hold what the head vouches for: it is not
// signed.
func TestCrashForgedLogNotSigned(t *testing.T) {
	clock := newClock()
	crashed, victim := crashWithUndigestedLog(t, clock, 0)
	// A well-formed log, as finishJournal would write it, of one record
	// with another request ID.
	gz, _ := os.ReadFile(filepath.Join(crashed, victim))
	body, err := gunzip(gz, maxLogJSON)
	if err != nil {
		t.Fatal(err)
	}
	body = bytes.Replace(body, []byte(`"requestID":"req-2"`), []byte(`"requestID":"forged"`), 1)
	gz, _ = gzipBytes(body)
	os.WriteFile(filepath.Join(crashed, victim), gz, 0o600)

	k := wantTampered(t, restartAndClose(t, crashed, clock), crashed)
	if len(k[KindUnlisted]) != 1 || k[KindUnlisted][0] != victim {
		t.Errorf("Validate: %v; want %s unlisted and one %s", k, victim, KindTampered)
	}
}
