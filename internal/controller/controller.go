package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/sigv4"
	"github.com/azote/azote/internal/audit"
	"github.com/azote/azote/internal/cardhost"
	"github.com/azote/azote/internal/controller/images"
	"github.com/azote/azote/internal/controller/instances"
	"github.com/azote/azote/internal/controller/keypairs"
	"github.com/azote/azote/internal/controller/volumes"
	"github.com/azote/azote/internal/controller/vpcs"
	"github.com/azote/azote/internal/engine"
	"github.com/azote/azote/internal/gateway"
	"github.com/azote/azote/internal/hostinfo"
	"github.com/azote/azote/internal/iam"
	"github.com/azote/azote/internal/image"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/kms"
	"github.com/azote/azote/internal/sandbox"
	"github.com/azote/azote/internal/store"
	"github.com/azote/azote/internal/store/etcd"
)

// Version is azoted's version string.
const Version = "0.1.0"

// Controller is one azoted: the wiring of its owners (images, volumes,
// VPCs, instances, IAM, the audit trail) and the façade the gateway calls
// (gateway.Backend).
type Controller struct {
	cfg   Config
	log   *slog.Logger
	store store.Store
	iam   *iam.Service
	kms   *kms.Service
	trail *audit.Trail

	images    *images.Service
	volumes   *volumes.Service
	vpcs      *vpcs.Service
	instances *instances.Service
	keyPairs  *keypairs.Service
	// identityPEM is the public part of the key that signs instance
	// identity documents (GET /v1/host/identity-key).
	identityPEM []byte

	started time.Time
	// sigMark bounds the dates of signed requests accepted ahead of the
	// host clock, across restarts (sigv4.Mark).
	sigMark *sigv4.Mark
	// escrowKey proves azoted to instance-store cards.
	escrowKey *keymem.Buf

	// fleet is the fleet's shared store of network records (--vpc-store
	// etcd), nil on a single host; stopFollow ends the watch of it.
	fleet      *etcd.Store
	stopFollow context.CancelFunc

	wg   sync.WaitGroup // the janitor and the watch of the fleet's store
	stop chan struct{}  // closed by Close
}

// Main is azoted's entry point.
func Main(args []string) int {
	// azoted holds the host key and every data key in use: no core file,
	// no ptrace or /proc/PID/mem for anyone without CAP_SYS_PTRACE. First,
	// before anything is read.
	if err := keymem.NoDumps(); err != nil {
		fmt.Fprintln(os.Stderr, "azoted:", err)
		return 1
	}
	if len(args) > 0 && args[0] == "fleet-key" {
		return fleetKeyCommand(args[1:])
	}
	if len(args) > 0 && args[0] == "root-key" {
		return rootKeyCommand(args[1:])
	}
	cfg, err := parseFlags(args)
	if err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	if err := Run(ctx, cfg, log); err != nil {
		log.Error("azoted failed", "err", err)
		return 1
	}
	return 0
}

