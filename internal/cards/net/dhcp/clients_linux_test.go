package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cards/net/packet"
	"github.com/azote/azote/internal/testutil"
)

// TestBusyboxUdhcpc configures a real DHCP client with Reply: Debian's
// busybox udhcpc runs in a network namespace on one end of a veth pair,
// and the server answers on the other end through an AF_PACKET socket, as
// the card answers its guest. udhcpc checks the IP and UDP checksums of
// what it receives, so this also checks packet.AppendUDP against a real
// client.
func TestBusyboxUdhcpc(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace and a veth pair and opens an AF_PACKET socket")
	}
	testutil.RequiresCommand(t, "ip", "iproute2")
	testutil.RequiresCommand(t, "busybox", "busybox-static")
	if out, err := exec.Command("busybox", "--list").Output(); err != nil || !strings.Contains(string(out), "udhcpc\n") {
		t.Skip("needs busybox with the udhcpc applet (Debian package busybox-static)")
	}

	cfg := testConfig()
	cfg.MTU = 1400
	ns, guestIf, srv := newLink(t, "u", cfg)

	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	env := filepath.Join(dir, "env")
	// udhcpc hands what it got to its script in the environment; the
	// script also puts the address on the interface, so that a renewal
	// goes through the namespace's own IP stack.
	if err := os.WriteFile(script, []byte(`#!/bin/sh
echo "$1 ip=$ip subnet=$subnet router=$router mtu=$mtu dns=$dns domain=$domain hostname=$hostname lease=$lease serverid=$serverid broadcast=$broadcast staticroutes=$staticroutes" >> `+env+`
case "$1" in bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;; esac
`), 0o755); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name  string
		flags []string
	}{
		{name: "unicast replies"},
		{name: "broadcast flag", flags: []string{"-B"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_ = os.Remove(env)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := append([]string{"netns", "exec", ns, "busybox", "udhcpc", "-i", guestIf, "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", script}, c.flags...)
			out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
			if err != nil {
				t.Fatalf("udhcpc: %v\n%s\nserver: %s", err, out, srv.log())
			}
			got, err := os.ReadFile(env)
			if err != nil {
				t.Fatalf("udhcpc ran no script: %v\n%s", err, out)
			}
			var bound string
			for _, l := range strings.Split(string(got), "\n") {
				if strings.HasPrefix(l, "bound ") {
					bound = l
				}
			}
			for _, want := range []string{
				"ip=10.0.1.5 ", "subnet=255.255.255.0 ", "router=10.0.1.1 ", "mtu=1400 ",
				"dns=10.0.0.2 10.0.0.3 ", "domain=ec2.internal ", "hostname=ip-10-0-1-5 ",
				"lease=7200 ", "serverid=10.0.1.1 ", "broadcast=10.0.1.255 ",
				"staticroutes=10.1.0.0/16 10.0.1.1 169.254.169.254/32 0.0.0.0 0.0.0.0/0 10.0.1.1 ",
			} {
				if !strings.Contains(bound+" ", want) {
					t.Errorf("udhcpc's bound event lacks %q:\n%s\nudhcpc:\n%s", want, got, out)
				}
			}
			if log := srv.log(); !strings.Contains(log, "DHCPOFFER") || !strings.Contains(log, "DHCPACK") {
				t.Errorf("server log: %s", log)
			}
		})
	}
	t.Run("renewal", func(t *testing.T) { testRenewal(t, ns, guestIf, script, env, srv) })
}

