package instances

import (
	"crypto"
	"errors"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/azote/azote/internal/cardhost"
	"github.com/azote/azote/internal/controller/images"
	"github.com/azote/azote/internal/controller/keypairs"
	"github.com/azote/azote/internal/controller/volumes"
	"github.com/azote/azote/internal/controller/vpcs"
	"github.com/azote/azote/internal/engine"
	"github.com/azote/azote/internal/hostinfo"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/sandbox"
	"github.com/azote/azote/internal/store"
)

// Table is the store table of instance records (by id).
const Table = "instances"

// TerminatedRetention is how long a terminated instance stays listed.
const TerminatedRetention = time.Hour

// Refusals of this package.
var (
	ErrNotFound             = errors.New("instance not found")
	ErrIncorrectState       = errors.New("incorrect instance state")
	ErrTerminationProtected = errors.New("instance termination protected")
	ErrInvalidVCPUs         = errors.New("invalid vCPU count")
	ErrInvalidMemory        = errors.New("invalid memory size")
	ErrInsufficientMemory   = errors.New("insufficient memory")
	// ErrEngine: the engine or a card failed; the details are in
	// azoted's log, never in the refusal.
	ErrEngine = errors.New("engine failure")
)

// Config is what the instance owner is given at wiring.
type Config struct {
	Dir string // one directory per instance
	// GatewayDir holds the host gateways' sockets, logs and card
	// records (default: "gateways" beside Dir).
	GatewayDir   string
	ConsoleLimit int64 // bytes of console kept per instance
	LogLimit     int64 // bytes kept of each card and engine log
	StopTimeout  time.Duration

	Store   store.Store
	Engine  engine.Engine
	Host    hostinfo.Info
	Cards   *cardhost.Host
	UIDs    *sandbox.Allocator // a uid for each engine (cards take theirs in Cards)
	Images  *images.Service
	Volumes *volumes.Service
	// VPCs makes the primary interface of a launch with a subnet, and
	// ends the interfaces of a terminated instance.
	VPCs *vpcs.Service
	// UnderlayIP is the host's address on the underlay, where its net
	// cards receive (127.0.0.1 when not set: one host); UnderlayMTU the
	// underlay's MTU (DefaultUnderlayMTU when 0).
	UnderlayIP  netip.Addr
	UnderlayMTU int
	// EscrowKey proves azoted to instance-store cards (escrowSecret).
	EscrowKey *keymem.Buf
	// Roles mints the role sessions of instances launched with an
	// instance profile (roles.go); nil: such launches are refused.
	Roles Roles
	// KeyPairs resolves the key pair of a launch (nil: launches with
	// one are refused).
	KeyPairs *keypairs.Service
	// Region, AvailabilityZone and AccountID are what the metadata
	// service says of an instance's placement and owner.
	Region, AvailabilityZone string
	AccountID                func() string
	// IdentityKey signs instance identity documents (ECDSA P-256,
	// SHA-256); its public part is published as the host's identity
	// key. Nil: documents go unsigned.
	IdentityKey crypto.Signer
	// Event records a security decision (a launch) in the audit trail.
	Event func(name, resource string, data map[string]any)
	Log   *slog.Logger
}

// Service is the owner of instance records and of the processes of
// running instances.
type Service struct {
	cfg     Config
	log     *slog.Logger
	store   store.Store
	engine  engine.Engine
	host    hostinfo.Info
	cards   *cardhost.Host
	uids    *sandbox.Allocator
	images  *images.Service
	volumes *volumes.Service
	vpcs    *vpcs.Service
	event   func(name, resource string, data map[string]any)

	wg sync.WaitGroup // supervisors

	execs execSlots // open exec sessions per instance

	mu       sync.Mutex
	runtimes map[string]*instanceRuntime // by instance id
	changed  map[string]chan struct{}    // closed when the instance changes
	gw       gateways                    // this host's gateways into VPCs

	roleState roleKeeper // instance role sessions (roles.go)

	rotMu     sync.Mutex
	rotations map[string]*time.Timer // by VPC id: a key rotation's grace (watchRotation)
	rotClosed bool
}

// New returns the instance owner. Repair re-adopts what a previous azoted
// left running.
func New(cfg Config) *Service {
	s := &Service{
		cfg: cfg, log: cfg.Log, store: cfg.Store, engine: cfg.Engine, host: cfg.Host, cards: cfg.Cards,
		uids: cfg.UIDs, images: cfg.Images, volumes: cfg.Volumes, vpcs: cfg.VPCs, event: cfg.Event,
		runtimes:  map[string]*instanceRuntime{},
		changed:   map[string]chan struct{}{},
		rotations: map[string]*time.Timer{},
		gw:        gateways{byVPC: map[string]*hostGW{}, kick: make(chan struct{}, 1), done: make(chan struct{})},
	}
	if s.vpcs != nil {
		// Each change of a VPC reaches its cards here; pushes run apart
		// from the change (a push waits for cards).
		s.vpcs.Subscribe(func(vpcID string) {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.pushVPC(vpcID)
			}()
			s.kickGateways()
		})
	}
	return s
}

// Close stops supervising: machines and cards keep running, for the next
// azoted to adopt.
func (s *Service) Close() {
	s.rotMu.Lock()
	s.rotClosed = true
	for _, t := range s.rotations {
		t.Stop()
	}
	s.rotMu.Unlock()
	s.mu.Lock()
	for _, rt := range s.runtimes {
		rt.releaseOnce.Do(func() { close(rt.release) })
	}
	s.mu.Unlock()
	close(s.gw.done)
	s.roleClose()
	s.wg.Wait()
}

// EngineName and EngineAccel name the engine instances run on.
func (s *Service) EngineName() string  { return s.engine.Name() }
func (s *Service) EngineAccel() string { return s.engine.Accel() }

func (s *Service) instanceDir(id string) string { return filepath.Join(s.cfg.Dir, id) }
