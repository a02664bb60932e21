package instances

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
	"github.com/azote/azote/internal/cardhost"
	"github.com/azote/azote/internal/controller/images"
	"github.com/azote/azote/internal/controller/volumes"
	"github.com/azote/azote/internal/controller/vpcs"
	"github.com/azote/azote/internal/engine/enginetest"
	"github.com/azote/azote/internal/hostinfo"
	"github.com/azote/azote/internal/image"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/sandbox"
	"github.com/azote/azote/internal/store"
	"github.com/azote/azote/internal/testutil"
)

// TestMain ends the cards the tests left running (testutil.Main).
func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }

// fixture wires the three owners as azoted does, over a store in a
// temporary directory and the engine of enginetest, with no card binary
// (a card that must start fails).
type fixture struct {
	t    *testing.T
	logw io.Writer // the services' log; discarded if nil
	// grace is the network owner's RotationGrace (its default if 0).
	grace time.Duration
	dir   string
	eng   *enginetest.Engine
	db    store.Store
	imgs  *images.Service
	vols  *volumes.Service
	nets  *vpcs.Service
	s     *Service
	esc   *keymem.Buf
	// netDB, when set, is the network's own store (as a fleet's is),
	// apart from db; nil: the network's records are in db. separate
	// asks for one.
	netDB    store.Store
	separate bool
	// roles is the IAM of instance roles (nil: none).
	roles Roles
}

func newFixture(t *testing.T) *fixture { return newFixtureLog(t, nil) }

// newFixtureLog is newFixture with the services' log written to logw.
func newFixtureLog(t *testing.T, logw io.Writer) *fixture {
	return newFixtureOf(t, &fixture{logw: logw})
}

// newFixtureOf is newFixture with fx's options (logw, grace, separate).
func newFixtureOf(t *testing.T, fx *fixture) *fixture {
	fx.t, fx.dir, fx.eng = t, t.TempDir(), enginetest.New()
	fx.start()
	// An image whose blobs exist.
	for _, b := range []string{"kernel", "initrd"} {
		if err := fx.imgs.PutBlob(image.SHA384Hex([]byte(b)), strings.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fx.imgs.Create(api.CreateImageRequest{Name: "default", KernelSHA384: image.SHA384Hex([]byte("kernel")),
		InitrdSHA384: image.SHA384Hex([]byte("initrd")), Cmdline: "console=ttyS0"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fx.close)
	return fx
}

// start opens the state and repairs it, as a starting azoted does.
func (fx *fixture) start() {
	t := fx.t
	logw := fx.logw
	if logw == nil {
		logw = io.Discard
	}
	log := slog.New(slog.NewTextHandler(logw, nil))
	os.MkdirAll(filepath.Join(fx.dir, "instances"), 0o700)
	db, err := store.OpenBolt(filepath.Join(fx.dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := image.OpenBlobs(filepath.Join(fx.dir, "images"), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, esc, err := keys.OpenHost(filepath.Join(fx.dir, "host.key"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := sandbox.ParseRange(sandbox.DefaultRange)
	if err != nil {
		t.Fatal(err)
	}
	uids := sandbox.NewAllocator(r)
	event := func(string, string, map[string]any) {}
	fx.db, fx.esc = db, esc
	fx.imgs = images.New(db, blobs, log)
	fx.vols = volumes.New(volumes.Config{Dir: filepath.Join(fx.dir, "volumes"), Retention: time.Hour, Quota: 1 << 40,
		Store: db, Keys: hostKey, Images: fx.imgs, Event: event, Log: log,
		Fill: func(context.Context, *os.File, api.Image, []byte) error { return errors.New("no rootfs card here") }})
	netDB := db
	if fx.separate {
		if netDB, err = store.OpenBolt(filepath.Join(fx.dir, "net.db")); err != nil {
			t.Fatal(err)
		}
		fx.netDB = netDB
	}
	fx.nets = vpcs.New(vpcs.Config{Store: netDB, Keys: hostKey, HostID: "host-a", Event: event,
		RotationGrace: fx.grace, Log: log})
	fx.s = New(Config{Dir: filepath.Join(fx.dir, "instances"), ConsoleLimit: 1 << 20, LogLimit: 1 << 20, StopTimeout: 2 * time.Second,
		Store: db, Engine: fx.eng, Host: hostinfo.Info{Cores: 4},
		Cards: &cardhost.Host{Binary: testutil.CardBinary(t), UIDs: uids, Log: log}, UIDs: uids,
		Images: fx.imgs, Volumes: fx.vols, VPCs: fx.nets, EscrowKey: esc, Event: event, Log: log, Roles: fx.roles})
	if err := fx.s.Repair(); err != nil {
		t.Fatal(err)
	}
}

// close stops supervising, as a stopping azoted does: machines keep
// running in the engine.
func (fx *fixture) close() {
	if fx.db == nil {
		return
	}
	fx.s.Close()
	fx.vols.Close()
	fx.esc.Free()
	fx.db.Close()
	fx.db = nil
	if fx.netDB != nil {
		fx.netDB.Close()
		fx.netDB = nil
	}
}

func (fx *fixture) waitState(id, state string) api.Instance {
	fx.t.Helper()
	return testutil.WaitState(fx.t, state, func() (api.Instance, error) { return fx.s.Describe(context.Background(), id, 0, 0) })
}

func (fx *fixture) dirs() []string { return testutil.DirNames(filepath.Join(fx.dir, "instances")) }

// netStore is the store of the network's records.
func (fx *fixture) netStore() store.Store {
	if fx.netDB != nil {
		return fx.netDB
	}
	return fx.db
}
