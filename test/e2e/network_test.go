package e2e

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
)

var (
	netImageOnce sync.Once
	tcpxOnce     sync.Once
	tcpxErr      string
)

// buildTCPX builds tcpx (the tests' TCP stream, static) once and returns
// its path.
func buildTCPX(t *testing.T, h *harness) string {
	t.Helper()
	tcpx := filepath.Join(h.root, "tcpx")
	tcpxOnce.Do(func() {
		build := exec.Command("go", "build", "-o", tcpx, "./testdata/tcpx")
		build.Env = append(cliEnv(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			tcpxErr = string(out)
		}
	})
	if tcpxErr != "" {
		t.Fatalf("building tcpx: %s", tcpxErr)
	}
	return tcpx
}

// netImage builds the image whose agent runs testdata/net.sh, with tcpx.
func netImage(t *testing.T, h *harness) {
	t.Helper()
	tcpx := buildTCPX(t, h)
	var err string
	netImageOnce.Do(func() {
		r := h.azote("image", "build", "--name", "net", "--agent", filepath.Join(h.bin, "azote-agent"),
			"--binary", tcpx, "--script", "testdata/net.sh")
		if r.code != 0 {
			err = r.stderr
		}
	})
	if err != "" {
		t.Fatalf("building the net image: %s", err)
	}
}

// ifaceMetric returns the sample of family name for an instance's
// primary interface (with the further labels more) in azoted's /metrics.
func (h *harness) ifaceMetric(t *testing.T, inst api.Instance, name, more string) uint64 {
	t.Helper()
	metrics := h.ok(t, "host", "metrics")
	sample := regexp.MustCompile(`(?m)^` + name + `\{interface="` + inst.NetworkInterfaces[0].ID +
		`",instance="` + inst.ID + `"` + regexp.QuoteMeta(more) + `\} (\d+)$`)
	m := sample.FindStringSubmatch(metrics)
	if m == nil {
		t.Fatalf("/metrics has no %s{%s} for %s:\n%s", name, more, inst.ID, metrics)
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

// drops returns how many frames the card of an instance's primary
// interface dropped for reason, as azoted's /metrics renders it.
func (h *harness) drops(t *testing.T, inst api.Instance, reason string) uint64 {
	t.Helper()
	return h.ifaceMetric(t, inst, "azote_interface_drops_total", `,reason="`+reason+`"`)
}

// count returns how many lines of the console of id match re.
func (h *harness) count(t *testing.T, id string, re *regexp.Regexp) int {
	return len(re.FindAllString(h.ok(t, "instance", "console", id, "--tail", "1000000"), -1))
}

// TestNetwork boots five guests through azoted, each with a net card:
// two in one subnet ping each other and exchange two 20 MiB TCP streams
// (the server's card killed -9 during the second), one in another subnet
// of the VPC reaches them through the router, one in another VPC reaches
// nothing, one in a security group without ingress rules is reachable
// only while a rule allows it, and a spoofed source address is dropped;
// azoted's /metrics counts the stream's bytes and each drop by reason.
func TestNetwork(t *testing.T) {
	h := setup(t)
	netImage(t, h)
	h.ok(t, "vpc", "create", "--cidr", "10.0.0.0/16", "--name", "net-a")
	h.ok(t, "subnet", "create", "--vpc", "net-a", "--cidr", "10.0.1.0/24", "--name", "net-a1")
	h.ok(t, "subnet", "create", "--vpc", "net-a", "--cidr", "10.0.2.0/24", "--name", "net-a2")
	h.ok(t, "security-group", "create", "--vpc", "net-a", "--name", "locked", "--description", "no ingress")
	h.ok(t, "vpc", "create", "--cidr", "10.1.0.0/16", "--name", "net-b")
	h.ok(t, "subnet", "create", "--vpc", "net-b", "--cidr", "10.1.1.0/24", "--name", "net-b1")

	srv := h.run(t, "net-srv", 1, 256, "--image", "net", "--subnet", "net-a1", "--private-ip", "10.0.1.10")
	locked := h.run(t, "net-locked", 1, 256, "--image", "net", "--subnet", "net-a1", "--private-ip", "10.0.1.20", "--security-group", "locked")
	other := h.run(t, "net-other", 1, 256, "--image", "net", "--subnet", "net-a2", "--private-ip", "10.0.2.10")
	iso := h.run(t, "net-iso", 1, 256, "--image", "net", "--subnet", "net-b1", "--private-ip", "10.1.1.10")
	// The client has two vCPUs, so its interface has two queue pairs.
	cli := h.run(t, "net-cli", 2, 256, "--image", "net", "--subnet", "net-a1", "--private-ip", "10.0.1.11")

	t.Run("two queue pairs", func(t *testing.T) {
		h.waitConsole(t, cli.ID, regexp.MustCompile(`(?m)net-test: queues rx-0 rx-1 tx-0 tx-1 \r?$`), 1)
		h.waitConsole(t, srv.ID, regexp.MustCompile(`(?m)net-test: queues rx-0 tx-0 \r?$`), 1)
	})
	t.Run("same subnet", func(t *testing.T) {
		h.waitConsole(t, cli.ID, regexp.MustCompile(`net-test: ping 10\.0\.1\.10 ok`), 1)
	})
	t.Run("other subnet", func(t *testing.T) {
		h.waitConsole(t, cli.ID, regexp.MustCompile(`net-test: ping 10\.0\.2\.10 ok`), 1)
		h.waitConsole(t, other.ID, regexp.MustCompile(`net-test: ping 10\.0\.1\.10 ok`), 1)
	})

	stream := regexp.MustCompile(`net-test: stream (\d) tcpx: sent (\d+) ([0-9a-f]{64}) in [^;]*; peer (\d+) ([0-9a-f]{64})`)
	checkStream := func(t *testing.T, n int) {
		t.Helper()
		lines := h.waitConsole(t, cli.ID, stream, n)
		m := stream.FindStringSubmatch(lines[n-1])
		if m[2] != "20971520" || m[2] != m[4] || m[3] != m[5] {
			t.Fatalf("stream %d: sent %s bytes %s, the server got %s bytes %s", n, m[2], m[3], m[4], m[5])
		}
		// And the server printed the same.
		h.waitConsole(t, srv.ID, regexp.MustCompile(`tcpx: received 20971520 `+m[3]), 1)
	}
	t.Run("TCP stream", func(t *testing.T) {
		// The VPC's key is rotated under the stream: it loses nothing.
		h.waitConsole(t, cli.ID, regexp.MustCompile(`net-test: stream 1 start`), 1)
		var v api.VPC
		h.okJSON(t, &v, "vpc", "rotate-key", "net-a")
		checkStream(t, 1)
		waitUntil(t, 30*time.Second, "the rotation to end", func() bool {
			var now api.VPC
			h.okJSON(t, &now, "vpc", "describe", "net-a")
			return now.KeyEpoch == 2 && now.NextKeyEpoch == 0
		}, h.azotedLog)
		for _, inst := range []api.Instance{cli, srv} {
			for _, reason := range []string{"decrypt", "replay"} {
				if n := h.ifaceMetric(t, inst, "azote_interface_drops_total", `,reason="`+reason+`"`); n != 0 {
					t.Errorf("%s's card dropped %d frames as %s across the rotation", inst.ID, n, reason)
				}
			}
		}
		// azoted renders the cards' counters: the stream went out of the
		// client's interface and into the server's.
		for _, c := range []struct {
			inst api.Instance
			dir  string
		}{{cli, "tx"}, {srv, "rx"}} {
			if n := h.ifaceMetric(t, c.inst, "azote_interface_bytes_total", `,direction="`+c.dir+`"`); n < 20971520 {
				t.Errorf("%s's interface counted %d bytes %s, fewer than the stream", c.inst.ID, n, c.dir)
			}
		}
	})

	t.Run("card killed mid-stream", func(t *testing.T) {
		h.waitConsole(t, cli.ID, regexp.MustCompile(`net-test: stream 2 start`), 1)
		time.Sleep(500 * time.Millisecond) // into the stream
		marker := "--interface " + srv.NetworkInterfaces[0].ID
		if out, err := exec.Command("pkill", "-9", "-f", "--", marker).CombinedOutput(); err != nil {
			t.Fatalf("pkill %s: %v %s", marker, err, out)
		}
		checkStream(t, 2)
		waitUntil(t, time.Minute, "azoted to log the card's restart", func() bool {
			return strings.Contains(h.azotedLog(), `msg="card died and was restarted" card=`+srv.NetworkInterfaces[0].ID)
		}, h.azotedLog)
	})

	t.Run("spoofed source", func(t *testing.T) {
		h.waitConsole(t, cli.ID, regexp.MustCompile(`net-test: spoof dropped`), 1)
		if n := h.drops(t, cli, "spoof"); n < 1 {
			t.Fatalf("the client's card counted %d spoofed frames", n)
		}
	})

	t.Run("another VPC", func(t *testing.T) {
		h.waitConsole(t, iso.ID, regexp.MustCompile(`net-test: ping 10\.0\.1\.1[01] fail`), 4)
		if c := h.count(t, iso.ID, regexp.MustCompile(`net-test: ping 10\.0\.1\.1[01] ok`)); c != 0 {
			t.Fatalf("a guest of another VPC reached this one %d times", c)
		}
		if n := h.drops(t, iso, "no_route"); n < 1 {
			t.Fatalf("the isolated guest's card counted %d frames without a route", n)
		}
	})

	t.Run("security group", func(t *testing.T) {
		okRe := regexp.MustCompile(`net-test: ping 10\.0\.1\.20 ok`)
		failRe := regexp.MustCompile(`net-test: ping 10\.0\.1\.20 fail`)
		h.waitConsole(t, cli.ID, failRe, 2)
		if c := h.count(t, cli.ID, okRe); c != 0 {
			t.Fatalf("a group without ingress rules let %d pings in", c)
		}
		h.ok(t, "security-group", "authorize-ingress", "locked", "--protocol", "icmp", "--cidr", "10.0.1.11/32")
		h.waitConsole(t, cli.ID, okRe, 2)
		h.ok(t, "security-group", "revoke-ingress", "locked", "--protocol", "icmp", "--cidr", "10.0.1.11/32")
		fails := h.count(t, cli.ID, failRe)
		h.waitConsole(t, cli.ID, failRe, fails+3)
		oks := h.count(t, cli.ID, okRe)
		time.Sleep(3 * time.Second)
		if now := h.count(t, cli.ID, okRe); now != oks {
			t.Fatalf("pings kept passing after the rule was revoked (%d → %d)", oks, now)
		}
		if n := h.drops(t, locked, "security_group"); n < 1 {
			t.Fatalf("the locked guest's card counted %d security-group drops", n)
		}
	})

	t.Run("host gateway", func(t *testing.T) {
		var v api.VPC
		h.okJSON(t, &v, "vpc", "modify", "net-a", "--host-gateway=true")
		tap := gatewayTap(t, v)
		var gw api.NetworkInterface
		waitUntil(t, 30*time.Second, "the host gateway's interface", func() bool {
			var l []api.NetworkInterface
			h.okJSON(t, &l, "network-interface", "list", "--vpc", "net-a")
			for _, n := range l {
				if n.Type == api.InterfaceTypeHostGateway {
					gw = n
					return true
				}
			}
			return false
		}, h.azotedLog)
		if gw.SubnetID != srv.NetworkInterfaces[0].SubnetID || gw.Attachment != nil {
			t.Fatalf("host gateway interface %+v", gw)
		}
		waitUntil(t, 30*time.Second, "the host's address on "+tap, func() bool {
			out, _ := exec.Command("ip", "-4", "-o", "addr", "show", "dev", tap).CombinedOutput()
			return strings.Contains(string(out), " "+gw.PrivateIP+"/24 ")
		}, h.azotedLog)
		// The host reaches a guest of its subnet, and one of the other
		// subnet through the router, as a member of the default group.
		for _, a := range []string{"10.0.1.10", "10.0.2.10"} {
			waitUntil(t, 30*time.Second, "the host's ping of "+a, func() bool {
				return exec.Command("ping", "-c", "1", "-W", "1", a).Run() == nil
			}, h.azotedLog)
		}
		// Not a guest whose group lets nothing in.
		if out, err := exec.Command("ping", "-c", "2", "-W", "1", "10.0.1.20").CombinedOutput(); err == nil {
			t.Fatalf("the host reached a guest whose group allows no ingress:\n%s", out)
		}
		h.fails(t, api.CodeOperationNotPermitted, "network-interface", "delete", gw.ID)

		h.ok(t, "vpc", "modify", "net-a", "--host-gateway=false")
		waitUntil(t, 30*time.Second, "the tap to go", func() bool {
			return exec.Command("ip", "link", "show", tap).Run() != nil
		}, h.azotedLog)
		h.fails(t, api.CodeNetworkInterfaceNotFound, "network-interface", "describe", gw.ID)
	})
}
