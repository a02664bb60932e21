package controller

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cardhost"
	"github.com/azote/azote/internal/gateway"
	"github.com/azote/azote/internal/keys"
	"github.com/azote/azote/internal/sandbox"
)

// Config is azoted's configuration. DefaultConfig holds every default,
// once: the flags show them and New fills a zero field from them.
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
	// BlobQuota bounds the bytes of image blobs; VolumeQuota the
	// provisioned bytes of volumes (0 = the size of the file system
	// holding StateDir, which only New can measure).
	BlobQuota, VolumeQuota int64
	StopTimeout            time.Duration // how long a guest gets to power off
	CardBinary             string        // azote-card
	// RootfsUID is the host uid and gid the root filesystem builder
	// (azote-card rootfs) runs as.
	RootfsUID int
	// UIDRange is the subordinate range ("FIRST:COUNT") each card and
	// each engine gets a uid of its own from.
	UIDRange string
	// VolumeRetention is how long a deleted persistent volume stays
	// recoverable.
	VolumeRetention time.Duration
	// UnderlayAddr is this host's address on the underlay network, where
	// its net cards receive from the cards of other hosts ("" is
	// 127.0.0.1: one host); UnderlayMTU that network's MTU.
	UnderlayAddr string
	UnderlayMTU  int
	// VPCStore is where the network records live: "bolt" (the default,
	// this host's own store) or "etcd", the fleet's cluster at
	// EtcdEndpoints under EtcdPrefix, shared with the other hosts of the
	// fleet. FleetKey is the file of the key that wraps the VPCs' traffic
	// keys there (required with etcd).
	VPCStore      string
	EtcdEndpoints []string
	EtcdPrefix    string
	FleetKey      string
	// RootKey is the form the host root key is kept in at rest: "auto",
	// "file", "tpm" or "passphrase" (keys.Source); TPMDevice is the TPM
	// it is sealed in; RootKeyPassphraseFile holds the passphrase ("-":
	// standard input). docs/operations.md, "Root key".
	RootKey               string
	TPMDevice             string
	RootKeyPassphraseFile string

	// Listen is the address of the HTTPS API ("" = none).
	Listen string
	// Region names the host in ARNs and SigV4 scopes.
	Region string
	// AvailabilityZone is the host's zone in what the metadata service
	// tells its instances (default: the region's "a", e.g. locala).
	AvailabilityZone string
	HostName         string
	// TLSNames are extra names and addresses for the host certificate.
	TLSNames []string
	// AuditFileAge and AuditDigestEvery set the trail's rotation and
	// digest periods (0 = the audit package's defaults).
	AuditFileAge     time.Duration
	AuditDigestEvery time.Duration
	// APILimits bounds the HTTPS API's connections and its requests'
	// deadlines; the local socket gets the deadlines only.
	APILimits gateway.Limits
	// InstanceCredentialLifetime is how long an instance's role
	// sessions last (0: an hour); e2e tests shorten it to see refreshes.
	InstanceCredentialLifetime time.Duration

	listenAddr string
}

// DefaultConfig is azoted's configuration when no flag is given.
func DefaultConfig() Config {
	return Config{
		StateDir:         "/var/lib/azote",
		Socket:           api.DefaultSocket,
		Accel:            "auto",
		QEMU:             "qemu-system-x86_64",
		ConsoleLimit:     1 << 20,
		LogLimit:         1 << 20,
		BlobQuota:        16 << 30,
		StopTimeout:      30 * time.Second,
		CardBinary:       defaultCard(),
		RootfsUID:        cardhost.DefaultRootfsUID,
		UIDRange:         sandbox.DefaultRange,
		VolumeRetention:  24 * time.Hour,
		VPCStore:         "bolt",
		RootKey:          string(keys.SourceAuto),
		TPMDevice:        keys.DefaultTPMDevice,
		Listen:           "127.0.0.1:8443",
		Region:           "local",
		HostName:         defaultHostName(),
		AuditFileAge:     5 * time.Minute,
		AuditDigestEvery: time.Hour,
		APILimits: gateway.Limits{
			MaxConns: gateway.DefaultMaxConns, MaxConnsPerIP: gateway.DefaultMaxConnsPerIP,
			BodyTimeout: gateway.DefaultBodyTimeout, MinUploadRate: gateway.DefaultMinUploadRate,
			WriteTimeout: gateway.DefaultWriteTimeout,
		},
	}
}

