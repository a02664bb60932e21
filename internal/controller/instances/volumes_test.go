package instances

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/volumes"
	"github.com/azote/azote/internal/store"
)

// The fake engine runs no cards, so these tests put instances with
// volumes into the store themselves, as a launch would have left them.

func (fx *fixture) volume(name, kind string) api.Volume {
	fx.t.Helper()
	v, err := fx.vols.Create(context.Background(), api.CreateVolumeRequest{Name: name, SizeBytes: 1 << 20, Kind: kind})
	if err != nil {
		fx.t.Fatal(err)
	}
	return v
}

// stoppedWith makes a stopped instance with vols attached (the first as
// root if root is set).
func (fx *fixture) stoppedWith(name string, root bool, vols ...api.Volume) api.Instance {
	fx.t.Helper()
	ctx := context.Background()
	inst, err := fx.s.Run(ctx, api.RunInstanceRequest{Name: name, Image: "default", VCPUs: 1, MemoryMiB: 64})
	if err != nil {
		fx.t.Fatal(err)
	}
	fx.waitState(inst.ID, api.StateRunning)
	if _, err := fx.s.Stop(ctx, inst.ID, api.StopInstanceRequest{}); err != nil {
		fx.t.Fatal(err)
	}
	err = fx.db.Update(func(tx store.Tx) error {
		var r instanceRecord
		if err := tx.Get(Table, inst.ID, &r); err != nil {
			return err
		}
		for i, v := range vols {
			if _, err := volumes.ClaimTx(tx, v.ID, inst.ID, false); err != nil {
				return err
			}
			r.Volumes = append(r.Volumes, api.InstanceVolume{VolumeID: v.ID, Root: root && i == 0})
		}
		return tx.Put(Table, r.ID, &r)
	})
	if err != nil {
		fx.t.Fatal(err)
	}
	return inst
}

func (fx *fixture) volumeState(id string) api.Volume {
	fx.t.Helper()
	v, err := fx.vols.Resolve(id)
	if err != nil {
		fx.t.Fatalf("volume %s: %v", id, err)
	}
	return v.Volume
}

// waitBlocked waits until a goroutine is blocked inside fn (a function
// name as in a stack trace) on a mutex.
func waitBlocked(t *testing.T, fn string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, 1<<20)
	for {
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, fn) && strings.Contains(g, "sync.(*Mutex).Lock") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine blocked in %s", fn)
		}
		time.Sleep(time.Millisecond)
	}
}