// TestISCDhclient has Debian's ISC dhclient, which reads replies through
// its own AF_PACKET socket and checks their checksums, take a lease from
// Reply, as TestBusyboxUdhcpc does with udhcpc.
func TestISCDhclient(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace and a veth pair and opens an AF_PACKET socket")
	}
	testutil.RequiresCommand(t, "ip", "iproute2")
	testutil.RequiresCommand(t, "dhclient", "isc-dhcp-client")
	cfg := testConfig()
	cfg.MTU = 1400
	ns, guestIf, srv := newLink(t, "i", cfg)

	dir := t.TempDir()
	conf, script, env := filepath.Join(dir, "dhclient.conf"), filepath.Join(dir, "script"), filepath.Join(dir, "env")
	// Debian's default request list, with MTU and classless routes.
	if err := os.WriteFile(conf, []byte(`option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name, interface-mtu, rfc3442-classless-static-routes;
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte(`#!/bin/sh
echo "$reason ip=$new_ip_address mask=$new_subnet_mask routers=$new_routers mtu=$new_interface_mtu dns=$new_domain_name_servers domain=$new_domain_name host=$new_host_name lease=$new_dhcp_lease_time server=$new_dhcp_server_identifier broadcast=$new_broadcast_address routes=$new_rfc3442_classless_static_routes" >> `+env+`
`), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "dhclient", "-4", "-1", "-d", "-v",
		"-cf", conf, "-sf", script, "-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid"), guestIf)
	var out testutil.LogBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	var bound string
	for deadline := time.Now().Add(20 * time.Second); bound == ""; time.Sleep(50 * time.Millisecond) {
		got, _ := os.ReadFile(env)
		for _, l := range strings.Split(string(got), "\n") {
			if strings.HasPrefix(l, "BOUND ") {
				bound = l
			}
		}
		if bound == "" && time.Now().After(deadline) {
			t.Fatalf("dhclient bound no lease within 20 s; script saw:\n%s\ndhclient:\n%s\nserver: %s", got, out.String(), srv.log())
		}
	}
	for _, want := range []string{
		"ip=10.0.1.5 ", "mask=255.255.255.0 ", "routers=10.0.1.1 ", "mtu=1400 ",
		"dns=10.0.0.2 10.0.0.3 ", "domain=ec2.internal ", "host=ip-10-0-1-5 ",
		"lease=7200 ", "server=10.0.1.1 ", "broadcast=10.0.1.255 ",
		// dhclient hands option 121 over as its bytes, in decimal.
		"routes=16 10 1 10 0 1 1 32 169 254 169 254 0 0 0 0 0 10 0 1 1 ",
	} {
		if !strings.Contains(bound+" ", want) {
			t.Errorf("dhclient's BOUND lacks %q:\n%s", want, bound)
		}
	}
}

// newLink makes a network namespace with one end of a veth pair in it,
// with the client's MAC, and starts a server for cfg on the other end;
// all of it goes when the test ends. tag tells the tests' names apart.
func newLink(t *testing.T, tag string, cfg *Config) (ns, guestIf string, srv *server) {
	t.Helper()
	id := tag + fmt.Sprintf("%d", os.Getpid()%100000)
	ns, hostIf, guestIf := "azote-dhcp-"+id, "azdh"+id, "azdg"+id
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	sh("ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	sh("ip", "link", "add", hostIf, "type", "veth", "peer", "name", guestIf)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", hostIf).Run() }) // takes its peer along
	sh("ip", "link", "set", guestIf, "netns", ns)
	sh("ip", "-n", ns, "link", "set", guestIf, "address", net.HardwareAddr(clientMAC[:]).String(), "up")
	sh("ip", "link", "set", hostIf, "address", net.HardwareAddr(serverMAC[:]).String(), "up")
	return ns, guestIf, startServer(t, hostIf, cfg)
}

// udhcpc renews when told to by SIGUSR1: a unicast REQUEST from its bound
// address through the namespace's kernel (which first resolves the
// server's address by ARP, answered with packet.AppendARPReply), and an
// ACK unicast to ciaddr that the kernel's UDP socket must accept.
func testRenewal(t *testing.T, ns, guestIf, script, env string, srv *server) {
	_ = os.Remove(env)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "busybox", "udhcpc", "-i", guestIf, "-f", "-t", "5", "-T", "1", "-s", script)
	var out testutil.LogBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	wait := func(event string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, _ := os.ReadFile(env)
			if strings.Contains(string(got), event+" ip=10.0.1.5 ") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s event within 10 s; script saw:\n%s\nudhcpc:\n%s\nserver: %s", event, got, out.String(), srv.log())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	wait("bound")
	// ip netns exec execs busybox, so the process is udhcpc itself.
	if err := cmd.Process.Signal(unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	wait("renew")
	log := srv.log()
	if !strings.Contains(log, "ARP reply") || !strings.Contains(log, "DHCPREQUEST ciaddr=10.0.1.5: DHCPACK to 10.0.1.5:68") {
		t.Errorf("server log: %s", log)
	}
}

// legacyVnetHdrLen is the virtio_net_hdr of PACKET_VNET_HDR: without
// num_buffers.
const legacyVnetHdrLen = 10

// server answers DHCP on an interface through an AF_PACKET socket until
// the test ends.
type server struct {
	mu      sync.Mutex
	entries []string
}

func (s *server) logf(format string, args ...any) {
	s.mu.Lock()
	s.entries = append(s.entries, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

func (s *server) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.entries, "; ")
}

func startServer(t *testing.T, ifname string, cfg *Config) *server {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	const ethPAll = 0x0003
	proto := int(ethPAll>>8 | ethPAll<<8&0xff00) // network byte order
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	// Every frame comes with a virtio_net_hdr in front, as on a
	// virtio-net queue: the namespace's kernel leaves UDP checksums to a
	// veth "device" (NEEDS_CSUM), and packet.Finish completes them.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	s := &server{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		resp := make([]byte, 0, 1500)
		frame := make([]byte, legacyVnetHdrLen, 1600) // a zero header: nothing to offload
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				s.logf("recv: %v", err)
				return
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if n < legacyVnetHdrLen {
				continue
			}
			var vh packet.VnetHdr
			var hb [packet.VnetHdrLen]byte
			copy(hb[:], buf[:legacyVnetHdrLen])
			_ = vh.Decode(hb[:])
			in := buf[legacyVnetHdrLen:n]
			if err := packet.Finish(in, &vh); err != nil {
				s.logf("finish: %v", err)
				continue
			}
			var p packet.Packet
			if err := packet.Parse(in, &p); err != nil {
				continue
			}
			if p.Kind == packet.KindARP && p.ARP.Op == packet.ARPRequest && p.ARP.TargetIP == cfg.ServerIP {
				if _, err := unix.Write(fd, packet.AppendARPReply(frame[:legacyVnetHdrLen], &p, cfg.ServerMAC)); err != nil {
					s.logf("send: %v", err)
				}
				s.logf("ARP reply to %v", p.ARP.SenderIP)
				continue
			}
			if p.Kind != packet.KindIPv4 || p.Proto != packet.ProtoUDP || p.DstPort != ServerPort {
				continue
			}
			if err := packet.VerifyTransport(in, &p); err != nil {
				s.logf("request checksum: %v", err)
				continue
			}
			r, err := Reply(cfg, p.TransportPayload(in), resp[:0])
			if err != nil {
				s.logf("request: %v", err)
				continue
			}
			if r == nil {
				s.logf("no reply")
				continue
			}
			var m message
			_ = parseMessage(r, &m)
			f, err := AppendFrame(frame[:legacyVnetHdrLen], cfg, r)
			if err != nil {
				s.logf("frame: %v", err)
				continue
			}
			if _, err := unix.Write(fd, f); err != nil {
				s.logf("send: %v", err)
				continue
			}
			var req message
			_ = parseMessage(p.TransportPayload(in), &req)
			var q packet.Packet
			_ = packet.Parse(f[legacyVnetHdrLen:], &q)
			s.logf("%v ciaddr=%v: %v to %v", req.typ, req.ciaddr, m.typ, netip.AddrPortFrom(q.DstIP, q.DstPort))
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		unix.Close(fd)
	})
	return s
}
