package instances

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/api"
)

func (fx *fixture) runReady(name string) api.Instance {
	fx.t.Helper()
	inst, err := fx.s.Run(context.Background(), api.RunInstanceRequest{Name: name, Image: "default", VCPUs: 1, MemoryMiB: 64})
	if err != nil {
		fx.t.Fatal(err)
	}
	return fx.waitState(inst.ID, api.StateRunning)
}

// TestExec runs a command through the fake engine's agent (the real
// agent code, over a pipe) and reads its output and exit code.
func TestExec(t *testing.T) {
	fx := newFixture(t)
	inst := fx.runReady("ex")
	sess, err := fx.s.Exec(context.Background(), inst.ID, agent.OpenRequest{Argv: []string{"sh", "-c", "echo hello; exit 3"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out bytes.Buffer
	for {
		o, exit, err := sess.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if exit != nil {
			if out.String() != "hello\n" || exit.Code != 3 {
				t.Fatalf("output %q exit %+v, want hello and 3", out.String(), exit)
			}
			return
		}
		out.Write(o.Data)
	}
}

func TestExecRefusals(t *testing.T) {
	fx := newFixture(t)
	inst := fx.runReady("ex")
	ctx := context.Background()
	if _, err := fx.s.Exec(ctx, inst.ID, agent.OpenRequest{Argv: []string{"/no/such/thing"}}); !errors.Is(err, ErrCommandNotStarted) {
		t.Errorf("missing command: %v, want ErrCommandNotStarted", err)
	}
	if _, err := fx.s.Exec(ctx, inst.ID, agent.OpenRequest{}); err == nil {
		t.Error("empty command accepted")
	}
	// The per-instance bound.
	var open []*ExecSession
	for range MaxExecSessions {
		s, err := fx.s.Exec(ctx, inst.ID, agent.OpenRequest{Argv: []string{"sleep", "30"}})
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, s)
	}
	if _, err := fx.s.Exec(ctx, inst.ID, agent.OpenRequest{Argv: []string{"true"}}); !errors.Is(err, ErrTooManySessions) {
		t.Errorf("session past the bound: %v, want ErrTooManySessions", err)
	}
	for _, s := range open {
		s.Close()
	}
	// Closing gave the slots back.
	s, err := fx.s.Exec(ctx, inst.ID, agent.OpenRequest{Argv: []string{"true"}})
	if err != nil {
		t.Fatalf("after closing: %v", err)
	}
	s.Close()

	if _, err := fx.s.Stop(ctx, inst.ID, api.StopInstanceRequest{}); err != nil {
		t.Fatal(err)
	}
	fx.waitState(inst.ID, api.StateStopped)
	if _, err := fx.s.Exec(ctx, inst.ID, agent.OpenRequest{Argv: []string{"true"}}); !errors.Is(err, ErrIncorrectState) {
		t.Errorf("stopped instance: %v, want ErrIncorrectState", err)
	}
}

// TestExecNoAgent: a guest whose control port nobody answers is
// ErrAgentUnavailable within the open timeout.
func TestExecNoAgent(t *testing.T) {
	fx := newFixture(t)
	fx.eng.NoAgent()
	inst := fx.runReady("mute")
	start := time.Now()
	_, err := fx.s.Exec(context.Background(), inst.ID, agent.OpenRequest{Argv: []string{"true"}})
	if !errors.Is(err, ErrAgentUnavailable) {
		t.Fatalf("Exec = %v, want ErrAgentUnavailable", err)
	}
	if d := time.Since(start); d > agent.OpenTimeout+time.Second {
		t.Fatalf("took %v", d)
	}
	// The slot was given back.
	fx.s.execs.mu.Lock()
	n := fx.s.execs.open[inst.ID]
	fx.s.execs.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d slots held after a failed open", n)
	}
}
