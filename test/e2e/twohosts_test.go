package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/store/etcd/etcdtest"
	"github.com/azote/azote/internal/testutil"
)

// The two hosts' network: each azoted in a network namespace of its own,
// the two joined by a veth pair (the underlay, where the cards'
// encapsulated traffic goes), and each joined to this namespace by
// another pair (the control network, where the etcd members listen).
//
//	ns A  under 10.99.0.1 ──veth── under 10.99.0.2  ns B
//	      ctl   10.98.1.2          ctl   10.98.2.2  (route to 10.98.1.0/24 via 10.98.2.1)
//	           │veth                      │veth
//	root  10.98.1.1 (etcd ×3)       10.98.2.1
const (
	underA, underB = "10.99.0.1", "10.99.0.2"
	etcdHost       = "10.98.1.1"
	canary         = "PLAINTEXT-CANARY" // what the streams carry, over and over (testdata/two.sh)
)

// twoNet is the namespaces of the two hosts; they are deleted when the
// test ends (with their links).
type twoNet struct{ nsA, nsB string }

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func newTwoNet(t *testing.T) *twoNet {
	t.Helper()
	sfx := fmt.Sprint(os.Getpid() % 100000)
	n := &twoNet{nsA: "azt-a-" + sfx, nsB: "azt-b-" + sfx}
	ctlA, ctlB := "azt"+sfx+"a", "azt"+sfx+"b" // this namespace's ends
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", n.nsA).Run()
		exec.Command("ip", "netns", "del", n.nsB).Run()
		exec.Command("ip", "link", "del", ctlA).Run() // gone with the namespace already, unless it failed
		exec.Command("ip", "link", "del", ctlB).Run()
	})
	ipCmd(t, "netns", "add", n.nsA)
	ipCmd(t, "netns", "add", n.nsB)
	ipCmd(t, "link", "add", "under", "netns", n.nsA, "type", "veth", "peer", "name", "under", "netns", n.nsB)
	ipCmd(t, "link", "add", ctlA, "type", "veth", "peer", "name", "ctl", "netns", n.nsA)
	ipCmd(t, "link", "add", ctlB, "type", "veth", "peer", "name", "ctl", "netns", n.nsB)
	ipCmd(t, "addr", "add", "10.98.1.1/24", "dev", ctlA)
	ipCmd(t, "addr", "add", "10.98.2.1/24", "dev", ctlB)
	ipCmd(t, "link", "set", ctlA, "up")
	ipCmd(t, "link", "set", ctlB, "up")
	for _, s := range []struct{ ns, under, ctl string }{{n.nsA, underA, "10.98.1.2"}, {n.nsB, underB, "10.98.2.2"}} {
		ipCmd(t, "-n", s.ns, "addr", "add", s.under+"/24", "dev", "under")
		ipCmd(t, "-n", s.ns, "addr", "add", s.ctl+"/24", "dev", "ctl")
		for _, l := range []string{"lo", "under", "ctl"} {
			ipCmd(t, "-n", s.ns, "link", "set", l, "up")
		}
	}
	ipCmd(t, "-n", n.nsB, "route", "add", "10.98.1.0/24", "via", "10.98.2.1")
	return n
}

