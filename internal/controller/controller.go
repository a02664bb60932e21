package controller

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/sigv4"
	"github.com/azote/azote/internal/audit"
	"github.com/azote/azote/internal/cardhost"
	"github.com/azote/azote/internal/engine"
	"github.com/azote/azote/internal/gateway"
	"github.com/azote/azote/internal/hostinfo"
	"github.com/azote/azote/internal/iam"
	"github.com/azote/azote/internal/image"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/sandbox"
	"github.com/azote/azote/internal/store"
)

// Version is azoted's version string.
const Version = "0.1.0"

// Config is azoted's configuration.
type Config struct {
	StateDir string
	Socket   string
	// Accel is "auto", "kvm" or "tcg"; auto picks kvm only where the host
	// has real hardware virtualization.
	Accel        string
	QEMU         string
	ConsoleLimit int64 // bytes of console kept per instance
	// LogLimit is the bytes kept of each card and engine log.
	LogLimit int64
	// BlobQuota bounds the bytes of image blobs (0 = defaultBlobQuota);
	// VolumeQuota the provisioned bytes of volumes (0 = the size of the
	// file system holding StateDir).
	BlobQuota, VolumeQuota int64
	StopTimeout            time.Duration // how long a guest gets to power off
	CardBinary             string        // azote-card
	// RootfsUID is the host uid and gid the root filesystem builder
	// (azote-card rootfs) runs as; 0 means cardhost.DefaultRootfsUID.
	RootfsUID int
	// UIDRange is the subordinate range ("FIRST:COUNT") each card and
	// each engine gets a uid of its own from ("" = sandbox.DefaultRange).
	UIDRange string
	// VolumeRetention is how long a deleted persistent volume stays
	// recoverable.
	VolumeRetention time.Duration

	// Listen is the address of the HTTPS API ("" = none).
	Listen string
	// Region names the host in ARNs and SigV4 scopes.
	Region   string
	HostName string
	// TLSNames are extra names and addresses for the host certificate.
	TLSNames []string
	// AuditFileAge and AuditDigestEvery set the trail's rotation and
	// digest periods (0 = the audit package's defaults).
	AuditFileAge     time.Duration
	AuditDigestEvery time.Duration
	// APILimits bounds the HTTPS API's connections and its requests'
	// deadlines; the local socket gets the deadlines only.
	APILimits gateway.Limits

	listenAddr string
}

// ListenAddr is the address the HTTPS API is bound to.
func (c Config) ListenAddr() string {
	if c.listenAddr != "" {
		return c.listenAddr
	}
	return c.Listen
}

// Controller is one azoted.
type Controller struct {
	cfg    Config
	log    *slog.Logger
	store  store.Store
	blobs  *image.Blobs
	keys   keys.Wrapper
	iam    *iam.Service
	trail  *audit.Trail
	engine engine.Engine
	host   hostinfo.Info
	// uids gives every card and every engine a uid of its own.
	uids *sandbox.Allocator

	started time.Time
	// sigMark bounds the dates of signed requests accepted ahead of the
	// host clock, across restarts (sigv4.Mark).
	sigMark *sigv4.Mark

	imageMu sync.Mutex // serialises image create and delete

	quotaMu         sync.Mutex
	volumesReserved int64 // bytes of volumes being created

	mu       sync.Mutex
	runtimes map[string]*instanceRuntime // by instance id
	changed  map[string]chan struct{}    // closed when the instance changes
	// ephemeralKeys are the keys of instance-store volumes of running
	// instances: in memory only, cleared when the machine ends.
	ephemeralKeys map[string]*keymem.Buf
	// escrowKey proves azoted to instance-store cards (escrowSecret).
	escrowKey *keymem.Buf

	wg   sync.WaitGroup // supervisors and the janitor
	stop chan struct{}  // closed by Close
}

// defaultLogLimit is the bytes kept of each card and engine log.
const defaultLogLimit = 1 << 20

// TerminatedRetention is how long a terminated instance stays listed.
const TerminatedRetention = time.Hour

