package volumes

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
	"github.com/azote/azote/internal/controller/images"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/image"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/store"
)

type fixture struct {
	t      *testing.T
	dir    string
	db     store.Store
	s      *Service
	events []string
	fill   FillFunc
}

// newFixture is a volume owner over a store in a temporary directory,
// with a quota of quota bytes, an image "default" and the host key.
func newFixture(t *testing.T, quota int64) *fixture {
	fx := &fixture{t: t, dir: t.TempDir()}
	db, err := store.OpenBolt(filepath.Join(fx.dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	blobs, err := image.OpenBlobs(filepath.Join(fx.dir, "images"), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, esc, err := keys.OpenHost(filepath.Join(fx.dir, "host.key"))
	if err != nil {
		t.Fatal(err)
	}
	esc.Free()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	imgs := images.New(db, blobs, log)
	var ds []string
	for _, b := range []string{"kernel", "initrd"} {
		d := image.SHA384Hex([]byte(b))
		if err := imgs.PutBlob(d, strings.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	if _, err := imgs.Create(api.CreateImageRequest{Name: "default", KernelSHA384: ds[0], InitrdSHA384: ds[1]}); err != nil {
		t.Fatal(err)
	}
	fx.db = db
	fx.s = New(Config{Dir: filepath.Join(fx.dir, "volumes"), Retention: time.Hour, Quota: quota,
		Store: db, Keys: hostKey, Images: imgs, Log: log,
		Fill: func(ctx context.Context, f *os.File, img api.Image, key []byte) error {
			return fx.fill(ctx, f, img, key)
		},
		Event: func(name, resource string, _ map[string]any) { fx.events = append(fx.events, name+" "+resource) }})
	t.Cleanup(fx.s.Close)
	return fx
}

func (fx *fixture) create(req api.CreateVolumeRequest) api.Volume {
	fx.t.Helper()
	v, err := fx.s.Create(context.Background(), req)
	if err != nil {
		fx.t.Fatal(err)
	}
	return v
}

func (fx *fixture) files() []string {
	m, _ := filepath.Glob(filepath.Join(fx.dir, "volumes", "*"))
	return m
}

// A purge decided on before a restore (the janitor's list) is not carried
// out; a purge of a volume that is due is.
func TestPurgeLosesToRestore(t *testing.T) {
	fx := newFixture(t, 1<<30)
	v := fx.create(api.CreateVolumeRequest{Name: "keep", SizeBytes: 1 << 20, Kind: api.VolumePersistent})
	if _, err := fx.s.Delete(v.ID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.s.Restore(v.ID); err != nil {
		t.Fatal(err)
	}
	if err := fx.s.Purge(v.ID); !errors.Is(err, ErrIncorrectState) {
		t.Fatalf("purging a restored volume: %v", err)
	}
	if got, _ := fx.s.Get(v.ID); got.State != api.VolumeAvailable {
		t.Fatalf("restored volume is %s", got.State)
	}
	if _, err := os.Stat(fx.s.File(v.ID)); err != nil {
		t.Fatalf("restored volume's file: %v", err)
	}
	// Deleted but not yet due: still not purged.
	if _, err := fx.s.Delete(v.ID, false); err != nil {
		t.Fatal(err)
	}
	if err := fx.s.Purge(v.ID); !errors.Is(err, ErrIncorrectState) {
		t.Fatalf("purging a volume inside its retention: %v", err)
	}
	if _, err := fx.s.Delete(v.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.s.Resolve(v.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete --now: %v", err)
	}
	if _, err := os.Stat(fx.s.File(v.ID)); !os.IsNotExist(err) {
		t.Fatalf("file after delete --now: %v", err)
	}
}

// A volume whose fill fails (a hostile image, a cancelled caller) leaves
// no file, no record and no quota held.
func TestCreateFromImageLeavesNothingOnFailure(t *testing.T) {
	fx := newFixture(t, 64<<20)
	var filled *os.File
	fx.fill = func(_ context.Context, f *os.File, img api.Image, key []byte) error {
		filled = f
		if img.Name != "default" || len(key) != KeyBytes {
			t.Errorf("filled from %q with a key of %d bytes", img.Name, len(key))
		}
		return refusal.New(refusal.ErrInvalidParameter, "image cannot become a root volume")
	}
	_, err := fx.s.Create(context.Background(), api.CreateVolumeRequest{Name: "root", SizeBytes: 48 << 20, Kind: api.VolumePersistent, Image: "default"})
	if !errors.Is(err, refusal.ErrInvalidParameter) || filled == nil {
		t.Fatalf("create with a failing fill: %v (fill called: %v)", err, filled != nil)
	}
	if f := fx.files(); len(f) != 0 {
		t.Fatalf("a failed create left files %v", f)
	}
	if l, _ := fx.s.List(); len(l) != 0 {
		t.Fatalf("a failed create left records %v", l)
	}
	// The whole quota is free again.
	fx.fill = func(context.Context, *os.File, api.Image, []byte) error { return nil }
	fx.create(api.CreateVolumeRequest{Name: "root", SizeBytes: 64 << 20, Kind: api.VolumePersistent, Image: "default"})
	if _, err := fx.s.Create(context.Background(), api.CreateVolumeRequest{Name: "more", SizeBytes: 1 << 20, Kind: api.VolumePersistent}); !errors.Is(err, refusal.ErrQuotaExceeded) {
		t.Fatalf("past the quota: %v", err)
	}
}

// Claims and releases are what instances make inside their transactions:
// one claim at a time, a release only by the instance that holds the
// volume, and an instance-store volume dies with its instance.
func TestClaimRelease(t *testing.T) {
	fx := newFixture(t, 1<<30)
	p := fx.create(api.CreateVolumeRequest{Name: "p", SizeBytes: 1 << 20, Kind: api.VolumePersistent})
	e := fx.create(api.CreateVolumeRequest{Name: "e", SizeBytes: 1 << 20, Kind: api.VolumeInstanceStore})
	tx := func(fn func(tx store.Tx) error) error { return fx.db.Update(fn) }
	if err := tx(func(tx store.Tx) error { _, err := ClaimTx(tx, "p", "i-1", true); return err }); err != nil {
		t.Fatal(err)
	}
	if err := tx(func(tx store.Tx) error { _, err := ClaimTx(tx, p.ID, "i-2", false); return err }); !errors.Is(err, ErrInUse) {
		t.Fatalf("a second claim: %v", err)
	}
	var released bool
	if err := tx(func(tx store.Tx) (err error) { _, released, err = ReleaseTx(tx, p.ID, "i-2"); return }); err != nil || released {
		t.Fatalf("a release by another instance: released %v, %v", released, err)
	}
	if got, _ := fx.s.Get(p.ID); got.State != api.VolumeInUse || got.AttachedTo != "i-1" || !got.ReadOnly {
		t.Fatalf("after the claim: %+v", got.Volume)
	}
	if err := tx(func(tx store.Tx) (err error) { _, released, err = ReleaseTx(tx, p.ID, "i-1"); return }); err != nil || !released {
		t.Fatalf("the holder's release: released %v, %v", released, err)
	}
	if _, err := fx.s.Delete(p.ID, false); err != nil {
		t.Fatalf("delete after release: %v", err)
	}
	if err := tx(func(tx store.Tx) error { _, err := ClaimTx(tx, p.ID, "i-1", false); return err }); !errors.Is(err, ErrIncorrectState) {
		t.Fatalf("claim of a deleted volume: %v", err)
	}
	// Ending: a persistent volume is released, an instance-store one is
	// deleted and due in the same transaction.
	var purge bool
	if err := tx(func(tx store.Tx) error { _, err := ClaimTx(tx, e.ID, "i-1", false); return err }); err != nil {
		t.Fatal(err)
	}
	if err := tx(func(tx store.Tx) (err error) { purge, err = EndTx(tx, e.ID, "i-1"); return }); err != nil || !purge {
		t.Fatalf("end of an instance-store volume: purge %v, %v", purge, err)
	}
	if got, _ := fx.s.Get(e.ID); got.State != api.VolumeDeleted || got.PurgeAt == nil || got.PurgeAt.After(time.Now()) {
		t.Fatalf("instance-store volume after its instance ended: %+v", got.Volume)
	}
	if err := fx.s.Purge(e.ID); err != nil {
		t.Fatal(err)
	}
	if err := tx(func(tx store.Tx) (err error) { purge, err = EndTx(tx, e.ID, "i-1"); return }); err != nil || purge {
		t.Fatalf("end of a purged volume: purge %v, %v", purge, err)
	}
}

// A persistent volume's key comes back as it was wrapped; an
// instance-store key is made once per launch, kept for restarts, and never
// made afresh for a restart once forgotten.
func TestLaunchKeys(t *testing.T) {
	fx := newFixture(t, 1<<30)
	fx.fill = func(context.Context, *os.File, api.Image, []byte) error { return nil }
	p := fx.create(api.CreateVolumeRequest{Name: "p", SizeBytes: 1 << 20, Kind: api.VolumePersistent})
	e := fx.create(api.CreateVolumeRequest{Name: "e", SizeBytes: 1 << 20, Kind: api.VolumeInstanceStore})
	plain := fx.create(api.CreateVolumeRequest{Name: "plain", SizeBytes: 1 << 20, Kind: api.VolumePersistent, Plaintext: true})
	key := func(id string, restart bool) []byte {
		t.Helper()
		v, err := fx.s.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		k, err := fx.s.LaunchKey(v, restart)
		if err != nil {
			t.Fatalf("key of %s (restart %v): %v", id, restart, err)
		}
		if k == nil {
			return nil
		}
		defer k.Free()
		return append([]byte(nil), k.Bytes()...)
	}
	if k := key(plain.ID, false); k != nil {
		t.Fatal("a plaintext volume got a key")
	}
	if a, b := key(p.ID, false), key(p.ID, true); len(a) != KeyBytes || string(a) != string(b) {
		t.Fatal("a persistent volume's key changed between unwraps")
	}
	first := key(e.ID, false)
	if again := key(e.ID, true); string(again) != string(first) {
		t.Fatal("a card restart got another instance-store key")
	}
	fx.s.ForgetKey(e.ID)
	v, _ := fx.s.Get(e.ID)
	if _, err := fx.s.LaunchKey(v, true); !errors.Is(err, ErrEphemeralKeyGone) {
		t.Fatalf("a restart after the key was forgotten: %v", err)
	}
	if next := key(e.ID, false); string(next) == string(first) {
		t.Fatal("a new launch reused the last launch's instance-store key")
	}
	if len(fx.events) == 0 || !strings.HasPrefix(fx.events[0], "VolumeKeyUse volume/") {
		t.Fatalf("key uses were not audited: %q", fx.events)
	}
}