// startFleetHost starts an azoted of the fleet in namespace ns, with its
// own state directory and uids, and returns a harness that speaks to it.
func startFleetHost(t *testing.T, h *harness, ns, name, underlay, uids string, endpoints []string, fleetKey string) *harness {
	t.Helper()
	// Short: the cards' socket paths (at most 107 bytes) are under it.
	root := filepath.Join(h.root, name[len(name)-1:])
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	fh := &harness{bin: h.bin, root: root, state: filepath.Join(root, "state"), socket: filepath.Join(root, "azoted.sock")}
	log, err := os.OpenFile(filepath.Join(root, "azoted.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command("ip", "netns", "exec", ns, filepath.Join(h.bin, "azoted"),
		"--state-dir", fh.state, "--socket", fh.socket, "--listen", "", "--stop-timeout", "20s",
		"--host-name", name, "--uid-range", uids, "--underlay-addr", underlay,
		"--vpc-store", "etcd", "--etcd-endpoints", strings.Join(endpoints, ","), "--fleet-key", fleetKey)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	fh.azoted, fh.waited = cmd, waited
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("azoted %s log:\n%s", name, fh.azotedLog())
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			t.Errorf("azoted %s ignored SIGTERM", name)
			cmd.Process.Kill()
			<-waited
		}
		if procs := fh.engineProcs(); len(procs) > 0 {
			t.Errorf("azoted %s left engine or card processes %v", name, procs)
			for _, p := range procs {
				var pid int
				fmt.Sscan(p, &pid)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	waitUntil(t, 30*time.Second, "azoted "+name+" to answer", func() bool {
		select {
		case <-waited:
			t.Fatalf("azoted %s exited at start-up; log:\n%s", name, fh.azotedLog())
		default:
		}
		return fh.azote("host", "info").code == 0
	}, fh.azotedLog)
	return fh
}

// both runs one CLI command on each host at once and fails unless both
// succeed; it returns their outputs.
func both(t *testing.T, a, b *harness, argsA, argsB []string) (string, string) {
	t.Helper()
	var ra, rb result
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); ra = a.azote(argsA...) }()
	go func() { defer wg.Done(); rb = b.azote(argsB...) }()
	wg.Wait()
	if ra.code != 0 || rb.code != 0 {
		t.Fatalf("azote %s: %d %s\nazote %s: %d %s", strings.Join(argsA, " "), ra.code, ra.stderr, strings.Join(argsB, " "), rb.code, rb.stderr)
	}
	return ra.stdout, rb.stdout
}

// launched decodes a launch's output and terminates the instance when
// the test ends.
func launched(t *testing.T, fh *harness, out string) api.Instance {
	t.Helper()
	var inst api.Instance
	if err := json.Unmarshal([]byte(out), &inst); err != nil {
		t.Fatalf("instance run: output is not JSON: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if c := fh.azote("instance", "console", inst.ID, "--tail", "20000"); c.code == 0 {
				t.Logf("console of %s (tail):\n%s", inst.ID, c.stdout)
			}
		}
		if r := fh.azote("instance", "terminate", inst.ID); r.code != 0 {
			t.Errorf("cleanup: terminate %s: %s", inst.ID, r.stderr)
		}
	})
	return inst
}

// capture reads every frame crossing a link of another network
// namespace, through a raw AF_PACKET socket opened inside it.
type capture struct {
	fd       int
	stop     atomic.Bool
	done     chan struct{}
	frames   atomic.Int64
	udpBytes atomic.Int64 // IPv4/UDP between the two underlay addresses
	hits     atomic.Int64 // frames holding the canary
	controls atomic.Int64 // frames holding controlMark
}

// controlMark is what sendPlain sends across the underlay in the clear.
const controlMark = "CAPTURE-CONTROL-MARK"

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// inNetns runs fn on a thread in network namespace ns and returns what
// it returns (a descriptor opened there stays in ns). It must run on a
// goroutine of its own: the thread enters ns and is never unlocked, so
// it ends with the goroutine and nothing else ever runs in ns.
func inNetns(ns string, fn func() (int, error)) (int, error) {
	runtime.LockOSThread()
	f, err := os.Open(filepath.Join("/var/run/netns", ns))
	if err != nil {
		return -1, err
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return -1, fmt.Errorf("setns %s: %w", ns, err)
	}
	return fn()
}

// sendPlain sends payload in one plain UDP datagram from namespace ns to
// to:9 (discard): the capture's own check that it would see plaintext.
func sendPlain(t *testing.T, ns, to string, payload []byte) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := inNetns(ns, func() (int, error) {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return -1, err
			}
			defer unix.Close(fd)
			var a [4]byte
			copy(a[:], net.ParseIP(to).To4())
			return -1, unix.Sendto(fd, payload, 0, &unix.SockaddrInet4{Port: 9, Addr: a})
		})
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("sending a plain datagram from %s: %v", ns, err)
	}
}

