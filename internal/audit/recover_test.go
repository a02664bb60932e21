package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// failWrites makes every journal write of tr fail with err until undone.
func failWrites(tr *Trail, err error) { tr.writeFault.Store(&err) }
func healWrites(tr *Trail)            { tr.writeFault.Store(nil) }

// appendUntil appends a record until one is accepted, or fails t at the
// deadline.
func appendUntil(t *testing.T, tr *Trail, i int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := tr.Append(context.Background(), testRecord(i))
		if err == nil {
			return
		}
		if !errors.Is(err, ErrFailed) {
			t.Fatalf("Append while recovering: %v, want ErrFailed or success", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the trail did not recover within %v: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func requestIDs(t *testing.T, tr *Trail) []string {
	t.Helper()
	recs, err := tr.Lookup(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := len(recs) - 1; i >= 0; i-- { // Lookup answers newest first
		ids = append(ids, recs[i].RequestID)
	}
	return ids
}

// A failed journal write refuses Appends only until the trail can write
// again: no restart. What was acknowledged before is kept, what failed is
// not resurrected, and the chain validates.
func TestRecoversAfterWriteFailure(t *testing.T) {
	clock := newClock()
	tr, dir := newTrail(t, clock)
	appendN(t, tr, clock, 0, 3)

	failWrites(tr, syscall.ENOSPC)
	for i := 100; i < 103; i++ {
		if err := tr.Append(context.Background(), testRecord(i)); !errors.Is(err, ErrFailed) {
			t.Fatalf("Append on a full disk: %v, want ErrFailed", err)
		}
	}
	// Still failing after the recovery delay: refused, not half-written.
	time.Sleep(recoverDelay + 100*time.Millisecond)
	if err := tr.Append(context.Background(), testRecord(103)); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append while the disk is still full: %v, want ErrFailed", err)
	}

	if !errors.Is(tr.Err(), ErrFailed) {
		t.Fatalf("Err while failed: %v", tr.Err())
	}
	healWrites(tr)
	appendUntil(t, tr, 3, 5*time.Second)
	if err := tr.Err(); err != nil {
		t.Fatalf("Err after recovery: %v", err)
	}
	appendN(t, tr, clock, 4, 2)

	got := strings.Join(requestIDs(t, tr), ",")
	if want := "req-0,req-1,req-2,req-3,req-4,req-5"; got != want {
		t.Fatalf("records after recovery: %s, want %s", got, want)
	}
	if st := tr.Stats(); st.Recoveries != 1 || st.WriteErrors == 0 {
		t.Fatalf("stats: %+v, want one recovery after write errors", st)
	}
	if err := tr.WriteDigest(); err != nil {
		t.Fatal(err)
	}
	mustValidate(t, dir)
}

// With no Append to try it, the writer recovers on its own once it can
// write, and periodic work (digests) resumes.
func TestRecoversInBackground(t *testing.T) {
	tr, dir := newTrail(t, nil)
	appendN(t, tr, nil, 0, 2)
	failWrites(tr, syscall.EIO)
	if err := tr.Append(context.Background(), testRecord(9)); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append on a failing device: %v, want ErrFailed", err)
	}
	healWrites(tr)
	deadline := time.Now().Add(5 * time.Second)
	for tr.Stats().Recoveries == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the trail did not recover in the background")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := tr.WriteDigest(); err != nil {
		t.Fatalf("digest after recovery: %v", err)
	}
	if got := strings.Join(requestIDs(t, tr), ","); got != "req-0,req-1" {
		t.Fatalf("records: %s, want req-0,req-1 (the failed one is not resurrected)", got)
	}
	mustValidate(t, dir)
}

// The same on a real full file system: a small tmpfs is filled, the trail
// fails, space is freed, and it writes again without being reopened.
func TestRecoversOnFullFileSystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	trailDir := filepath.Join(dir, "trail")
	clock := newClock()
	tr := openTrail(t, testConfig(t, trailDir, clock))
	appendN(t, tr, clock, 0, 2)

	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break // full
		}
	}
	f.Close()
	big := testRecord(50)
	big.RequestParameters = map[string]any{"pad": strings.Repeat("x", 256<<10)}
	if err := tr.Append(context.Background(), big); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append on a full file system: %v, want ErrFailed", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	appendUntil(t, tr, 2, 5*time.Second)
	if got := strings.Join(requestIDs(t, tr), ","); got != "req-0,req-1,req-2" {
		t.Fatalf("records: %s", got)
	}
	if err := tr.WriteDigest(); err != nil {
		t.Fatal(err)
	}
	mustValidate(t, trailDir)
}

// Strings a client chooses are cut to their bounds in what is written; the
// caller's record is not changed.
func TestAppendBoundsClientStrings(t *testing.T) {
	tr, _ := newTrail(t, nil)
	huge := strings.Repeat("A", 1<<20)
	r := testRecord(1)
	r.UserAgent = huge
	r.ErrorCode = "X"
	r.ErrorMessage = huge
	r.UserIdentity.AccessKeyID = huge
	r.UserIdentity.Type = "Unknown"
	r.SourceIPAddress = huge
	res := []Resource{{ARN: "arn:ok"}, {ARN: huge}}
	r.Resources = res
	if err := tr.Append(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if res[1].ARN != huge {
		t.Fatal("Append changed the caller's resources")
	}
	recs, err := tr.Lookup(Filter{})
	if err != nil || len(recs) != 1 {
		t.Fatalf("Lookup: %v, %d records", err, len(recs))
	}
	got := recs[0]
	for name, c := range map[string]struct {
		s   string
		max int
	}{
		"userAgent":       {got.UserAgent, MaxFieldBytes},
		"errorMessage":    {got.ErrorMessage, MaxMessageBytes},
		"accessKeyId":     {got.UserIdentity.AccessKeyID, MaxFieldBytes},
		"sourceIPAddress": {got.SourceIPAddress, MaxFieldBytes},
		"resources[1]":    {got.Resources[1].ARN, MaxFieldBytes},
	} {
		if len(c.s) > c.max || !strings.HasPrefix(c.s, "AAAA") || !strings.HasSuffix(c.s, truncMark) {
			t.Errorf("%s: %d bytes (limit %d), ends %q", name, len(c.s), c.max, c.s[max(0, len(c.s)-20):])
		}
	}
	if got.Resources[0].ARN != "arn:ok" {
		t.Errorf("a short ARN was changed: %q", got.Resources[0].ARN)
	}
	fi, err := os.Stat(tr.journalPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 16<<10 {
		t.Errorf("a record of megabytes of client strings took %d bytes", fi.Size())
	}
}

func TestTruncate(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{strings.Repeat("a", 30), 20, "aaaaaa" + truncMark},
		{"ééééééééééééé", 17, "é" + truncMark},  // é is 2 bytes: no half rune
		{"aéééééééééééé", 17, "aé" + truncMark}, // a whole rune fits
		{strings.Repeat("a", 30), 5, truncMark[:5]},
	} {
		got := Truncate(c.s, c.n)
		if got != c.want || len(got) > max(c.n, 0) || !utf8.ValidString(got) {
			t.Errorf("Truncate(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
		}
	}
}
