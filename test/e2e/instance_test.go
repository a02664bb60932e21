package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/testutil"
)

// TestBootReady boots a real Linux guest through azoted and checks what
// the guest itself reports: the vCPUs and the memory that were asked for.
func TestBootReady(t *testing.T) {
	h := setup(t)
	inst := h.run(t, "boot", 2, 384)
	if inst.State != api.StateRunning || !inst.Ready {
		t.Fatalf("after run: state %s ready %v", inst.State, inst.Ready)
	}
	a := inst.Agent
	if a == nil {
		t.Fatal("no agent report")
	}
	if a.VCPUs != 2 {
		t.Errorf("guest sees %d vCPUs, want 2", a.VCPUs)
	}
	// The firmware keeps well under 1 MiB of low memory for itself.
	want := int64(384 << 10)
	if a.MemRAMKiB > want || a.MemRAMKiB < want-1024 {
		t.Errorf("guest RAM %d KiB, want between %d and %d", a.MemRAMKiB, want-1024, want)
	}
	if a.MemTotalKiB <= 0 || a.MemTotalKiB > a.MemRAMKiB {
		t.Errorf("guest MemTotal %d KiB against %d KiB RAM", a.MemTotalKiB, a.MemRAMKiB)
	}
	if a.Instance != inst.ID || a.InitMs <= 0 || a.ReadyMs < a.InitMs || inst.BootMs <= 0 {
		t.Errorf("timings or identity wrong: %+v boot_ms %d", a, inst.BootMs)
	}
	if inst.Engine != "qemu" || inst.PID == 0 || !pidAlive(inst.PID) {
		t.Errorf("engine %q pid %d (alive %v)", inst.Engine, inst.PID, pidAlive(inst.PID))
	}

	console := h.ok(t, "instance", "console", inst.ID)
	if !strings.Contains(console, agent.Prefix+"event=ready instance="+inst.ID) {
		t.Errorf("console lacks the ready line:\n%s", console)
	}
	var list []api.Instance
	h.okJSON(t, &list, "instance", "list")
	found := false
	for _, i := range list {
		found = found || (i.ID == inst.ID && i.State == api.StateRunning)
	}
	if !found {
		t.Errorf("instance list lacks running %s: %+v", inst.ID, list)
	}
	table := h.ok(t, "instance", "list")
	if !strings.Contains(table, inst.ID) || !strings.Contains(table, "running") {
		t.Errorf("table output lacks the instance:\n%s", table)
	}

	h.ok(t, "instance", "terminate", inst.ID)
	got := h.describe(t, inst.ID)
	if got.State != api.StateTerminated {
		t.Fatalf("after terminate: %s", got.State)
	}
	if pidAlive(inst.PID) {
		t.Errorf("engine pid %d alive after terminate", inst.PID)
	}
	if _, err := os.Stat(filepath.Join(h.state, "instances", inst.ID)); !os.IsNotExist(err) {
		t.Errorf("instance directory remains after terminate: %v", err)
	}
	h.fails(t, api.CodeIncorrectInstanceState, "instance", "start", inst.ID)
	h.fails(t, api.CodeIncorrectInstanceState, "instance", "console", inst.ID)
}

// TestLifecycle walks stop, start and reboot, with the guest's clean
// power-off and the console followed across a reboot.
func TestLifecycle(t *testing.T) {
	h := setup(t)
	inst := h.run(t, "life", 1, 256)
	h.fails(t, api.CodeIncorrectInstanceState, "instance", "start", inst.ID)

	// Follow the console across the reboot. The follower starts with the
	// tail holding the first boot's ready line; once that has arrived it
	// streams, and only then is the reboot asked for (a follower still
	// starting when the guest prints would begin after the line).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	follow := exec.CommandContext(ctx, filepath.Join(h.bin, "azote"), "instance", "console", "-f", inst.ID)
	follow.Env = cliEnv("AZOTE_SOCKET=" + h.socket)
	var followed testutil.LogBuffer
	follow.Stdout = &followed
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer follow.Wait()
	defer cancel()
	firstReady := agent.Prefix + "event=ready instance=" + inst.ID
	waitUntil(t, time.Minute, "console -f to print the first boot's ready line", func() bool {
		return strings.Contains(followed.String(), firstReady)
	}, followed.String)

	var rebooted api.Instance
	h.okJSON(t, &rebooted, "instance", "reboot", inst.ID)
	if rebooted.BootCount != inst.BootCount+1 || !rebooted.Ready || rebooted.State != api.StateRunning {
		t.Fatalf("after reboot: boots %d (was %d), ready %v, state %s", rebooted.BootCount, inst.BootCount, rebooted.Ready, rebooted.State)
	}
	if rebooted.PID != inst.PID {
		t.Errorf("reboot changed the engine process (%d → %d); it must reset the guest in place", inst.PID, rebooted.PID)
	}
	// The ready line is in the console file when reboot returns; the
	// follower shows it within its poll interval, however loaded the host.
	waitUntil(t, time.Minute, "console -f to stream the reboot and the new ready line", func() bool {
		_, after, ok := strings.Cut(followed.String(), "reboot requested by host")
		return ok && strings.Contains(after, firstReady)
	}, followed.String)
	cancel()
	follow.Wait()

	// exec through the agent's control channel: output, exit status, and
	// the session in the trail with its exit code.
	res := h.azote("instance", "exec", inst.ID, "--", "sh", "-c", "echo hello; exit 3")
	if res.code != 3 || res.stdout != "hello\n" {
		t.Fatalf("instance exec: exit %d, stdout %q, stderr %q; want 3 and hello", res.code, res.stdout, res.stderr)
	}
	var events []map[string]any
	h.okJSON(t, &events, "audit", "lookup", "--event-name", "ExecuteCommand", "--limit", "10")
	found := false
	for _, ev := range events {
		extra, _ := ev["additionalEventData"].(map[string]any)
		resp, _ := ev["responseElements"].(map[string]any)
		params, _ := ev["requestParameters"].(map[string]any)
		if extra["session"] == "end" && resp["exitStatus"] == float64(3) && resp["sessionStart"] != nil &&
			fmt.Sprint(params["command"]) == "[sh -c echo hello; exit 3]" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no ExecuteCommand end record with exit code 3 in %+v", events)
	}

	var stopped api.Instance
	h.okJSON(t, &stopped, "instance", "stop", inst.ID)
	if stopped.State != api.StateStopped || stopped.StateReason != "stopped by user" {
		t.Fatalf("after stop: %s (%s)", stopped.State, stopped.StateReason)
	}
	if pidAlive(inst.PID) {
		t.Errorf("engine pid %d alive after stop", inst.PID)
	}
	h.fails(t, api.CodeIncorrectInstanceState, "instance", "stop", inst.ID)
	h.fails(t, api.CodeIncorrectInstanceState, "instance", "reboot", inst.ID)
	if !strings.Contains(h.ok(t, "instance", "console", inst.ID), "power off requested by host") {
		t.Error("the console of a stopped instance lacks the agent's power-off line")
	}

	var started api.Instance
	h.okJSON(t, &started, "instance", "start", inst.ID)
	if started.State != api.StateRunning || !started.Ready || started.BootCount != rebooted.BootCount+1 {
		t.Fatalf("after start: %s ready %v boots %d", started.State, started.Ready, started.BootCount)
	}
	if started.PID == inst.PID || !pidAlive(started.PID) {
		t.Errorf("start: pid %d (old %d) alive %v", started.PID, inst.PID, pidAlive(started.PID))
	}
	if started.Agent == nil || started.Agent.VCPUs != 1 {
		t.Errorf("after start the agent reports %+v", started.Agent)
	}
}