// Run starts azoted and serves until ctx ends. Instances keep running
// after it returns.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	c, err := New(cfg, log)
	if err != nil {
		return err
	}
	defer c.Close()
	l, err := listenUnix(cfg.Socket)
	if err != nil {
		return err
	}
	defer os.Remove(cfg.Socket)
	local := gateway.NewHandler(c.apiConfig(false))
	if cfg.Listen == "" {
		log.Info("azoted serving", "socket", cfg.Socket, "state_dir", cfg.StateDir,
			"engine", c.instances.EngineName(), "accel", c.instances.EngineAccel(), "version", Version)
		return gateway.Serve(ctx, l, local, nil, localLimits(cfg.APILimits))
	}
	tlsCfg, err := ensureTLS(filepath.Join(cfg.StateDir, "tls"), c.tlsNames(), c.iam.AccountID())
	if err != nil {
		l.Close()
		return fmt.Errorf("TLS: %w", err)
	}
	// Signed requests dated the second azoted started are refused (a
	// previous azoted may have accepted them before it stopped); open the
	// port once that second is over, so that no client signs one. (Those
	// a previous azoted accepted dated later, ahead of its clock, are
	// refused by the marks it left: sigv4.Mark.)
	if err := sleepCtx(ctx, time.Until(c.started.Truncate(time.Second).Add(time.Second))); err != nil {
		l.Close()
		return nil
	}
	nl, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		l.Close()
		return err
	}
	c.cfg.listenAddr = nl.Addr().String()
	// Local tools find the HTTPS endpoint here (the port may have been
	// chosen by the kernel).
	if err := os.WriteFile(filepath.Join(cfg.StateDir, "endpoint"), []byte(c.endpoint()+"\n"), 0o644); err != nil {
		l.Close()
		nl.Close()
		return err
	}
	log.Info("azoted serving", "socket", cfg.Socket, "https", c.cfg.listenAddr, "state_dir", cfg.StateDir,
		"account", c.iam.AccountID(), "engine", c.instances.EngineName(), "accel", c.instances.EngineAccel(), "version", Version)
	errc := make(chan error, 2)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { errc <- gateway.Serve(ctx, l, local, nil, localLimits(cfg.APILimits)) }()
	go func() { errc <- gateway.Serve(ctx, nl, gateway.NewHandler(c.apiConfig(true)), tlsCfg, cfg.APILimits) }()
	err = <-errc
	cancel()
	if err2 := <-errc; err == nil {
		err = err2
	}
	return err
}

// localLimits are lim for the unix socket: its deadlines, no connection
// bounds (only root can connect, and has no source address).
func localLimits(lim gateway.Limits) gateway.Limits {
	lim.MaxConns, lim.MaxConnsPerIP = 0, 0
	return lim
}

func (c *Controller) apiConfig(network bool) gateway.Config {
	return gateway.Config{
		Backend: c, Operations: c.Operations(), Auth: authAdapter{c.iam}, Profiles: c.iam, Audit: c.trail, Log: c.log,
		Region: c.cfg.Region, HostName: c.cfg.HostName, Network: network, Files: c.auditFile, Started: c.started,
		Mark: c.sigMark, KMS: c.kms,
	}
}

// New opens the state, picks the engine and re-adopts instances.
func New(cfg Config, log *slog.Logger) (*Controller, error) {
	cfg = cfg.withDefaults()
	host := hostinfo.Read()
	accel := cfg.Accel
	switch accel {
	case "auto":
		accel = "tcg"
		if host.HardwareVirt {
			accel = "kvm"
		}
	case "kvm":
		if !host.HardwareVirt {
			return nil, fmt.Errorf("--accel kvm: no hardware virtualization here: %s", host.VirtReason)
		}
	case "tcg":
	default:
		return nil, fmt.Errorf("--accel %q: want auto, kvm or tcg", cfg.Accel)
	}
	eng, err := engine.NewQEMU(cfg.QEMU, accel)
	if err != nil {
		return nil, err
	}
	eng.Exec = cfg.CardBinary
	return newController(cfg, log, eng, host)
}