// withDefaults fills the fields of c left zero from DefaultConfig. The
// fields where zero means something (Listen: no HTTPS; the audit periods
// and API limits, which their packages default themselves) are left as
// they are, as are StateDir and Socket, which a caller must choose.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	orInt64 := func(v *int64, def int64) {
		if *v <= 0 {
			*v = def
		}
	}
	orDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	orStr := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	orInt64(&c.ConsoleLimit, d.ConsoleLimit)
	orInt64(&c.LogLimit, d.LogLimit)
	orInt64(&c.BlobQuota, d.BlobQuota)
	orDur(&c.StopTimeout, d.StopTimeout)
	orDur(&c.VolumeRetention, d.VolumeRetention)
	orStr(&c.Accel, d.Accel)
	orStr(&c.QEMU, d.QEMU)
	orStr(&c.CardBinary, d.CardBinary)
	orStr(&c.UIDRange, d.UIDRange)
	orStr(&c.Region, d.Region)
	orStr(&c.HostName, d.HostName)
	orStr(&c.VPCStore, d.VPCStore)
	orStr(&c.RootKey, d.RootKey)
	orStr(&c.TPMDevice, d.TPMDevice)
	if c.RootfsUID == 0 {
		c.RootfsUID = d.RootfsUID
	}
	return c
}

// ListenAddr is the address the HTTPS API is bound to.
func (c Config) ListenAddr() string {
	if c.listenAddr != "" {
		return c.listenAddr
	}
	return c.Listen
}

// flags binds azoted's flags to cfg, which holds their defaults.
func flags(cfg *Config, tlsNames, etcdEndpoints *string) *flag.FlagSet {
	fs := flag.NewFlagSet("azoted", flag.ContinueOnError)
	fs.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "directory of the state store, images and instances")
	fs.StringVar(&cfg.Socket, "socket", cfg.Socket, "unix socket of the root-only local API")
	fs.StringVar(&cfg.Accel, "accel", cfg.Accel, "accelerator: auto, kvm or tcg")
	fs.StringVar(&cfg.QEMU, "qemu", cfg.QEMU, "QEMU binary")
	fs.Int64Var(&cfg.ConsoleLimit, "console-limit", cfg.ConsoleLimit, "bytes of serial console kept per instance")
	fs.Var(byteSize{&cfg.LogLimit}, "log-limit", "bytes kept of each card and engine log of an instance; older lines are dropped")
	fs.Var(byteSize{&cfg.BlobQuota}, "blob-quota", "bytes of image blobs (kernels, initramfs) this host stores, uploads in progress included")
	fs.Var(byteSize{&cfg.VolumeQuota}, "volume-quota", "provisioned bytes of all volumes on this host, deleted ones until purged (default: the size of the file system holding --state-dir)")
	fs.DurationVar(&cfg.StopTimeout, "stop-timeout", cfg.StopTimeout, "time a guest gets to power off before it is ended")
	fs.StringVar(&cfg.CardBinary, "card", cfg.CardBinary, "azote-card binary")
	fs.IntVar(&cfg.RootfsUID, "rootfs-uid", cfg.RootfsUID, "unprivileged host uid and gid that builds root volumes from images (give it an id nothing else uses)")
	fs.StringVar(&cfg.UIDRange, "uid-range", cfg.UIDRange, "FIRST:COUNT: the uids (and gids) given one per card and one per engine; no other user or group on the host may use them")
	fs.DurationVar(&cfg.VolumeRetention, "volume-retention", cfg.VolumeRetention, "how long a deleted persistent volume stays recoverable")
	fs.StringVar(&cfg.UnderlayAddr, "underlay-addr", cfg.UnderlayAddr, "this host's IPv4 address on the underlay network, where its network cards receive encapsulated traffic (default 127.0.0.1: this host alone)")
	fs.IntVar(&cfg.UnderlayMTU, "underlay-mtu", cfg.UnderlayMTU, "MTU of the underlay network; guests get it less the encapsulation (94 bytes)")
	fs.StringVar(&cfg.VPCStore, "vpc-store", cfg.VPCStore, "where VPCs, subnets, security groups and network interfaces are kept: bolt (this host's own state) or etcd (the fleet's cluster, shared by the hosts that share VPCs; needs --etcd-endpoints and --fleet-key)")
	fs.StringVar(etcdEndpoints, "etcd-endpoints", "", "comma-separated client URLs of the fleet's etcd members (with --vpc-store etcd)")
	fs.StringVar(&cfg.EtcdPrefix, "etcd-prefix", cfg.EtcdPrefix, "key prefix of the fleet's records in etcd (default /azote); every host of a fleet uses the same")
	fs.StringVar(&cfg.FleetKey, "fleet-key", cfg.FleetKey, "file of the fleet key (32 bytes, mode 0400) that wraps the VPC traffic keys in the fleet's store; the same file on every host of the fleet (make it once with: azoted fleet-key create FILE)")
	fs.StringVar(&cfg.RootKey, "root-key", cfg.RootKey, "form of the host root key at rest: tpm (sealed by this machine's TPM 2.0), passphrase (wrapped under a passphrase with argon2id), file (a root-only key file), or auto: the form the state directory holds, and on a first start tpm when --tpm-device exists, else file; change it with: azoted root-key migrate")
	rootKeyFlags(fs, cfg)
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address of the HTTPS API (SigV4-signed requests only); empty to serve only the local socket")
	fs.StringVar(&cfg.Region, "region", cfg.Region, "region name used in ARNs and SigV4 credential scopes")
	fs.StringVar(&cfg.AvailabilityZone, "availability-zone", cfg.AvailabilityZone, "availability zone the metadata service gives instances (default: the region's \"a\")")
	fs.StringVar(&cfg.HostName, "host-name", cfg.HostName, "name of this host (certificate and ARNs)")
	fs.StringVar(tlsNames, "tls-names", "", "extra comma-separated DNS names or IP addresses for the host certificate")
	fs.DurationVar(&cfg.AuditFileAge, "audit-file-age", cfg.AuditFileAge, "rotate the audit log file after this long")
	fs.DurationVar(&cfg.AuditDigestEvery, "audit-digest-every", cfg.AuditDigestEvery, "write a signed audit digest this often")
	fs.IntVar(&cfg.APILimits.MaxConns, "max-conns", cfg.APILimits.MaxConns, "open HTTPS connections at most; one more closes the connection idle the longest, or is closed if none is idle")
	fs.IntVar(&cfg.APILimits.MaxConnsPerIP, "max-conns-per-ip", cfg.APILimits.MaxConnsPerIP, "open HTTPS connections at most from one address (IPv6: one /64); one more closes that address's connection idle the longest, or is closed if none is idle")
	fs.DurationVar(&cfg.APILimits.BodyTimeout, "body-timeout", cfg.APILimits.BodyTimeout, "time a request body may take to arrive (blob uploads get more at --min-upload-rate)")
	fs.Int64Var(&cfg.APILimits.MinUploadRate, "min-upload-rate", cfg.APILimits.MinUploadRate, "bytes per second a blob upload must keep up")
	fs.DurationVar(&cfg.APILimits.WriteTimeout, "write-timeout", cfg.APILimits.WriteTimeout, "time each write of a response may take before the connection is dropped")
	fs.DurationVar(&cfg.InstanceCredentialLifetime, "instance-credential-lifetime", 0, "for tests: how long an instance's role credentials last (default 1h; refreshed a quarter of it, at most 15m, before the end)")
	return fs
}