// TestAzotedKilled kills azoted with SIGKILL under a running guest: the
// guest keeps running, and the next azoted re-adopts it with its state,
// console and control channel.
func TestAzotedKilled(t *testing.T) {
	h := setup(t)
	inst := h.run(t, "adopt", 1, 256)
	h.killAzoted(t)
	if !pidAlive(inst.PID) {
		t.Fatal("the engine died with azoted")
	}
	if err := h.startAzoted(); err != nil {
		t.Fatal(err)
	}
	got := h.describe(t, inst.ID)
	if got.State != api.StateRunning || got.PID != inst.PID || !got.Ready {
		t.Fatalf("after azoted restart: %s pid %d ready %v (want running pid %d)", got.State, got.PID, got.Ready, inst.PID)
	}
	if !strings.Contains(h.ok(t, "instance", "console", inst.ID), "event=ready instance="+inst.ID) {
		t.Error("console lost across azoted restart")
	}
	// The control channel and the monitor are re-adopted too.
	var rebooted api.Instance
	h.okJSON(t, &rebooted, "instance", "reboot", inst.ID)
	if rebooted.BootCount != inst.BootCount+1 || !rebooted.Ready {
		t.Fatalf("reboot after re-adoption: boots %d ready %v", rebooted.BootCount, rebooted.Ready)
	}
	var stopped api.Instance
	h.okJSON(t, &stopped, "instance", "stop", inst.ID)
	if stopped.State != api.StateStopped || pidAlive(inst.PID) {
		t.Fatalf("stop after re-adoption: %s, pid alive %v", stopped.State, pidAlive(inst.PID))
	}
}

// TestEngineKilled kills QEMU with SIGKILL: the instance fails with the
// reason, and can be started again.
func TestEngineKilled(t *testing.T) {
	h := setup(t)
	inst := h.run(t, "crash", 1, 256)
	if err := syscall.Kill(inst.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	got := h.waitFor(t, inst.ID, "failed", func(i api.Instance) bool { return i.State == api.StateFailed })
	if !strings.Contains(got.StateReason, "killed") || got.PID != 0 || got.Ready {
		t.Fatalf("failed instance: reason %q pid %d ready %v", got.StateReason, got.PID, got.Ready)
	}
	var started api.Instance
	h.okJSON(t, &started, "instance", "start", inst.ID)
	if started.State != api.StateRunning || !started.Ready {
		t.Fatalf("start after failure: %s ready %v", started.State, started.Ready)
	}
}

// TestEngineDiesWhileAzotedDown: the guest's engine dies while no azoted
// runs; the next azoted finds it gone and says so.
func TestEngineDiesWhileAzotedDown(t *testing.T) {
	h := setup(t)
	inst := h.run(t, "orphan", 1, 256)
	h.killAzoted(t)
	syscall.Kill(inst.PID, syscall.SIGKILL)
	waitUntil(t, time.Minute, fmt.Sprintf("engine pid %d to die", inst.PID), func() bool { return !pidAlive(inst.PID) }, nil)
	if err := h.startAzoted(); err != nil {
		t.Fatal(err)
	}
	got := h.describe(t, inst.ID)
	if got.State != api.StateFailed || !strings.Contains(got.StateReason, "while azoted was not running") {
		t.Fatalf("after restart: %s (%s)", got.State, got.StateReason)
	}
}