// A detach that looked the volume up before a concurrent detach and
// re-attach must not release the volume from its new instance.
func TestDetachRacingReattach(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	v := fx.volume("data", api.VolumePersistent)
	i1 := fx.stoppedWith("one", false, v)
	i2 := fx.stoppedWith("two", false)

	_, _, unlock, err := fx.s.lockInstance(i1.ID)
	if err != nil {
		t.Fatal(err)
	}
	late := make(chan error, 1)
	go func() {
		_, err := fx.s.DetachVolume(ctx, v.ID)
		late <- err
	}()
	waitBlocked(t, "DetachVolume")
	// Meanwhile another detach finished and the volume moved to i2.
	if err := fx.db.Update(func(tx store.Tx) error {
		if _, _, err := volumes.ReleaseTx(tx, v.ID, i1.ID); err != nil {
			return err
		}
		var r instanceRecord
		if err := tx.Get(Table, i1.ID, &r); err != nil {
			return err
		}
		r.Volumes = nil
		return tx.Put(Table, r.ID, &r)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.s.AttachVolume(ctx, v.ID, api.AttachVolumeRequest{Instance: i2.ID}); err != nil {
		t.Fatal(err)
	}
	unlock()
	if err := <-late; !errors.Is(err, volumes.ErrIncorrectState) {
		t.Fatalf("the late detach: %v, want IncorrectVolumeState", err)
	}
	if got := fx.volumeState(v.ID); got.State != api.VolumeInUse || got.AttachedTo != i2.ID {
		t.Fatalf("volume after the late detach: %s attached to %q, want in-use by %s", got.State, got.AttachedTo, i2.ID)
	}
	if _, err := fx.vols.Delete(v.ID, true); !errors.Is(err, volumes.ErrInUse) {
		t.Fatalf("delete of a volume in use: %v", err)
	}
}

func TestRootVolumeStaysAttached(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	root, data := fx.volume("root", api.VolumePersistent), fx.volume("data", api.VolumePersistent)
	inst := fx.stoppedWith("vm", true, root, data)
	if _, err := fx.s.DetachVolume(ctx, root.ID); !errors.Is(err, volumes.ErrIncorrectState) || !strings.Contains(err.Error(), "root volume") {
		t.Fatalf("detaching the root volume: %v", err)
	}
	if _, err := fx.s.DetachVolume(ctx, data.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.s.AttachVolume(ctx, data.ID, api.AttachVolumeRequest{Instance: inst.ID}); err != nil {
		t.Fatal(err)
	}
	got, _ := fx.s.Describe(ctx, inst.ID, 0, 0)
	if len(got.Volumes) != 2 || got.Volumes[0].VolumeID != root.ID || !got.Volumes[0].Root || got.Volumes[1].Root {
		t.Fatalf("volumes after detach and attach: %+v", got.Volumes)
	}
	if _, err := fx.s.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	for _, v := range []api.Volume{root, data} {
		if got := fx.volumeState(v.ID); got.State != api.VolumeAvailable {
			t.Fatalf("%s after terminate: %s", v.Name, got.State)
		}
	}
}

// Terminate destroys an instance-store volume; one whose record was
// already detached and re-attached elsewhere is not touched.
func TestTerminateErasesOnlyItsInstanceStore(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	scratch := fx.volume("scratch", api.VolumeInstanceStore)
	inst := fx.stoppedWith("vm", false, scratch)
	if _, err := fx.s.Terminate(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.vols.Resolve(scratch.ID); !errors.Is(err, volumes.ErrNotFound) {
		t.Fatalf("instance-store volume after terminate: %v", err)
	}
	if _, err := os.Stat(fx.vols.File(scratch.ID)); !os.IsNotExist(err) {
		t.Fatalf("instance-store file after terminate: %v", err)
	}

	// A stale entry: the instance's list still names a volume that
	// belongs to another instance now.
	other := fx.volume("other", api.VolumeInstanceStore)
	a := fx.stoppedWith("a", false, other)
	b := fx.stoppedWith("b", false)
	if err := fx.db.Update(func(tx store.Tx) error {
		var r instanceRecord
		if err := tx.Get(Table, b.ID, &r); err != nil {
			return err
		}
		r.Volumes = append(r.Volumes, api.InstanceVolume{VolumeID: other.ID})
		return tx.Put(Table, r.ID, &r)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.s.Terminate(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if got := fx.volumeState(other.ID); got.State != api.VolumeInUse || got.AttachedTo != a.ID {
		t.Fatalf("another instance's volume after terminate: %s attached to %q", got.State, got.AttachedTo)
	}
}

// A card that no record names (azoted died between starting and recording
// it) is killed when its instance is re-adopted, not left serving.
func TestRepairKillsUnrecordedCard(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	v := fx.volume("data", api.VolumePersistent)
	inst, err := fx.s.Run(ctx, api.RunInstanceRequest{Name: "vm", Image: "default", VCPUs: 1, MemoryMiB: 64})
	if err != nil {
		t.Fatal(err)
	}
	fx.waitState(inst.ID, api.StateRunning)
	fx.close()
	st, err := store.OpenBolt(filepath.Join(fx.dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(func(tx store.Tx) error {
		var r instanceRecord
		if err := tx.Get(Table, inst.ID, &r); err != nil {
			return err
		}
		var vr volumes.Record
		if err := tx.Get(volumes.Table, v.ID, &vr); err != nil {
			return err
		}
		vr.State, vr.AttachedTo = api.VolumeInUse, inst.ID
		r.Volumes = append(r.Volumes, api.InstanceVolume{VolumeID: v.ID})
		if err := tx.Put(volumes.Table, v.ID, &vr); err != nil {
			return err
		}
		return tx.Put(Table, r.ID, &r)
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	// A process whose command line carries the card's marker.
	card := exec.Command("sh", "-c", "sleep 60; :", "azote-card", "blk", "--socket", fx.s.cardSocket(inst.ID, v.ID))
	card.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := card.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- card.Wait() }()
	t.Cleanup(func() { syscall.Kill(-card.Process.Pid, syscall.SIGKILL) })

	fx.start() // re-adopts the instance; there is no card binary to restart it with
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the unrecorded card is still running after re-adoption")
	}
}
