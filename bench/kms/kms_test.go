package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The test binary is also the azoted that -cpuprofile starts.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == azotedChild {
		os.Exit(runAzoted(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// TestRun runs the whole bench with tiny durations: every cell must make
// pairs without an error, each Decrypt giving back its data key, and
// azoted's trail must hold a record for every call it answered. local-kms
// is built as the bench builds it; where it cannot be (no module proxy,
// no module cache), azoted is measured alone.
func TestRun(t *testing.T) {
	bin := t.TempDir()
	cmd := exec.Command("go", "build", "-o", bin, "github.com/azote/azote/cmd/azoted")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	c := config{bin: bin, dur: 300 * time.Millisecond, warm: 100 * time.Millisecond, rounds: 2, conc: []int{goalConc, 3}, peer: true}
	lk, err := buildLocalKMS(t.TempDir())
	if err != nil {
		t.Logf("local-kms left out: %v", err)
		c.peer = false
	}
	c.localKMS = lk
	var out, progress bytes.Buffer
	r, err := run(&out, &progress, c)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	want := 1
	if c.peer {
		want = 2
	}
	if len(r.targets) != want {
		t.Fatalf("measured %d targets, want %d", len(r.targets), want)
	}
	var azotedPairs int64
	for _, n := range c.conc {
		for _, tg := range r.targets {
			s := r.results[n][tg]
			if s.pairs <= 0 || s.errors != 0 || s.median <= 0 || s.pct(0.5) <= 0 || s.pct(0.99) < s.pct(0.5) {
				t.Errorf("%s, c=%d: %d pairs, %d errors (%s), %.0f pairs/s, p50 %v, p99 %v",
					targetNames[tg], n, s.pairs, s.errors, s.firstErr, s.median, s.pct(0.5), s.pct(0.99))
			}
		}
		azotedPairs += r.results[n][azote].pairs
	}
	// Two calls a pair, each audited before it is answered (warm-up
	// pairs and CreateKey come on top).
	if r.records < uint64(2*azotedPairs) {
		t.Errorf("azoted's trail appended %d records for %d measured pairs", r.records, azotedPairs)
	}
	if !strings.Contains(out.String(), "goal") {
		t.Errorf("the report has no verdict:\n%s", out.String())
	}
	t.Logf("\n%s", out.String())
}
