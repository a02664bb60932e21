package audit

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func journalFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, activeDir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Join(dir, activeDir, e.Name()))
	}
	return out
}

// wantEachOnce fails t for every id of ids not found exactly once in got
// (as eventIDs counts them); where (" after recovery") ends the message.
func wantEachOnce(t testing.TB, got map[string]int, ids []string, where string) {
	t.Helper()
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("acknowledged %s found %d times%s", id, got[id], where)
		}
	}
}

func eventIDs(t testing.TB, dir string) map[string]int {
	t.Helper()
	recs, err := Lookup(dir, Filter{})
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	ids := map[string]int{}
	for _, r := range recs {
		ids[r.EventID]++
	}
	return ids
}

// TestRecoverJournal: the writer dies between an fsync and the rotation
// that would have finished the journal, with a torn line at the journal's
// end and a half-written temporary log. Nothing acknowledged is lost.
func TestRecoverJournal(t *testing.T) {
	clock := newClock()
	tr, dir := newTrail(t, clock)
	ids := appendN(t, tr, clock, 0, 4)
	if err := tr.WriteDigest(); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, appendN(t, tr, clock, 4, 6)...)
	crashed := copyTree(t, dir) // the disk as a crash now would leave it

	journals := journalFiles(t, crashed)
	if len(journals) != 1 {
		t.Fatalf("journals %v", journals)
	}
	f, _ := os.OpenFile(journals[0], os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"eventVersion":"1.08","userIdentity":{"ty`) // torn by the crash
	f.Close()
	day := filepath.Join(crashed, logsDir, "2025", "03", "14")
	os.MkdirAll(day, 0o700)
	os.WriteFile(filepath.Join(day, tempPrefix+"12345"), []byte{0x1f, 0x8b, 0x08}, 0o600)

	clock.Advance(time.Minute)
	tr2 := openTrail(t, testConfig(t, crashed, clock))
	s := tr2.Stats()
	if s.Recovered != 6 || s.Dropped != 1 {
		t.Errorf("recovered %d, dropped %d; want 6 and 1", s.Recovered, s.Dropped)
	}
	if j := journalFiles(t, crashed); len(j) != 0 {
		t.Errorf("journal left after recovery: %v", j)
	}
	if _, err := os.Stat(filepath.Join(day, tempPrefix+"12345")); !os.IsNotExist(err) {
		t.Errorf("temporary file left after recovery: %v", err)
	}
	got := eventIDs(t, crashed)
	wantEachOnce(t, got, ids, " after recovery")
	if len(got) != len(ids) {
		t.Errorf("%d records after recovery, want %d", len(got), len(ids))
	}
	// The recovered log is listed by the next digest and the chain holds.
	more := appendN(t, tr2, clock, 10, 2)
	if err := tr2.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustValidate(t, crashed)
	if rep.Digests != 2 || rep.LogFiles != 3 || rep.Pending != 0 {
		t.Errorf("after recovery: %+v", rep)
	}
	if got := eventIDs(t, crashed); len(got) != len(ids)+len(more) {
		t.Errorf("%d records at the end, want %d", len(got), len(ids)+len(more))
	}
}

// TestRecoverFinishedJournal: the crash came after the log was linked into
// place but before the journal was removed. Recovery must not deliver the
// records twice.
func TestRecoverFinishedJournal(t *testing.T) {
	clock := newClock()
	tr, dir := newTrail(t, clock)
	ids := appendN(t, tr, clock, 0, 5)
	crashed := copyTree(t, dir)
	journals := journalFiles(t, crashed)
	saved, _ := os.ReadFile(journals[0])

	// Recovery finishes the journal; then put it back, as if the crash had
	// come just before its removal.
	tr2 := openTrail(t, testConfig(t, crashed, clock))
	finished := copyTree(t, crashed)
	if err := tr2.Close(); err != nil {
		t.Fatal(err)
	}
	if len(listKind(t, finished, kindLog)) != 1 {
		t.Fatal("recovery did not write the log")
	}
	os.WriteFile(filepath.Join(finished, activeDir, filepath.Base(journals[0])), saved, 0o600)
	if got := eventIDs(t, finished); len(got) != len(ids) {
		t.Errorf("Lookup with a finished journal still present: %d distinct records, want %d", len(got), len(ids))
	}
	tr3 := openTrail(t, testConfig(t, finished, clock))
	if err := tr3.Close(); err != nil {
		t.Fatal(err)
	}
	if l := listKind(t, finished, kindLog); len(l) != 1 {
		t.Errorf("logs after second recovery: %v", l)
	}
	got := eventIDs(t, finished)
	wantEachOnce(t, got, ids, "")
	mustValidate(t, finished)
}

// TestRecoverUnsignedDigest: the crash came between writing a digest and
// its signature. Open signs it again, identically.
func TestRecoverUnsignedDigest(t *testing.T) {
	clock := newClock()
	tr, dir := newTrail(t, clock)
	appendN(t, tr, clock, 0, 3)
	if err := tr.WriteDigest(); err != nil {
		t.Fatal(err)
	}
	crashed := copyTree(t, dir)
	digests := listKind(t, crashed, kindDigest)
	sigPath := filepath.Join(crashed, digests[0]+sigSuffix)
	want, _ := os.ReadFile(sigPath)
	os.Remove(sigPath)
	tr2 := openTrail(t, testConfig(t, crashed, clock))
	got, err := os.ReadFile(sigPath)
	if err != nil || string(got) != string(want) {
		t.Errorf("signature after recovery %q, %v; want the original", got, err)
	}
	appendN(t, tr2, clock, 3, 1)
	if err := tr2.Close(); err != nil {
		t.Fatal(err)
	}
	mustValidate(t, crashed)
}

// TestKillWriter runs a trail in a child process, SIGKILLs it mid-stream
// and checks that every record the child saw acknowledged survives.
func TestKillWriter(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	key := testKey(t, 0)
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)

	cmd := exec.Command(os.Args[0], "-test.run=^TestKillWriterChild$", "-test.v")
	cmd.Env = append(os.Environ(), "AUDIT_CHILD_DIR="+dir, "AUDIT_CHILD_KEY="+keyFile)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 3000 {
		if id, ok := strings.CutPrefix(sc.Text(), "ACK "); ok && len(id) == 36 {
			acked[id] = true
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if len(acked) < 3000 {
		t.Fatalf("child acknowledged only %d records", len(acked))
	}

	tr := openTrail(t, testConfig(t, dir, nil))
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	got := eventIDs(t, dir)
	lost := 0
	for id := range acked {
		if got[id] != 1 {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged records lost or duplicated after SIGKILL", lost, len(acked))
	}
	mustValidate(t, dir)
	t.Logf("%d acknowledged, %d on disk after recovery, %d logs", len(acked), len(got), len(listKind(t, dir, kindLog)))
}

// TestKillWriterChild is the child of TestKillWriter; alone it does nothing.
func TestKillWriterChild(t *testing.T) {
	dir := os.Getenv("AUDIT_CHILD_DIR")
	if dir == "" {
		t.Skip("child process of TestKillWriter")
	}
	b, _ := os.ReadFile(os.Getenv("AUDIT_CHILD_KEY"))
	blk, _ := pem.Decode(b)
	key, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, dir, nil)
	cfg.Signer = key
	cfg.MaxFileBytes = 32 << 10 // rotate often, so the kill can land mid-rotation
	cfg.DigestEvery = 50 * time.Millisecond
	tr, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				r := testRecord(g*1_000_000 + i)
				if err := tr.Append(context.Background(), r); err != nil {
					return
				}
				mu.Lock()
				fmt.Fprintf(w, "ACK %s\n", r.EventID)
				w.Flush()
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait() // never returns: the parent kills the process
}

// TestOpenSkipsCorruptPendingLog: a log nobody has listed yet that does
// not parse is not signed into the next digest; Validate then reports it.
func TestOpenSkipsCorruptPendingLog(t *testing.T) {
	clock := newClock()
	// A record in the next journal, so that the journal head no longer
	// names the log's (TestCrashForgedLogNotSigned covers that one).
	crashed, bad := crashWithUndigestedLog(t, clock, 1)
	gz, _ := gzipBytes([]byte(`{"Records":[{"eventID":"forged"}]}`))
	os.WriteFile(filepath.Join(crashed, bad), gz, 0o600)

	clock.Advance(time.Hour)
	tr2 := openTrail(t, testConfig(t, crashed, clock))
	if n := tr2.Stats().CorruptLogs; n != 1 {
		t.Errorf("CorruptLogs = %d, want 1", n)
	}
	if err := tr2.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Validate(crashed, nil, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if k := kinds(rep); len(rep.Problems) != 1 || len(k[KindUnlisted]) != 1 || k[KindUnlisted][0] != bad {
		t.Errorf("problems %v, want %s unlisted", rep.Problems, bad)
	}
}
