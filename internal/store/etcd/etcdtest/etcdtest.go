// Package etcdtest starts and stops real etcd clusters for tests: the
// etcd of Debian's etcd-server package, one process per member, on
// loopback ports it picks, with data directories in a temporary directory
// (on tmpfs where there is one) removed at the end. Tests
// kill, freeze and restart members to check how their clients behave
// when the cluster fails. Every process it starts is stopped when the
// test ends, and dies with the test binary. It contains no code that
// ships.
package etcdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Binary is where Debian's etcd-server package installs etcd.
const Binary = "/usr/bin/etcd"

// startTimeout bounds how long a cluster (or a restarted member) may take
// to become healthy.
const startTimeout = 30 * time.Second

// Require skips the test when etcd is not installed, or fails it when the
// CI environment variable is "true": CI installs etcd-server, so a missing
// binary there is a broken setup, not a reason to skip.
func Require(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(Binary); err == nil {
		return
	}
	msg := fmt.Sprintf("needs %s from Debian's etcd-server package (apt-get install --no-install-recommends etcd-server; scripts/test.sh installs it)", Binary)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// ErrNoEtcd is returned by New when etcd is not installed.
var ErrNoEtcd = errors.New("etcdtest: " + Binary + " not found: install Debian's etcd-server package")

// Options shape a cluster.
type Options struct {
	// Members is the cluster size; 0 means 3.
	Members int
	// Host is the address members listen on; "" means 127.0.0.1. A test
	// whose clients live in other network namespaces passes an address
	// they can reach.
	Host string
	// Dir holds the members' data directories and logs; "" means a new
	// temporary directory that Close removes, on tmpfs (/dev/shm) where
	// there is one: etcd syncs its log on every write, and on a disk
	// shared with parallel builds a slow sync delays heartbeats and
	// causes elections that have nothing to do with the test.
	Dir string
}

// Cluster is a running etcd cluster.
type Cluster struct {
	Members []*Member
	tmp     string // removed by Close when New made it
}

// Member is one etcd process of a cluster. A stopped or killed member can
// be started again with its data: it rejoins the cluster.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	dir       string
	args      []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	log    *os.File
}

// Start starts a cluster for a test and waits until it is healthy. It
// skips or fails the test as Require does when etcd is missing, and stops
// every member when the test ends (logging their output if it failed).
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	Require(t)
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range c.Members {
				t.Logf("etcdtest: %s log:\n%s", m.Name, m.LogTail())
			}
		}
		c.Close()
	})
	return c
}

// New starts a cluster and waits until it is healthy; Close stops it.
// For tests that share one cluster from TestMain; others use Start.
func New(opts Options) (*Cluster, error) {
	if _, err := os.Stat(Binary); err != nil {
		return nil, ErrNoEtcd
	}
	n := opts.Members
	if n == 0 {
		n = 3
	}
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	dir, tmp := opts.Dir, ""
	if dir == "" {
		parent := "" // os.TempDir()
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			parent = "/dev/shm"
		}
		var err error
		if dir, err = os.MkdirTemp(parent, "etcdtest-"); err != nil {
			return nil, err
		}
		tmp = dir
	}
	// Ports are picked free and then handed to etcd, so another process
	// can take one in between: such a start is tried again on new ports.
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var c *Cluster
		c, err = start(filepath.Join(dir, fmt.Sprintf("try%d", attempt)), n, host, attempt)
		if err == nil {
			c.tmp = tmp
			return c, nil
		}
		c.Close()
	}
	if tmp != "" {
		os.RemoveAll(tmp)
	}
	return nil, fmt.Errorf("etcdtest: could not start a %d-member cluster: %w", n, err)
}

func start(root string, n int, host string, attempt int) (*Cluster, error) {
	c := &Cluster{}
	ports, err := freePorts(host, 2*n)
	if err != nil {
		return c, err
	}
	var initial []string
	for i := range n {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: "http://" + net.JoinHostPort(host, strconv.Itoa(ports[2*i])),
			PeerURL:   "http://" + net.JoinHostPort(host, strconv.Itoa(ports[2*i+1])),
			dir:       filepath.Join(root, fmt.Sprintf("m%d", i)),
		}
		initial = append(initial, m.Name+"="+m.PeerURL)
		c.Members = append(c.Members, m)
	}
	token := fmt.Sprintf("etcdtest-%d-%d-%d", os.Getpid(), time.Now().UnixNano(), attempt)
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name,
			"--data-dir", filepath.Join(m.dir, "data"),
			"--listen-client-urls", m.ClientURL,
			"--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL,
			"--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			"--logger", "zap",
			"--log-outputs", "stderr",
			"--log-level", "warn",
		}
		if err := os.MkdirAll(m.dir, 0o700); err != nil {
			return c, err
		}
		if err := m.Start(); err != nil {
			return c, err
		}
	}
	return c, c.WaitHealthy(startTimeout)
}

