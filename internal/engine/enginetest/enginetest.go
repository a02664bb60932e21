// Package enginetest is an engine for tests: it runs no guest. A machine
// "boots" by writing the agent's ready line to its console, and obeys
// stop and reboot commands, so that the bookkeeping of instances can be
// tested without QEMU. Its exec sessions are served by the real agent
// code (agent.ServeControl) over a pipe, running the commands on the
// test's own machine as the test's user.
package enginetest

import (
	"context"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/engine"
)

// Engine is the fake engine.
type Engine struct {
	mu       sync.Mutex
	failNext error
	alive    map[int]*Machine
	nextPID  int
	noAgent  bool
}

// NoAgent makes machines launched from now on have no agent on their
// control port: exec sessions get no answer.
func (f *Engine) NoAgent() {
	f.mu.Lock()
	f.noAgent = true
	f.mu.Unlock()
}

// New returns an engine with no machines.
func New() *Engine { return &Engine{alive: map[int]*Machine{}, nextPID: 1000} }

// FailNext makes the next Launch fail with err.
func (f *Engine) FailNext(err error) {
	f.mu.Lock()
	f.failNext = err
	f.mu.Unlock()
}

// Vanish forgets the machine pid as if it died while nobody watched: it
// cannot be adopted again.
func (f *Engine) Vanish(pid int) {
	f.mu.Lock()
	delete(f.alive, pid)
	f.mu.Unlock()
}

func (f *Engine) Name() string  { return "fake" }
func (f *Engine) Accel() string { return "none" }

func (f *Engine) Launch(_ context.Context, s engine.Spec) (engine.Machine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failNext; err != nil {
		f.failNext = nil
		return nil, err
	}
	f.nextPID++
	m := &Machine{eng: f, spec: s, h: engine.Handle{Engine: "fake", PID: f.nextPID, Dir: s.Dir},
		done: make(chan struct{}), resets: make(chan time.Time, 1), noAgent: f.noAgent}
	f.alive[m.h.PID] = m
	m.boot()
	return m, nil
}

func (f *Engine) Adopt(h engine.Handle, _ engine.Spec) (engine.Machine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.alive[h.PID]
	if !ok {
		return nil, engine.ErrGone
	}
	return m, nil
}

func (f *Engine) Sweep(string) int { return 0 }

// Machine is a machine of Engine.
type Machine struct {
	eng    *Engine
	spec   engine.Spec
	h      engine.Handle
	done   chan struct{}
	resets chan time.Time
	once   sync.Once
	exit   engine.Exit

	noAgent bool
	ctlMu   sync.Mutex
	ctl     *agent.Channel
}

// Exec opens a session with the machine's agent, started on first use.
func (m *Machine) Exec(ctx context.Context, req agent.OpenRequest) (*agent.Session, error) {
	select {
	case <-m.done:
		return nil, engine.ErrNotRunning
	default:
	}
	m.ctlMu.Lock()
	if m.ctl == nil {
		host, guest := net.Pipe()
		if m.noAgent {
			go io.Copy(io.Discard, guest)
		} else {
			go agent.ServeControl(guest, agent.Processes{}, func(string) {})
		}
		m.ctl = agent.NewChannel(host)
		if m.noAgent {
			m.ctl.AnswerTimeout = 300 * time.Millisecond
		}
	}
	ch := m.ctl
	m.ctlMu.Unlock()
	return ch.Open(ctx, req)
}

func (m *Machine) boot() {
	f, _ := os.OpenFile(m.spec.ConsolePath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	defer f.Close()
	r := agent.Report{Event: agent.EventReady, Instance: m.spec.InstanceID, InitMs: 10, ReadyMs: 20, VCPUs: m.spec.VCPUs, MemRAMKiB: int64(m.spec.MemoryMiB) << 10}
	io.WriteString(f, "Linux version fake\n"+r.Format()+"\n")
}

func (m *Machine) end(e engine.Exit) {
	m.once.Do(func() {
		m.exit = e
		m.eng.mu.Lock()
		delete(m.eng.alive, m.h.PID)
		m.eng.mu.Unlock()
		close(m.done)
		m.ctlMu.Lock()
		if m.ctl != nil {
			// The guest end closes with the host end: its agent goroutine
			// (or discarder) sees EOF and returns.
			go m.ctl.Close()
		}
		m.ctlMu.Unlock()
	})
}

func (m *Machine) Handle() engine.Handle    { return m.h }
func (m *Machine) Done() <-chan struct{}    { return m.done }
func (m *Machine) Exit() engine.Exit        { return m.exit }
func (m *Machine) Resets() <-chan time.Time { return m.resets }
func (m *Machine) Release()                 {}
func (m *Machine) Kill() error              { m.end(engine.Exit{Reason: "killed"}); return nil }
func (m *Machine) Quit(context.Context) error {
	m.end(engine.Exit{Clean: true, Reason: "stopped by the host"})
	return nil
}
func (m *Machine) Command(_ context.Context, cmd string) error {
	switch cmd {
	case "stop":
		m.end(engine.Exit{Clean: true, Reason: "guest powered off"})
	case "reboot":
		m.resets <- time.Now()
		time.Sleep(20 * time.Millisecond)
		m.boot()
	}
	return nil
}