func newController(cfg Config, log *slog.Logger, eng engine.Engine, host hostinfo.Info) (*Controller, error) {
	cfg = cfg.withDefaults()
	for _, d := range []string{cfg.StateDir, filepath.Join(cfg.StateDir, "instances")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if cfg.VolumeQuota <= 0 {
		n, err := fileSystemBytes(cfg.StateDir)
		if err != nil {
			return nil, fmt.Errorf("sizing the default volume quota: %w", err)
		}
		cfg.VolumeQuota = n
	}
	uids, err := sandbox.ParseRange(cfg.UIDRange)
	if err != nil {
		return nil, fmt.Errorf("--uid-range: %w", err)
	}
	// The helper's uid must be no card's or engine's: one of them given
	// it could signal, trace or write into the helper building a volume.
	if uids.Contains(cfg.RootfsUID) {
		return nil, fmt.Errorf("--rootfs-uid %d is inside --uid-range %s, the uids of cards and engines: give the root-volume helper an id outside it", cfg.RootfsUID, uids)
	}
	st, err := store.OpenBolt(filepath.Join(cfg.StateDir, "state.db"))
	if err != nil {
		return nil, fmt.Errorf("%w (is another azoted using %s?)", err, cfg.StateDir)
	}
	blobs, err := image.OpenBlobs(filepath.Join(cfg.StateDir, "images"), cfg.BlobQuota)
	if err != nil {
		st.Close()
		return nil, err
	}
	blobs.Sweep()
	hostKey, escrowKey, rootSource, err := keys.OpenRoot(cfg.rootKeyConfig())
	if err != nil {
		st.Close()
		return nil, err
	}
	log.Info("root key opened", "form", rootSource)
	sigMark, err := sigv4.OpenMark(filepath.Join(cfg.StateDir, "sigv4-mark"))
	if err != nil {
		st.Close()
		return nil, err
	}
	c := &Controller{
		cfg: cfg, log: log, store: st, started: time.Now(), sigMark: sigMark, escrowKey: escrowKey,
		stop: make(chan struct{}),
	}
	alloc := sandbox.NewAllocator(uids)
	c.images = images.New(st, blobs, log)
	c.volumes = volumes.New(volumes.Config{
		Dir: filepath.Join(cfg.StateDir, "volumes"), Retention: cfg.VolumeRetention, Quota: cfg.VolumeQuota,
		Store: st, Keys: hostKey, DataKeys: volumeKeys{c}, Images: c.images, Fill: c.fillRootfs, Import: c.fillImport, Event: c.event, Log: log,
	})
	vpcStore, netKeys, err := c.openVPCStore(st, hostKey)
	if err != nil {
		st.Close()
		return nil, err
	}
	c.vpcs = vpcs.New(vpcs.Config{Store: vpcStore, Keys: netKeys, HostID: cfg.HostName, Event: c.event, Log: log})
	if c.fleet != nil {
		if err := c.claimHost(); err != nil {
			c.fleet.Close()
			st.Close()
			return nil, err
		}
	}
	var underlayIP netip.Addr
	if cfg.UnderlayAddr != "" {
		a, err := netip.ParseAddr(cfg.UnderlayAddr)
		if err != nil || !a.Is4() {
			c.closeFleet()
			st.Close()
			return nil, fmt.Errorf("--underlay-addr %q: not an IPv4 address", cfg.UnderlayAddr)
		}
		underlayIP = a
	}
	if cfg.UnderlayMTU != 0 && (cfg.UnderlayMTU < 576+94 || cfg.UnderlayMTU > 65535) {
		c.closeFleet()
		st.Close()
		return nil, fmt.Errorf("--underlay-mtu %d: between %d and 65535", cfg.UnderlayMTU, 576+94)
	}
	identityKey, identityPEM, err := loadOrMakeIdentityKey(filepath.Join(cfg.StateDir, "identity.key"))
	if err != nil {
		c.closeFleet()
		st.Close()
		return nil, fmt.Errorf("instance identity key: %w", err)
	}
	c.identityPEM = identityPEM
	c.keyPairs = keypairs.New(st)
	c.instances = instances.New(instances.Config{
		KeyPairs: c.keyPairs, Region: cfg.Region, AvailabilityZone: cfg.AvailabilityZone, IdentityKey: identityKey,
		// IAM is opened after the owners; the account is read when
		// metadata is built.
		AccountID:  func() string { return c.iam.AccountID() },
		UnderlayIP: underlayIP, UnderlayMTU: cfg.UnderlayMTU,
		Dir: filepath.Join(cfg.StateDir, "instances"), GatewayDir: filepath.Join(cfg.StateDir, "gateways"), ConsoleLimit: cfg.ConsoleLimit, LogLimit: cfg.LogLimit,
		StopTimeout: cfg.StopTimeout, Store: st, Engine: eng, Host: host,
		Cards: &cardhost.Host{Binary: cfg.CardBinary, UIDs: alloc, Log: log}, UIDs: alloc,
		Images: c.images, Volumes: c.volumes, VPCs: c.vpcs, EscrowKey: escrowKey, Event: c.event, Log: log,
		Roles: iamRoles{c},
	})
	if err := c.openAccess(hostKey); err != nil {
		c.closeFleet()
		st.Close()
		return nil, err
	}
	c.kms = kms.New(kms.Config{Store: st, Keys: hostKey, IAM: c.iam, Region: cfg.Region, Log: log, Event: c.kmsEvent})
	if n, err := c.volumes.MigrateKeys(); err != nil {
		c.closeFleet()
		st.Close()
		return nil, fmt.Errorf("moving volume keys under KMS: %w", err)
	} else if n > 0 {
		log.Info("volume data keys moved from the host key under the default KMS volume key", "volumes", n)
	}
	if err := c.iam.SetInstanceCredentialLifetime(cfg.InstanceCredentialLifetime); err != nil {
		c.closeFleet()
		st.Close()
		return nil, fmt.Errorf("--instance-credential-lifetime: %w", err)
	}
	if err := c.repair(); err != nil {
		c.Close()
		return nil, err
	}
	c.instances.StartGateways()
	c.wg.Add(1)
	go c.janitor()
	if c.fleet != nil {
		// The other hosts' changes reach this host's cards.
		ctx, cancel := context.WithCancel(context.Background())
		c.stopFollow = cancel
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.vpcs.Follow(ctx)
		}()
	}
	return c, nil
}

