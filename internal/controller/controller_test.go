package controller

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/instances"
	"github.com/azote/azote/internal/engine/enginetest"
	"github.com/azote/azote/internal/gateway"
	"github.com/azote/azote/internal/hostinfo"
	"github.com/azote/azote/internal/image"
	"github.com/azote/azote/internal/store"
	"github.com/azote/azote/internal/testutil"
)

// TestMain ends the cards the tests left running (testutil.Main).
func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }

type fixture struct {
	t    *testing.T
	cfg  Config
	eng  *enginetest.Engine
	c    *Controller
	logw io.Writer // azoted's log; discarded if nil
}

func newFixture(t *testing.T) *fixture { return newFixtureLog(t, nil) }

// newFixtureLog is newFixture with azoted's log written to logw.
func newFixtureLog(t *testing.T, logw io.Writer) *fixture {
	dir := t.TempDir()
	cfg := Config{StateDir: dir, ConsoleLimit: 1 << 20, StopTimeout: 2 * time.Second, CardBinary: testutil.CardBinary(t)}
	os.MkdirAll(filepath.Join(dir, "instances"), 0o700)
	fx := &fixture{t: t, cfg: cfg, eng: enginetest.New(), logw: logw}
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
	return testutil.WaitState(fx.t, state, func() (api.Instance, error) { return fx.c.DescribeInstance(context.Background(), id, 0, 0) })
}

func (fx *fixture) dirs() []string {
	return testutil.DirNames(filepath.Join(fx.cfg.StateDir, "instances"))
}

// An engine's error names host paths and QEMU's own words: it goes to
// azoted's log, never to the caller.
func TestEngineErrorStaysOnHost(t *testing.T) {
	logw := &testutil.LogBuffer{}
	fx := newFixtureLog(t, logw)
	secret := "qemu-system-x86_64: -drive file=/var/lib/azote/instances/i-1/vhost.sock: Permission denied"
	fx.eng.FailNext(errors.New(secret))
	_, err := fx.c.RunInstance(context.Background(), api.RunInstanceRequest{Name: "x", Image: "default", VCPUs: 1, MemoryMiB: 64})
	if !isCode(err, api.CodeEngineFailure) {
		t.Fatalf("got %v, want EngineFailure", err)
	}
	if msg := gateway.WireError(err).Message; strings.Contains(msg, "/var/lib") || strings.Contains(msg, "qemu-system") {
		t.Errorf("the caller is told %q", msg)
	}
	if !strings.Contains(logw.String(), "Permission denied") {
		t.Errorf("azoted's log lacks the engine's error: %s", logw.String())
	}
}

// A card that cannot start says why in words of the host (its binary's
// path, the state directory, its stderr): they go to azoted's log, and the
// caller gets a stable sentence that points there.
func TestCardErrorStaysOnHost(t *testing.T) {
	logw := &testutil.LogBuffer{}
	fx := newFixtureLog(t, logw)
	fx.c.Close()
	fx.cfg.CardBinary = filepath.Join(fx.cfg.StateDir, "no-such-card")
	fx.start()
	v := fx.volume("data", api.VolumePersistent)
	_, err := fx.c.RunInstance(context.Background(), api.RunInstanceRequest{Name: "x", Image: "default", VCPUs: 1, MemoryMiB: 64,
		Volumes: []api.VolumeAttachment{{Volume: v.ID}}})
	if !isCode(err, api.CodeEngineFailure) {
		t.Fatalf("got %v, want EngineFailure", err)
	}
	msg := gateway.WireError(err).Message
	if strings.Contains(msg, fx.cfg.StateDir) || strings.Contains(msg, "no-such-card") || !strings.Contains(msg, "azoted's log") {
		t.Errorf("the caller is told %q", msg)
	}
	if !strings.Contains(logw.String(), "card failure") || !strings.Contains(logw.String(), v.ID) {
		t.Errorf("azoted's log lacks the card's error: %s", logw.String())
	}
	// Nothing half-made: the volume is free again, no instance is left.
	if got, err := fx.c.DescribeVolume(context.Background(), v.ID); err != nil || got.State != api.VolumeAvailable {
		t.Errorf("volume after the failed launch: %+v %v", got, err)
	}
	if list, _ := fx.c.ListInstances(context.Background()); len(list) != 0 {
		t.Errorf("a failed launch left %v", list)
	}
}

func TestRunFailureLeavesNothing(t *testing.T) {
	fx := newFixture(t)
	fx.eng.FailNext(errors.New("boom"))
	_, err := fx.c.RunInstance(context.Background(), api.RunInstanceRequest{Name: "x", Image: "default", VCPUs: 1, MemoryMiB: 64})
	if !isCode(err, api.CodeEngineFailure) {
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
	if _, err := fx.c.RebootInstance(ctx, inst.ID); !isCode(err, api.CodeIncorrectInstanceState) {
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
	fx.c.instances.ForgetTerminated(time.Now().Add(-time.Hour))
	if _, err := fx.c.DescribeInstance(ctx, inst.ID, 0, 0); err != nil {
		t.Fatalf("a just-terminated instance was forgotten: %v", err)
	}
	fx.c.instances.ForgetTerminated(time.Now().Add(time.Second))
	if _, err := fx.c.DescribeInstance(ctx, inst.ID, 0, 0); !isCode(err, api.CodeInstanceNotFound) {
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
		c, err := newController(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), enginetest.New(), hostinfo.Info{Cores: 4})
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

// isCode tells whether the gateway answers err with code: the owners
// refuse with their own errors, and the gateway's table maps them.
func isCode(err error, code api.Code) bool {
	return err != nil && gateway.WireError(err).Code == code
}

// After a crash, start-up removes volume files no record names and
// interrupted root-volume work directories, and keeps the rest.
func TestRepairSweepsVolumeLeftovers(t *testing.T) {
	fx := newFixture(t)
	v := fx.volume("kept", api.VolumePersistent)
	fx.c.Close()
	stray := filepath.Join(fx.cfg.StateDir, "volumes", "vol-0123456789abcdef.img")
	work := filepath.Join(fx.cfg.StateDir, rootfsWorkPrefix+"123")
	os.WriteFile(stray, []byte("x"), 0o600)
	os.MkdirAll(filepath.Join(work, "root"), 0o700)
	fx.start()
	for _, p := range []string{stray, work} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s after restart: %v", p, err)
		}
	}
	if _, err := os.Stat(fx.c.volumes.File(v.ID)); err != nil {
		t.Errorf("a recorded volume's file after restart: %v", err)
	}
}

func (fx *fixture) volume(name, kind string) api.Volume {
	fx.t.Helper()
	v, err := fx.c.CreateVolume(context.Background(), api.CreateVolumeRequest{Name: name, SizeBytes: 1 << 20, Kind: kind})
	if err != nil {
		fx.t.Fatal(err)
	}
	return v
}

// attachInStore adds vols to the stored record of instance id as a launch
// with cards would have left them (the fake engine runs no cards),
// leaving every other field of the record as it is.
func (fx *fixture) attachInStore(id string, vols ...api.Volume) {
	fx.t.Helper()
	err := fx.c.store.Update(func(tx store.Tx) error {
		var r map[string]any
		if err := tx.Get(instances.Table, id, &r); err != nil {
			return err
		}
		list, _ := r["volumes"].([]any)
		for _, v := range vols {
			list = append(list, map[string]any{"volume_id": v.ID})
		}
		r["volumes"] = list
		return tx.Put(instances.Table, id, &r)
	})
	if err != nil {
		fx.t.Fatal(err)
	}
}