// rootKeyFlags binds the flags that say how to reach the root key's
// forms, which azoted and `azoted root-key migrate` share, to cfg.
func rootKeyFlags(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.TPMDevice, "tpm-device", cfg.TPMDevice, "TPM 2.0 device that seals the root key (the kernel's resource manager)")
	fs.StringVar(&cfg.RootKeyPassphraseFile, "root-key-passphrase-file", cfg.RootKeyPassphraseFile, "file holding the root key's passphrase (owned by root, mode 0400 or 0600), or - to read one line from standard input; for --root-key passphrase")
}

// rootKeyConfig is where keys.OpenRoot finds the root key.
func (c Config) rootKeyConfig() keys.RootConfig {
	return keys.RootConfig{
		StateDir: c.StateDir, Source: keys.Source(c.RootKey), TPMDevice: c.TPMDevice,
		PassphraseFile: c.RootKeyPassphraseFile,
	}
}

// parseFlags is azoted's configuration from its command line.
func parseFlags(args []string) (Config, error) {
	cfg := DefaultConfig()
	var tlsNames, etcdEndpoints string
	if err := flags(&cfg, &tlsNames, &etcdEndpoints).Parse(args); err != nil {
		return cfg, err
	}
	if tlsNames != "" {
		cfg.TLSNames = strings.Split(tlsNames, ",")
	}
	if etcdEndpoints != "" {
		cfg.EtcdEndpoints = strings.Split(etcdEndpoints, ",")
	}
	return cfg, nil
}

func defaultHostName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// defaultCard is azote-card next to the running azoted.
func defaultCard() string {
	if exe, err := os.Executable(); err == nil {
		return filepath.Join(filepath.Dir(exe), "azote-card")
	}
	return "azote-card"
}

// byteSize is a flag of bytes written as 512M, 4G, 1T or a byte count.
type byteSize struct{ n *int64 }

func (b byteSize) String() string {
	if b.n == nil || *b.n == 0 {
		return "0"
	}
	n := *b.n
	for _, u := range []string{"", "K", "M", "G", "T"} {
		if n%1024 != 0 || u == "T" {
			return strconv.FormatInt(n, 10) + u
		}
		n /= 1024
	}
	return strconv.FormatInt(*b.n, 10)
}

func (b byteSize) Set(s string) error {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}} {
		if strings.HasSuffix(s, u.suffix) {
			mult, s = u.mult, strings.TrimSuffix(s, u.suffix)
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("want a byte count with an optional K, M, G or T suffix")
	}
	*b.n = n * mult
	return nil
}

// fileSystemBytes is the size of the file system holding dir.
func fileSystemBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks) * st.Bsize, nil
}
