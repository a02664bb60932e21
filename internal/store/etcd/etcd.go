package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/azote/azote/internal/store"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults of Config.
const (
	DefaultPrefix      = "/azote"
	DefaultTimeout     = 3 * time.Second
	DefaultMaxAttempts = 32
	// DefaultMaxTxnOps is etcd's own default of --max-txn-ops.
	DefaultMaxTxnOps = 128
)

// Config says which cluster to use and how long to wait for it.
type Config struct {
	// Endpoints are the client URLs of the cluster's members
	// (https://host:2379). Required.
	Endpoints []string
	// Prefix is the key under which every record lives, without a
	// trailing '/'; "" means DefaultPrefix. Hosts that share records use
	// the same prefix.
	Prefix string
	// TLS, when set, is used for every connection (server verification
	// and the client certificate that identifies the host).
	TLS *tls.Config
	// Timeout bounds each Open, View, Update and the start of each Watch;
	// 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxAttempts bounds how often Update runs its function when commits
	// conflict; 0 means DefaultMaxAttempts.
	MaxAttempts int
	// MaxTxnOps is the cluster's --max-txn-ops; 0 means DefaultMaxTxnOps.
	// An Update needing more operations fails instead of being sent.
	MaxTxnOps int
}

// Store is store.Store and store.Watcher over an etcd cluster. It is safe
// for concurrent use; several Stores (in one process or on many hosts)
// with the same endpoints and prefix share their records.
type Store struct {
	cli         *clientv3.Client
	endpoints   string // for error messages
	prefix      string
	timeout     time.Duration
	maxAttempts int
	maxTxnOps   int

	ctx       context.Context // cancelled by Close: ends every call and watch
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the watches' goroutines
	closeOnce sync.Once
	closeErr  error
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Watcher = (*Store)(nil)
)

// Internal reasons to run a transaction's function again.
var (
	// errConflict: a compare failed, or the snapshot's revision was
	// compacted away under the transaction.
	errConflict = errors.New("etcd: transaction conflict")
	// errNotProposed: the commit did not apply and never will (the
	// member refused it before proposing it, having no leader; or it was
	// fenced off after its outcome was unknown), so running the
	// transaction again cannot apply it twice.
	errNotProposed = errors.New("etcd: commit did not apply")

	errReadOnly = errors.New("store: write in a read-only transaction")
	errTxDone   = errors.New("store: transaction used after its View or Update returned")
)

// Open connects to the cluster and checks, within cfg.Timeout, that it
// answers; an unreachable cluster is an error wrapping
// store.ErrUnavailable.
func Open(cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("store: etcd: no endpoints")
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("store: etcd: prefix %q ends in '/'", prefix)
	}
	s := &Store{
		endpoints:   strings.Join(cfg.Endpoints, ","),
		prefix:      prefix,
		timeout:     orDefault(cfg.Timeout, DefaultTimeout),
		maxAttempts: orDefault(cfg.MaxAttempts, DefaultMaxAttempts),
		maxTxnOps:   orDefault(cfg.MaxTxnOps, DefaultMaxTxnOps),
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		TLS:         cfg.TLS,
		DialTimeout: s.timeout,
		// A member that stops answering a watch (frozen, or behind a
		// partition that drops packets) is noticed by keepalive and the
		// watch moves to another member. Not more often than etcd's
		// --grpc-keepalive-min-time (5 s), and only with a stream open,
		// or the server closes the connection for "too many pings".
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		// gRPC's own reconnect backoff grows to two minutes; a host must
		// be back within a second or so of its cluster.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		})},
		// Errors are returned, not logged: the client's own retry chatter
		// would only duplicate them.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("store: etcd %s: %w", s.endpoints, err)
	}
	s.cli = cli
	s.ctx, s.cancel = context.WithCancel(context.Background())
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	if _, err := cli.Get(ctx, s.prefix, clientv3.WithCountOnly()); err != nil {
		err = s.mapErr(ctx, "open", err)
		s.Close()
		return nil, err
	}
	return s, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// View runs fn in a read-only transaction that reads at one revision.
func (s *Store) View(fn func(store.Tx) error) error {
	return s.run(false, fn)
}

// Update runs fn in a serializable transaction (see the package doc): fn
// may run more than once and must have no effect outside the
// transaction.
func (s *Store) Update(fn func(store.Tx) error) error {
	return s.run(true, fn)
}

func (s *Store) run(writable bool, fn func(store.Tx) error) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		t := newTx(ctx, s, writable)
		err := fn(t)
		if err == nil {
			err = t.failed // a read failed and fn went on regardless
		}
		if err == nil && writable {
			err = t.commit()
		}
		t.done = true
		retry := errors.Is(err, errConflict) || errors.Is(err, errNotProposed)
		if !retry {
			return err
		}
		if attempt >= s.maxAttempts {
			return s.giveUp(err, fmt.Sprintf("%d attempts", attempt))
		}
		if !sleep(ctx, backoff(attempt)) {
			return s.giveUp(err, fmt.Sprintf("%d attempts in %v", attempt, s.timeout))
		}
	}
}

// giveUp turns the last reason to retry into the error the caller sees.
func (s *Store) giveUp(last error, after string) error {
	if errors.Is(last, errNotProposed) {
		return fmt.Errorf("%w: etcd at %s did not take the commit (%s): %v", store.ErrUnavailable, s.endpoints, after, last)
	}
	return fmt.Errorf("%w (%s)", store.ErrConflict, after)
}

// backoff is a randomised exponential wait before attempt+1, so
// transactions that keep colliding spread out: 1-2 ms, 2-4 ms, ... up to
// 50-100 ms.
func backoff(attempt int) time.Duration {
	d := time.Millisecond << min(attempt-1, 6)
	d = min(d, 100*time.Millisecond)
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Close ends every watch and closes the connections. Calls made after it
// fail with store.ErrUnavailable.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.closeErr = s.cli.Close()
		if errors.Is(s.closeErr, context.Canceled) {
			s.closeErr = nil
		}
	})
	return s.closeErr
}

// mapErr turns what the client returned for op into the store's errors.
func (s *Store) mapErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, rpctypes.ErrCompacted), errors.Is(err, rpctypes.ErrFutureRev):
		return fmt.Errorf("%w: %s: %v", errConflict, op, err)
	case s.ctx.Err() != nil:
		return fmt.Errorf("%w: %s: the store is closed", store.ErrUnavailable, op)
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %s: etcd at %s did not answer within %v: %v", store.ErrUnavailable, op, s.endpoints, s.timeout, err)
	}
	var ee rpctypes.EtcdError
	if (errors.As(err, &ee) && ee.Code() == codes.Unavailable) || status.Code(err) == codes.Unavailable {
		return fmt.Errorf("%w: %s: etcd at %s: %v", store.ErrUnavailable, op, s.endpoints, err)
	}
	return fmt.Errorf("store: etcd %s: %w", op, err)
}

func (s *Store) versionKey(table string) string  { return s.prefix + "/" + table }
func (s *Store) tablePrefix(table string) string { return s.prefix + "/" + table + "/" }

func (s *Store) fenceKey(id string) string { return s.prefix + "/_fence/" + id }

func checkTable(table string) error {
	if table == "" || strings.Contains(table, "/") || strings.HasPrefix(table, "_") {
		return fmt.Errorf("store: invalid table name %q (empty, containing '/', or starting with '_', which the etcd store reserves)", table)
	}
	return nil
}

func checkName(table, key string) error {
	if err := checkTable(table); err != nil {
		return err
	}
	if key == "" {
		return fmt.Errorf("store: empty key in table %s", table)
	}
	return nil
}