// freePorts returns n distinct TCP ports that were free on host.
func freePorts(host string, n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("etcdtest: pick a port on %s: %w", host, err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Endpoints returns every member's client URL, running or not.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// WaitHealthy waits until every running member reports itself healthy
// (it has a leader and can read through consensus).
func (c *Cluster) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		for {
			err := m.healthy()
			if err == nil {
				break
			}
			if !m.Running() {
				return fmt.Errorf("etcdtest: %s exited: %s", m.Name, m.LogTail())
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("etcdtest: %s not healthy after %v: %w", m.Name, timeout, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

func (m *Member) healthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURL+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body.String(), `"health":"true"`) {
		return fmt.Errorf("%s/health: %s %s", m.ClientURL, resp.Status, strings.TrimSpace(body.String()))
	}
	return nil
}

// Leader returns the member that currently leads the cluster.
func (c *Cluster) Leader() (*Member, error) {
	byID := map[uint64]*Member{}
	var leader uint64
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		id, l, err := m.status()
		if err != nil {
			continue
		}
		byID[id] = m
		if l != 0 {
			leader = l
		}
	}
	if m := byID[leader]; leader != 0 && m != nil {
		return m, nil
	}
	return nil, errors.New("etcdtest: no running member names a running leader")
}

// status returns the member's own ID and the ID of the leader it follows.
func (m *Member) status() (id, leader uint64, err error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, 0, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := cli.Status(ctx, m.ClientURL)
	if err != nil {
		return 0, 0, err
	}
	return st.Header.MemberId, st.Leader, nil
}

// Stop stops every running member (SIGTERM, then waits).
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		m.Stop()
	}
}

// StartAll starts every member that is not running and waits until the
// cluster is healthy.
func (c *Cluster) StartAll() error {
	for _, m := range c.Members {
		if !m.Running() {
			if err := m.Start(); err != nil {
				return err
			}
		}
	}
	return c.WaitHealthy(startTimeout)
}

// Close kills every member and removes the data New put in a temporary
// directory.
func (c *Cluster) Close() {
	for _, m := range c.Members {
		m.Kill()
		m.mu.Lock()
		if m.log != nil {
			m.log.Close()
			m.log = nil
		}
		m.mu.Unlock()
	}
	if c.tmp != "" {
		os.RemoveAll(c.tmp)
	}
}

// Start starts the member's process with its data directory, which it
// keeps across restarts. It does not wait for the member to be healthy.
func (m *Member) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return fmt.Errorf("etcdtest: %s is already running", m.Name)
	}
	if m.log == nil {
		f, err := os.OpenFile(filepath.Join(m.dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		m.log = f
	}
	cmd := exec.Command(Binary, m.args...)
	cmd.Env = []string{} // no ETCD_* variable of the caller's may change the flags
	cmd.Stdout, cmd.Stderr = m.log, m.log
	// Dies with the test binary; its own process group keeps terminal
	// signals meant for the test from reaching it twice.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("etcdtest: start %s: %w", m.Name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	m.cmd, m.exited = cmd, exited
	return nil
}

// Running reports whether the member's process is alive (frozen counts
// as alive).
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL, as a crash would, and waits for the process to go.
func (m *Member) Kill() { m.signalAndWait(syscall.SIGKILL) }

// Stop sends SIGTERM and waits for the process to go (SIGKILL after 10 s).
func (m *Member) Stop() { m.signalAndWait(syscall.SIGTERM) }

func (m *Member) signalAndWait(sig syscall.Signal) {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	_ = cmd.Process.Signal(syscall.SIGCONT) // a frozen member acts on it now
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Freeze stops the process with SIGSTOP: its sockets stay open and it
// answers nothing, like a member behind a network partition that drops
// packets.
func (m *Member) Freeze() { m.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen member.
func (m *Member) Thaw() { m.signal(syscall.SIGCONT) }

func (m *Member) signal(sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		_ = m.cmd.Process.Signal(sig)
	}
}

// LogTail returns the end of the member's log.
func (m *Member) LogTail() string {
	b, err := os.ReadFile(filepath.Join(m.dir, "etcd.log"))
	if err != nil {
		return err.Error()
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
