package instances

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/store"
)

func TestRepairAfterCrash(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	alive, _ := fx.s.Run(ctx, api.RunInstanceRequest{Name: "alive", Image: "default", VCPUs: 1, MemoryMiB: 64})
	dead, _ := fx.s.Run(ctx, api.RunInstanceRequest{Name: "dead", Image: "default", VCPUs: 1, MemoryMiB: 64})
	fx.waitState(alive.ID, api.StateRunning)
	fx.waitState(dead.ID, api.StateRunning)
	fx.close()

	// While azoted is down: one machine dies, a launch is caught half-way
	// (record without handle), and a directory appears with no record.
	fx.eng.Vanish(dead.PID)
	st, _ := store.OpenBolt(filepath.Join(fx.dir, "state.db"))
	half := instanceRecord{Instance: api.Instance{ID: "i-half", Name: "half", State: api.StatePending, ImageID: alive.ImageID, CreatedAt: time.Now()}}
	st.Update(func(tx store.Tx) error { return tx.Put(Table, half.ID, &half) })
	st.Close()
	os.Mkdir(filepath.Join(fx.dir, "instances", "i-half"), 0o700)
	os.Mkdir(filepath.Join(fx.dir, "instances", "i-stray"), 0o700)

	fx.start()
	if i := fx.waitState(alive.ID, api.StateRunning); i.PID != alive.PID {
		t.Errorf("re-adopted with pid %d, want %d", i.PID, alive.PID)
	}
	d := fx.waitState(dead.ID, api.StateFailed)
	if !strings.Contains(d.StateReason, "while azoted was not running") {
		t.Errorf("dead instance reason: %q", d.StateReason)
	}
	if _, err := fx.s.Describe(ctx, "i-half", 0, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("half-made launch survived repair: %v", err)
	}
	for _, dir := range fx.dirs() {
		if dir == "i-half" || dir == "i-stray" {
			t.Errorf("repair left directory %s", dir)
		}
	}
	// The re-adopted machine is still controlled.
	if s, err := fx.s.Stop(ctx, alive.ID, api.StopInstanceRequest{}); err != nil || s.State != api.StateStopped {
		t.Fatalf("stop after re-adoption: %+v %v", s, err)
	}
}

func TestBoundConsole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := strings.Repeat("x", 99) + "\n"
	for i := 0; i < 5000; i++ { // 500 KB
		f.WriteString(line)
	}
	if err := boundConsole(path, 64<<10); err != nil {
		t.Skipf("this filesystem cannot punch holes: %v", err)
	}
	var st = statBlocks(t, path)
	if st.size != 500000 {
		t.Fatalf("size changed to %d", st.size)
	}
	if st.allocated > 80<<10 {
		t.Fatalf("%d bytes still allocated, want about 64 KiB", st.allocated)
	}
	// A tail reader skips the hole and still sees whole lines, with no
	// zeros from the hole in them.
	tail := &consoleTail{path: path, off: 0}
	lines := tail.lines()
	if len(lines) < 600 || lines[len(lines)-1] != strings.TrimSuffix(line, "\n") {
		t.Fatalf("read %d lines after the hole", len(lines))
	}
	for _, l := range lines[1:] {
		if l != strings.TrimSuffix(line, "\n") {
			t.Fatalf("line after the hole: %q", l)
		}
	}
	f.WriteString(agent.Report{Event: "ready", VCPUs: 1}.Format() + "\n")
	if got := tail.lines(); len(got) != 1 || !agent.IsReport(got[0]) {
		t.Fatalf("new lines: %q", got)
	}
}