// Main is azoted's entry point.
func Main(args []string) int {
	// azoted holds the host key and every data key in use: no core file,
	// no ptrace or /proc/PID/mem for anyone without CAP_SYS_PTRACE. First,
	// before anything is read.
	if err := keymem.NoDumps(); err != nil {
		fmt.Fprintln(os.Stderr, "azoted:", err)
		return 1
	}
	fs := flag.NewFlagSet("azoted", flag.ContinueOnError)
	var cfg Config
	fs.StringVar(&cfg.StateDir, "state-dir", "/var/lib/azote", "directory of the state store, images and instances")
	fs.StringVar(&cfg.Socket, "socket", api.DefaultSocket, "unix socket of the root-only local API")
	fs.StringVar(&cfg.Accel, "accel", "auto", "accelerator: auto, kvm or tcg")
	fs.StringVar(&cfg.QEMU, "qemu", "qemu-system-x86_64", "QEMU binary")
	fs.Int64Var(&cfg.ConsoleLimit, "console-limit", 1<<20, "bytes of serial console kept per instance")
	cfg.LogLimit = defaultLogLimit
	fs.Var(byteSize{&cfg.LogLimit}, "log-limit", "bytes kept of each card and engine log of an instance; older lines are dropped")
	fs.Var(byteSize{&cfg.BlobQuota}, "blob-quota", "bytes of image blobs (kernels, initramfs) this host stores, uploads in progress included (default 16G)")
	fs.Var(byteSize{&cfg.VolumeQuota}, "volume-quota", "provisioned bytes of all volumes on this host, deleted ones until purged (default: the size of the file system holding --state-dir)")
	fs.DurationVar(&cfg.StopTimeout, "stop-timeout", 30*time.Second, "time a guest gets to power off before it is ended")
	fs.StringVar(&cfg.CardBinary, "card", defaultCard(), "azote-card binary")
	fs.IntVar(&cfg.RootfsUID, "rootfs-uid", cardhost.DefaultRootfsUID, "unprivileged host uid and gid that builds root volumes from images (give it an id nothing else uses)")
	fs.StringVar(&cfg.UIDRange, "uid-range", sandbox.DefaultRange, "FIRST:COUNT: the uids (and gids) given one per card and one per engine; no other user or group on the host may use them")
	fs.DurationVar(&cfg.VolumeRetention, "volume-retention", 24*time.Hour, "how long a deleted persistent volume stays recoverable")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8443", "address of the HTTPS API (SigV4-signed requests only); empty to serve only the local socket")
	fs.StringVar(&cfg.Region, "region", "local", "region name used in ARNs and SigV4 credential scopes")
	fs.StringVar(&cfg.HostName, "host-name", defaultHostName(), "name of this host (certificate and ARNs)")
	var tlsNames string
	fs.StringVar(&tlsNames, "tls-names", "", "extra comma-separated DNS names or IP addresses for the host certificate")
	fs.DurationVar(&cfg.AuditFileAge, "audit-file-age", 5*time.Minute, "rotate the audit log file after this long")
	fs.DurationVar(&cfg.AuditDigestEvery, "audit-digest-every", time.Hour, "write a signed audit digest this often")
	fs.IntVar(&cfg.APILimits.MaxConns, "max-conns", gateway.DefaultMaxConns, "open HTTPS connections at most; one more closes the connection idle the longest, or is closed if none is idle")
	fs.IntVar(&cfg.APILimits.MaxConnsPerIP, "max-conns-per-ip", gateway.DefaultMaxConnsPerIP, "open HTTPS connections at most from one address (IPv6: one /64); one more closes that address's connection idle the longest, or is closed if none is idle")
	fs.DurationVar(&cfg.APILimits.BodyTimeout, "body-timeout", gateway.DefaultBodyTimeout, "time a request body may take to arrive (blob uploads get more at --min-upload-rate)")
	fs.Int64Var(&cfg.APILimits.MinUploadRate, "min-upload-rate", gateway.DefaultMinUploadRate, "bytes per second a blob upload must keep up")
	fs.DurationVar(&cfg.APILimits.WriteTimeout, "write-timeout", gateway.DefaultWriteTimeout, "time each write of a response may take before the connection is dropped")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if tlsNames != "" {
		cfg.TLSNames = strings.Split(tlsNames, ",")
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
			"engine", c.engine.Name(), "accel", c.engine.Accel(), "version", Version)
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
		"account", c.iam.AccountID(), "engine", c.engine.Name(), "accel", c.engine.Accel(), "version", Version)
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
		Backend: c, Operations: c.Operations(), Auth: authAdapter{c.iam}, Audit: c.trail, Log: c.log,
		Region: c.cfg.Region, HostName: c.cfg.HostName, Network: network, Files: c.auditFile, Started: c.started,
		Mark: c.sigMark,
	}
}

