package instances

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/testutil"
)

// TestReportFlood: a guest that floods its console with the agent's ready
// line (2,000 lines, 52 KB) and with error reports makes azoted commit
// once per boot and log a bounded number of lines, not one store
// transaction and one log record per line. A reboot after the flood is
// still seen: the next boot's ready line is acted on.
func TestReportFlood(t *testing.T) {
	const n = 2000
	quiet, _ := floodCommits(t, 0)
	flooded, logged := floodCommits(t, n)
	if flooded > quiet+1 {
		t.Errorf("%d ready lines made %d store commits over a run, reboot and stop that make %d without them", n, flooded, quiet)
	}
	if logged > reportBurst+1 {
		t.Errorf("%d error reports logged %d times, want at most %d", n, logged, reportBurst+1)
	}
}

// floodCommits runs an instance, appends n ready and n error report lines
// to its console, reboots and stops it, and returns the store commits
// made on its record from ready to stopped and how many error reports
// were logged.
func floodCommits(t *testing.T, n int) (uint64, int) {
	var log testutil.LogBuffer
	fx := newFixtureLog(t, &log)
	ctx := context.Background()
	inst, err := fx.s.Run(ctx, api.RunInstanceRequest{Name: "flood", Image: "default", VCPUs: 1, MemoryMiB: 64})
	if err != nil {
		t.Fatal(err)
	}
	inst = fx.waitState(inst.ID, api.StateRunning)
	if !inst.Ready {
		t.Fatalf("running but not ready: %+v", inst)
	}

	ready := agent.Report{Event: agent.EventReady, Instance: inst.ID, InitMs: 10, ReadyMs: 20, VCPUs: 1}.Format() + "\n"
	bad := agent.Report{Event: agent.EventError, Instance: inst.ID, Message: "flood"}.Format() + "\n"
	f, err := os.OpenFile(consolePath(fx.s.instanceDir(inst.ID)), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(strings.Repeat(ready, n) + strings.Repeat(bad, n)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	if _, err := fx.s.Reboot(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		after, err := fx.s.Describe(ctx, inst.ID, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if after.BootCount == inst.BootCount+1 && after.Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the boot after the flood never became ready: boots %d ready %v", after.BootCount, after.Ready)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The supervisor reads the whole console before it records the
	// machine's exit, so once stopped every line has been handled.
	if _, err := fx.s.Stop(ctx, inst.ID, api.StopInstanceRequest{}); err != nil {
		t.Fatal(err)
	}
	stopped := fx.waitState(inst.ID, api.StateStopped)
	return stopped.Revision - inst.Revision, strings.Count(log.String(), "msg=flood")
}

// TestReportBudget: the per-instance budget of report lines lets a burst
// through, then reportRate lines a second, and counts what it drops.
func TestReportBudget(t *testing.T) {
	var rs reports
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < reportBurst; i++ {
		if !rs.allow(t0) {
			t.Fatalf("line %d of the burst refused", i)
		}
	}
	if rs.allow(t0) {
		t.Fatal("a line past the burst allowed")
	}
	got := 0
	for i := 0; i < 100; i++ {
		if rs.allow(t0.Add(time.Second)) {
			got++
		}
	}
	if got != reportRate {
		t.Fatalf("after a second %d lines allowed, want %d", got, reportRate)
	}
	if rs.dropped != 1+100-reportRate {
		t.Fatalf("dropped %d, want %d", rs.dropped, 1+100-reportRate)
	}
	// The budget refills to the burst, no further.
	n := 0
	for rs.allow(t0.Add(time.Hour)) {
		n++
	}
	if n != reportBurst {
		t.Fatalf("after an hour %d lines allowed, want the burst %d", n, reportBurst)
	}
}
