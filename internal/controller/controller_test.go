package controller

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/engine"
	"github.com/azote/azote/internal/hostinfo"
	"github.com/azote/azote/internal/image"
	"github.com/azote/azote/internal/store"
)

// fakeEngine runs no guest: a machine "boots" by writing the agent's ready
// line to its console, and obeys stop and reboot commands. It lets the
// controller's bookkeeping be tested without QEMU.
type fakeEngine struct {
	mu       sync.Mutex
	failNext error
	alive    map[int]*fakeMachine
	nextPID  int
}

func newFakeEngine() *fakeEngine { return &fakeEngine{alive: map[int]*fakeMachine{}, nextPID: 1000} }

func (f *fakeEngine) Name() string  { return "fake" }
func (f *fakeEngine) Accel() string { return "none" }

func (f *fakeEngine) Launch(_ context.Context, s engine.Spec) (engine.Machine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failNext; err != nil {
		f.failNext = nil
		return nil, err
	}
	f.nextPID++
	m := &fakeMachine{eng: f, spec: s, h: engine.Handle{Engine: "fake", PID: f.nextPID, Dir: s.Dir},
		done: make(chan struct{}), resets: make(chan time.Time, 1)}
	f.alive[m.h.PID] = m
	m.boot()
	return m, nil
}

func (f *fakeEngine) Adopt(h engine.Handle, _ engine.Spec) (engine.Machine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.alive[h.PID]
	if !ok {
		return nil, engine.ErrGone
	}
	return m, nil
}

func (f *fakeEngine) Sweep(string) int { return 0 }

type fakeMachine struct {
	eng    *fakeEngine
	spec   engine.Spec
	h      engine.Handle
	done   chan struct{}
	resets chan time.Time
	once   sync.Once
	exit   engine.Exit
}