func defaultHostName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// New opens the state, picks the engine and re-adopts instances.
func New(cfg Config, log *slog.Logger) (*Controller, error) {
	if cfg.ConsoleLimit <= 0 {
		cfg.ConsoleLimit = 1 << 20
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if cfg.VolumeRetention <= 0 {
		cfg.VolumeRetention = 24 * time.Hour
	}
	if cfg.CardBinary == "" {
		cfg.CardBinary = defaultCard()
	}
	if cfg.RootfsUID == 0 {
		cfg.RootfsUID = cardhost.DefaultRootfsUID
	}

	for _, d := range []string{cfg.StateDir, filepath.Join(cfg.StateDir, "instances")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	host := hostinfo.Read()
	accel := cfg.Accel
	switch accel {
	case "auto", "":
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
	if cfg.Region == "" {
		cfg.Region = "local"
	}
	if cfg.HostName == "" {
		cfg.HostName = defaultHostName()
	}
	if cfg.LogLimit <= 0 {
		cfg.LogLimit = defaultLogLimit
	}
	if cfg.BlobQuota <= 0 {
		cfg.BlobQuota = defaultBlobQuota
	}
	if cfg.VolumeQuota <= 0 {
		n, err := fileSystemBytes(cfg.StateDir)
		if err != nil {
			return nil, fmt.Errorf("sizing the default volume quota: %w", err)
		}
		cfg.VolumeQuota = n
	}
	if cfg.UIDRange == "" {
		cfg.UIDRange = sandbox.DefaultRange
	}
	uids, err := sandbox.ParseRange(cfg.UIDRange)
	if err != nil {
		return nil, fmt.Errorf("--uid-range: %w", err)
	}
	if cfg.RootfsUID == 0 {
		cfg.RootfsUID = cardhost.DefaultRootfsUID
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
	hostKey, escrowKey, err := keys.OpenHost(filepath.Join(cfg.StateDir, "host.key"))
	if err != nil {
		st.Close()
		return nil, err
	}
	sigMark, err := sigv4.OpenMark(filepath.Join(cfg.StateDir, "sigv4-mark"))
	if err != nil {
		st.Close()
		return nil, err
	}
	c := &Controller{
		cfg: cfg, log: log, store: st, blobs: blobs, engine: eng, host: host, keys: hostKey, started: time.Now(), sigMark: sigMark,
		uids:          sandbox.NewAllocator(uids),
		escrowKey:     escrowKey,
		runtimes:      map[string]*instanceRuntime{},
		changed:       map[string]chan struct{}{},
		ephemeralKeys: map[string]*keymem.Buf{},
		stop:          make(chan struct{}),
	}
	if err := c.openAccess(); err != nil {
		st.Close()
		return nil, err
	}
	if err := c.repair(); err != nil {
		c.Close()
		return nil, err
	}
	c.wg.Add(1)
	go c.janitor()
	return c, nil
}

// Close stops supervising (machines keep running) and closes the store.
func (c *Controller) Close() error {
	close(c.stop)
	c.mu.Lock()
	for _, rt := range c.runtimes {
		rt.releaseOnce.Do(func() { close(rt.release) })
	}
	c.mu.Unlock()
	c.wg.Wait()
	if c.trail != nil {
		if err := c.trail.Close(); err != nil {
			c.log.Error("closing the audit trail", "err", err)
		}
	}
	c.mu.Lock()
	for id, k := range c.ephemeralKeys {
		k.Free()
		delete(c.ephemeralKeys, id)
	}
	c.mu.Unlock()
	c.escrowKey.Free()
	return c.store.Close()
}

// HostInfo implements gateway.Backend.
func (c *Controller) HostInfo(context.Context) api.HostInfo {
	return hostInfo(hostinfo.Read(), c.engine.Name(), c.engine.Accel())
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

// agentReport converts the agent's report to its API view (see hostInfo).
func agentReport(r agent.Report) *api.AgentReport {
	return &api.AgentReport{
		Event: r.Event, Instance: r.Instance, Root: r.Root, InitMs: r.InitMs, ReadyMs: r.ReadyMs,
		VCPUs: r.VCPUs, MemTotalKiB: r.MemTotalKiB, MemRAMKiB: r.MemRAMKiB, Modules: r.Modules, Message: r.Message,
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

// defaultCard is azote-card next to the running azoted.
func defaultCard() string {
	if exe, err := os.Executable(); err == nil {
		return filepath.Join(filepath.Dir(exe), "azote-card")
	}
	return "azote-card"
}