func startCapture(t *testing.T, ns, link string) *capture {
	t.Helper()
	type opened struct {
		fd  int
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		fd, err := inNetns(ns, func() (int, error) {
			ifi, err := net.InterfaceByName(link)
			if err != nil {
				return -1, err
			}
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
			if err != nil {
				return -1, err
			}
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
			tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
			if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
				unix.Close(fd)
				return -1, err
			}
			return fd, nil
		})
		ch <- opened{fd, err}
	}()
	o := <-ch
	if o.err != nil {
		t.Fatalf("capturing on %s in %s: %v", link, ns, o.err)
	}
	c := &capture{fd: o.fd, done: make(chan struct{})}
	a, b := net.ParseIP(underA).To4(), net.ParseIP(underB).To4()
	go func() {
		defer close(c.done)
		buf := make([]byte, 1<<17)
		for !c.stop.Load() {
			n, _, err := unix.Recvfrom(c.fd, buf, 0)
			if err != nil {
				continue // the timeout, to look at stop
			}
			f := buf[:n]
			c.frames.Add(1)
			if bytes.Contains(f, []byte(canary)) {
				c.hits.Add(1)
			}
			if bytes.Contains(f, []byte(controlMark)) {
				c.controls.Add(1)
			}
			// Ethernet, IPv4, UDP, between the underlay addresses.
			if len(f) >= 14+20 && binary.BigEndian.Uint16(f[12:14]) == 0x0800 && f[14+9] == 17 {
				src, dst := f[14+12:14+16], f[14+16:14+20]
				if (bytes.Equal(src, a) && bytes.Equal(dst, b)) || (bytes.Equal(src, b) && bytes.Equal(dst, a)) {
					c.udpBytes.Add(int64(len(f) - 14))
				}
			}
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *capture) close() {
	if c.stop.Swap(true) {
		return
	}
	<-c.done
	unix.Close(c.fd)
}

// TestTwoHosts runs two azoteds as two hosts of a fleet: each in its own
// network namespace with its own state, sharing their VPCs through a
// three-member etcd cluster and a fleet key, their cards' traffic on a
// veth underlay between them. A guest on each, in one subnet, exchange
// two TCP streams of a known plaintext (checksummed end to end); an etcd
// member is killed during the second, which goes on unharmed; an
// interface launched on host B afterwards (the cluster down to two
// members) is reached from host A's guest; and a capture of the underlay
// holds the streams' bytes, encrypted, never their plaintext.
func TestTwoHosts(t *testing.T) {
	h := setup(t)
	testutil.RequiresCommand(t, "ip", "iproute2")
	etcdtest.Require(t)
	tcpx := buildTCPX(t, h)

	n := newTwoNet(t)
	cluster := etcdtest.Start(t, etcdtest.Options{Host: etcdHost})
	fleetKey := filepath.Join(h.root, "fleet.key")
	os.Remove(fleetKey)
	if out, err := exec.Command(filepath.Join(h.bin, "azoted"), "fleet-key", "create", fleetKey).CombinedOutput(); err != nil {
		t.Fatalf("azoted fleet-key create: %v: %s", err, out)
	}
	// Uids apart from the shared harness's azoted (sandbox.DefaultRange)
	// and from each other.
	a := startFleetHost(t, h, n.nsA, "azt-a", underA, "1879113728:4096", cluster.Endpoints(), fleetKey)
	b := startFleetHost(t, h, n.nsB, "azt-b", underB, "1879117824:4096", cluster.Endpoints(), fleetKey)

	build := []string{"image", "build", "--name", "two", "--agent", filepath.Join(h.bin, "azote-agent"), "--binary", tcpx, "--script", "testdata/two.sh"}
	both(t, a, b, build, build)
	// The VPC made on host A is host B's too.
	a.ok(t, "vpc", "create", "--cidr", "10.5.0.0/16", "--name", "two")
	a.ok(t, "subnet", "create", "--vpc", "two", "--cidr", "10.5.1.0/24", "--name", "two1")
	capt := startCapture(t, n.nsA, "under")
	// Plaintext that does cross the underlay is seen: the capture works.
	sendPlain(t, n.nsB, underA, []byte(controlMark))

	run := func(ip string) []string {
		return []string{"instance", "run", "--name", "two-" + ip, "--vcpus", "1", "--memory", "256", "--image", "two",
			"--subnet", "two1", "--private-ip", ip, "-o", "json"}
	}
	outA, outB := both(t, a, b, run("10.5.1.10"), run("10.5.1.20"))
	srv, cli := launched(t, a, outA), launched(t, b, outB)
	if d := b.describe(t, cli.ID); len(d.NetworkInterfaces) != 1 {
		t.Fatalf("host B's guest has interfaces %+v", d.NetworkInterfaces)
	}

	stream := regexp.MustCompile(`two-test: stream (\d) tcpx: sent (\d+) ([0-9a-f]{64}) in [^;]*; peer (\d+) ([0-9a-f]{64})`)
	checkStream := func(t *testing.T, k int) {
		t.Helper()
		lines := b.waitConsole(t, cli.ID, stream, k)
		m := stream.FindStringSubmatch(lines[k-1])
		if m[2] != "8388608" || m[2] != m[4] || m[3] != m[5] {
			t.Fatalf("stream %d: sent %s bytes %s, host A's guest got %s bytes %s", k, m[2], m[3], m[4], m[5])
		}
		a.waitConsole(t, srv.ID, regexp.MustCompile(`tcpx: received 8388608 `+m[3]), 1)
	}
	// Each step needs the one before: the first to fail ends the test.
	if !t.Run("TCP across hosts", func(t *testing.T) { checkStream(t, 1) }) {
		return
	}
	if !t.Run("etcd member killed mid-stream", func(t *testing.T) {
		b.waitConsole(t, cli.ID, regexp.MustCompile(`two-test: stream 2 start`), 1)
		leader, err := cluster.Leader()
		if err != nil {
			t.Fatal(err)
		}
		leader.Kill()
		checkStream(t, 2)
	}) {
		return
	}
	if !t.Run("underlay holds no plaintext", func(t *testing.T) {
		capt.close()
		// (Twice, usually: A's port-unreachable answer quotes it.)
		if capt.controls.Load() < 1 {
			t.Fatal("the capture never saw the plain datagram sent across the underlay")
		}
		t.Logf("underlay capture: %d frames, %d bytes of IPv4/UDP between the hosts", capt.frames.Load(), capt.udpBytes.Load())
		// The capture saw the streams (at least one stream's worth: a
		// busy host may drop some frames before the socket reads them),
		// so it would have seen their plaintext.
		if capt.udpBytes.Load() < 8<<20 {
			t.Fatalf("the capture saw %d bytes of underlay traffic; the streams alone were 16 MiB", capt.udpBytes.Load())
		}
		if hits := capt.hits.Load(); hits != 0 {
			t.Fatalf("%d frames on the underlay hold the streams' plaintext %q", hits, canary)
		}
	}) {
		return
	}

	t.Run("interface added on the other host", func(t *testing.T) {
		// Made on host B with two etcd members of three; host A's card
		// learns of it through its watch, and its guest reaches it.
		late := launched(t, b, b.ok(t, run("10.5.1.30")...))
		var ni api.NetworkInterface
		a.okJSON(t, &ni, "network-interface", "describe", late.NetworkInterfaces[0].ID)
		if ni.Host != "azt-b" || ni.PrivateIP != "10.5.1.30" {
			t.Fatalf("host A sees the late-comer's interface as %+v", ni)
		}
		a.waitConsole(t, srv.ID, regexp.MustCompile(`two-test: ping 10\.5\.1\.30 ok`), 1)
	})
}