func (m *fakeMachine) boot() {
	f, _ := os.OpenFile(m.spec.ConsolePath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	defer f.Close()
	r := agent.Report{Event: agent.EventReady, Instance: m.spec.InstanceID, InitMs: 10, ReadyMs: 20, VCPUs: m.spec.VCPUs, MemRAMKiB: int64(m.spec.MemoryMiB) << 10}
	io.WriteString(f, "Linux version fake\n"+r.Format()+"\n")
}

func (m *fakeMachine) end(e engine.Exit) {
	m.once.Do(func() {
		m.exit = e
		m.eng.mu.Lock()
		delete(m.eng.alive, m.h.PID)
		m.eng.mu.Unlock()
		close(m.done)
	})
}

func (m *fakeMachine) Handle() engine.Handle    { return m.h }
func (m *fakeMachine) Done() <-chan struct{}    { return m.done }
func (m *fakeMachine) Exit() engine.Exit        { return m.exit }
func (m *fakeMachine) Resets() <-chan time.Time { return m.resets }
func (m *fakeMachine) Release()                 {}
func (m *fakeMachine) Kill() error              { m.end(engine.Exit{Reason: "killed"}); return nil }
func (m *fakeMachine) Quit(context.Context) error {
	m.end(engine.Exit{Clean: true, Reason: "stopped by the host"})
	return nil
}
func (m *fakeMachine) Command(_ context.Context, cmd string) error {
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

type fixture struct {
	t    *testing.T
	cfg  Config
	eng  *fakeEngine
	c    *Controller
	logw io.Writer // azoted's log; discarded if nil
}

func newFixture(t *testing.T) *fixture { return newFixtureLog(t, nil) }

// newFixtureLog is newFixture with azoted's log written to logw.
func newFixtureLog(t *testing.T, logw io.Writer) *fixture {
	dir := t.TempDir()
	cfg := Config{StateDir: dir, ConsoleLimit: 1 << 20, StopTimeout: 2 * time.Second}
	os.MkdirAll(filepath.Join(dir, "instances"), 0o700)
	fx := &fixture{t: t, cfg: cfg, eng: newFakeEngine(), logw: logw}
	fx.start()
	// An image whose blobs exist.
	ctx := context.Background()
	for _, b := range []string{"kernel", "initrd"} {
		if err := fx.c.PutBlob(ctx, image.SHA384Hex([]byte(b)), strings.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fx.c.CreateImage(ctx, api.CreateImageRequest{Name: "default", KernelSHA384: image.SHA384Hex([]byte("kernel")),
		InitrdSHA384: image.SHA384Hex([]byte("initrd")), Cmdline: "console=ttyS0"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fx.c.Close() })
	return fx
}

func (fx *fixture) start() {
	logw := fx.logw
	if logw == nil {
		logw = io.Discard
	}
	log := slog.New(slog.NewTextHandler(logw, nil))
	c, err := newController(fx.cfg, log, fx.eng, hostinfo.Info{Cores: 4})
	if err != nil {
		fx.t.Fatal(err)
	}
	fx.c = c
}

func (fx *fixture) waitState(id, state string) api.Instance {
	fx.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		inst, err := fx.c.DescribeInstance(context.Background(), id, 0, 0)
		if err != nil {
			fx.t.Fatal(err)
		}
		if inst.State == state {
			return inst
		}
		if time.Now().After(deadline) {
			fx.t.Fatalf("instance %s: state %s (%s), want %s", id, inst.State, inst.StateReason, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (fx *fixture) dirs() []string {
	ents, _ := os.ReadDir(filepath.Join(fx.cfg.StateDir, "instances"))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// An engine's error names host paths and QEMU's own words: it goes to
// azoted's log, never to the caller.
func TestEngineErrorStaysOnHost(t *testing.T) {
	logw := &syncWriter{}
	fx := newFixtureLog(t, logw)
	secret := "qemu-system-x86_64: -drive file=/var/lib/azote/instances/i-1/vhost.sock: Permission denied"
	fx.eng.failNext = errors.New(secret)
	_, err := fx.c.RunInstance(context.Background(), api.RunInstanceRequest{Name: "x", Image: "default", VCPUs: 1, MemoryMiB: 64})
	if !api.IsCode(err, api.CodeEngineFailure) {
		t.Fatalf("got %v, want EngineFailure", err)
	}
	if msg := api.AsError(err).Message; strings.Contains(msg, "/var/lib") || strings.Contains(msg, "qemu-system") {
		t.Errorf("the caller is told %q", msg)
	}
	if !strings.Contains(logw.String(), "Permission denied") {
		t.Errorf("azoted's log lacks the engine's error: %s", logw.String())
	}
}

// syncWriter serialises writes of the controller's goroutines.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func TestRunFailureLeavesNothing(t *testing.T) {
	fx := newFixture(t)
	fx.eng.failNext = errors.New("boom")
	_, err := fx.c.RunInstance(context.Background(), api.RunInstanceRequest{Name: "x", Image: "default", VCPUs: 1, MemoryMiB: 64})
	if !api.IsCode(err, api.CodeEngineFailure) {
		t.Fatalf("got %v, want EngineFailure", err)
	}
	list, _ := fx.c.ListInstances(context.Background())
	if len(list) != 0 || len(fx.dirs()) != 0 {
		t.Fatalf("a failed launch left records %v and dirs %v", list, fx.dirs())
	}
	// The name is free.
	if _, err := fx.c.RunInstance(context.Background(), api.RunInstanceRequest{Name: "x", Image: "default", VCPUs: 1, MemoryMiB: 64}); err != nil {
		t.Fatal(err)
	}
}

func TestReadyStopStartReboot(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	inst, err := fx.c.RunInstance(ctx, api.RunInstanceRequest{Name: "a", Image: "default", VCPUs: 2, MemoryMiB: 128})
	if err != nil {
		t.Fatal(err)
	}
	got := fx.waitState(inst.ID, api.StateRunning)
	if !got.Ready || got.Agent == nil || got.Agent.VCPUs != 2 || got.BootCount != 1 {
		t.Fatalf("running: %+v", got)
	}
	// A long poll returns as soon as the revision moves.
	woke := make(chan api.Instance, 1)
	go func() {
		i, _ := fx.c.DescribeInstance(ctx, inst.ID, got.Revision, 5*time.Second)
		woke <- i
	}()
	time.Sleep(20 * time.Millisecond)
	if _, err := fx.c.RebootInstance(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case i := <-woke:
		if i.Revision == got.Revision {
			t.Fatal("long poll returned an unchanged revision")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("long poll did not wake on a change")
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		i, _ := fx.c.DescribeInstance(ctx, inst.ID, 0, 0)
		if i.BootCount == 2 && i.Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after reboot: %+v", i)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopped, err := fx.c.StopInstance(ctx, inst.ID, api.StopInstanceRequest{})
	if err != nil || stopped.State != api.StateStopped || stopped.PID != 0 {
		t.Fatalf("stop: %+v %v", stopped, err)
	}
	if _, err := fx.c.RebootInstance(ctx, inst.ID); !api.IsCode(err, api.CodeIncorrectInstanceState) {
		t.Fatalf("reboot of a stopped instance: %v", err)
	}
	if _, err := fx.c.StartInstance(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if i := fx.waitState(inst.ID, api.StateRunning); i.BootCount != 3 {
		t.Fatalf("boot count after start: %d", i.BootCount)
	}
	if _, err := fx.c.TerminateInstance(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if d := fx.dirs(); len(d) != 0 {
		t.Fatalf("terminate left %v", d)
	}
}

func TestRepairAfterCrash(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	alive, _ := fx.c.RunInstance(ctx, api.RunInstanceRequest{Name: "alive", Image: "default", VCPUs: 1, MemoryMiB: 64})
	dead, _ := fx.c.RunInstance(ctx, api.RunInstanceRequest{Name: "dead", Image: "default", VCPUs: 1, MemoryMiB: 64})
	fx.waitState(alive.ID, api.StateRunning)
	fx.waitState(dead.ID, api.StateRunning)
	fx.c.Close()

	// While azoted is down: one machine dies, a launch is caught half-way
	// (record without handle), and a directory appears with no record.
	fx.eng.mu.Lock()
	delete(fx.eng.alive, dead.PID)
	fx.eng.mu.Unlock()
	st, _ := store.OpenBolt(filepath.Join(fx.cfg.StateDir, "state.db"))
	half := instanceRecord{Instance: api.Instance{ID: "i-half", Name: "half", State: api.StatePending, ImageID: alive.ImageID, CreatedAt: time.Now()}}
	st.Update(func(tx store.Tx) error { return tx.Put(tableInstances, half.ID, &half) })
	st.Close()
	os.Mkdir(filepath.Join(fx.cfg.StateDir, "instances", "i-half"), 0o700)
	os.Mkdir(filepath.Join(fx.cfg.StateDir, "instances", "i-stray"), 0o700)

	fx.start()
	if i := fx.waitState(alive.ID, api.StateRunning); i.PID != alive.PID {
		t.Errorf("re-adopted with pid %d, want %d", i.PID, alive.PID)
	}
	d := fx.waitState(dead.ID, api.StateFailed)
	if !strings.Contains(d.StateReason, "while azoted was not running") {
		t.Errorf("dead instance reason: %q", d.StateReason)
	}
	if _, err := fx.c.DescribeInstance(ctx, "i-half", 0, 0); !api.IsCode(err, api.CodeInstanceNotFound) {
		t.Errorf("half-made launch survived repair: %v", err)
	}
	for _, dir := range fx.dirs() {
		if dir == "i-half" || dir == "i-stray" {
			t.Errorf("repair left directory %s", dir)
		}
	}
	// The re-adopted machine is still controlled.
	if s, err := fx.c.StopInstance(ctx, alive.ID, api.StopInstanceRequest{}); err != nil || s.State != api.StateStopped {
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

func TestForgetTerminated(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	inst, err := fx.c.RunInstance(ctx, api.RunInstanceRequest{Name: "old", Image: "default", VCPUs: 1, MemoryMiB: 64})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx.c.TerminateInstance(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	fx.c.forgetTerminated(time.Now().Add(-time.Hour))
	if _, err := fx.c.DescribeInstance(ctx, inst.ID, 0, 0); err != nil {
		t.Fatalf("a just-terminated instance was forgotten: %v", err)
	}
	fx.c.forgetTerminated(time.Now().Add(time.Second))
	if _, err := fx.c.DescribeInstance(ctx, inst.ID, 0, 0); !api.IsCode(err, api.CodeInstanceNotFound) {
		t.Fatalf("terminated instance past retention: %v", err)
	}
}

// TestRootfsUIDOutsideRange: azoted refuses to start when the root-volume
// helper's uid is one it would hand a card or an engine.
func TestRootfsUIDOutsideRange(t *testing.T) {
	for _, tc := range []struct {
		rootfsUID int
		uidRange  string
		ok        bool
	}{
		{65533, "100000:65536", true},
		{65533, "65000:533", true},     // 65000..65532
		{65533, "65000:534", false},    // 65000..65533
		{65533, "65533:1", false},      // the helper's id alone
		{0, "60000:5534", false},       // the default helper uid, 65533, inside
		{200000, "100000:65536", true}, // after the range
		{165535, "100000:65536", false},
		{165536, "100000:65536", true},
	} {
		cfg := Config{StateDir: t.TempDir(), RootfsUID: tc.rootfsUID, UIDRange: tc.uidRange}
		c, err := newController(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), newFakeEngine(), hostinfo.Info{Cores: 4})
		if c != nil {
			c.Close()
		}
		switch {
		case tc.ok && err != nil:
			t.Errorf("--rootfs-uid %d --uid-range %s: %v", tc.rootfsUID, tc.uidRange, err)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), "--rootfs-uid")):
			t.Errorf("--rootfs-uid %d --uid-range %s: started (err %v), want refused", tc.rootfsUID, tc.uidRange, err)
		}
	}
}