// repair runs at start-up, before the API serves: the instances first
// (which may finish a termination, purging its instance-store volumes),
// then what a crash left of blobs, volume imports, volume files and root
// volume builds.
func (c *Controller) repair() error {
	if err := c.instances.Repair(); err != nil {
		return err
	}
	c.images.SweepOrphans(time.Now().Add(-images.OrphanBlobRetention))
	if err := c.volumes.RemoveUnfinishedImports(); err != nil {
		return err
	}
	if err := c.volumes.SweepFiles(); err != nil {
		return err
	}
	c.sweepRootfsWork()
	return nil
}

// janitor forgets terminated instances, purges deleted volumes past their
// retention and deletes blobs no image uses, once a minute.
func (c *Controller) janitor() {
	defer c.wg.Done()
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		c.instances.ForgetTerminated(time.Now().Add(-instances.TerminatedRetention))
		c.volumes.PurgeDue(time.Now())
		c.images.SweepOrphans(time.Now().Add(-images.OrphanBlobRetention))
		c.instances.SweepInterfaces()
		if deleted, err := c.kms.Sweep(); err != nil {
			c.log.Error("kms: deleting and rotating due keys", "err", err)
		} else {
			for _, arn := range deleted {
				c.serviceEvent(api.KMSEventSource, "DeleteKey", arn, map[string]any{"reason": "the waiting period of ScheduleKeyDeletion ended: the key material is destroyed"})
			}
		}
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
	}
}

// Close stops supervising (machines keep running) and closes the store.
func (c *Controller) Close() error {
	close(c.stop)
	if c.stopFollow != nil {
		c.stopFollow()
	}
	c.instances.Close()
	c.wg.Wait()
	if c.trail != nil {
		if err := c.trail.Close(); err != nil {
			c.log.Error("closing the audit trail", "err", err)
		}
	}
	c.volumes.Close()
	if c.kms != nil {
		c.kms.Close()
	}
	c.escrowKey.Free()
	c.closeFleet()
	return c.store.Close()
}

// HostInfo implements gateway.Backend.
func (c *Controller) HostInfo(context.Context) api.HostInfo {
	return hostInfo(hostinfo.Read(), c.instances.EngineName(), c.instances.EngineAccel())
}

// hostInfo converts the host's hardware to its API view: the API keeps its
// own copy of the fields, so a change to hostinfo cannot change the JSON.
func hostInfo(h hostinfo.Info, engine, accel string) api.HostInfo {
	return api.HostInfo{
		CPUModel: h.CPUModel, Cores: h.Cores, MemTotalMiB: h.MemTotalMiB, MemAvailMiB: h.MemAvailMiB,
		HardwareVirt: h.HardwareVirt, VirtReason: h.VirtReason, AESNI: h.AESNI, AVX2: h.AVX2, Kernel: h.Kernel,
		Engine: engine, Accel: accel, Version: Version,
	}
}

// listenUnix binds the API socket with mode 0600. A socket file left by a
// dead azoted is replaced; one that answers belongs to a live azoted.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another azoted is serving %s", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// sleepCtx sleeps for d or until ctx ends, and returns ctx's error then.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
