package net

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/cards/net/imds"
	"github.com/azote/azote/internal/cards/net/packet"
)

// denyAll is a guard whose security groups allow nothing: the metadata
// service must not care.
type denyAll struct{}

func (denyAll) Egress(*packet.Packet, []byte, int64) Drop  { return DropSecurityGroup }
func (denyAll) Ingress(*packet.Packet, []byte, int64) Drop { return DropSecurityGroup }

func metadataFor(self Peer, userData []byte, hop int) *cardproto.NetMetadata {
	return &cardproto.NetMetadata{
		InstanceID: "i-0123456789abcdef0", ImageID: "ami-1", InstanceType: "azote.1c.512m", Hostname: "ip-10-0-1-5",
		Interfaces: []cardproto.NetMetadataInterface{{MAC: self.MAC.String(), InterfaceID: "eni-1", LocalIPv4: self.IP.String()}},
		UserData:   userData, HopLimit: hop,
	}
}

// metadataSwitch is a switch whose security groups deny everything, with
// the metadata service of self.
func metadataSwitch(t *testing.T, self Peer, md *cardproto.NetMetadata) (*Switch, *imds.Stack) {
	t.Helper()
	v := &View{Self: self, Gateway: netip.MustParseAddr("10.0.1.1"), GatewayMAC: gwMAC, VPC: netip.MustParsePrefix("10.0.0.0/16")}
	sw := NewSwitch(v, plainTunnel{self.Index}, denyAll{}, nil, func(int, netip.AddrPort, []byte) error { return nil },
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	svc, err := imds.NewService(self.MAC.String(), "eni-1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if md != nil {
		d, err := imds.Compile(md, self.MAC.String(), self.IP)
		if err != nil {
			t.Fatal(err)
		}
		svc.SetData(d)
	}
	st := imds.NewStack(svc, sw.toLocal)
	t.Cleanup(st.Close)
	sw.SetMetadata(st)
	return sw, st
}

func synFrame(src packet.MAC, dst packet.MAC, from netip.Addr, port uint16) []byte {
	b := append([]byte(nil), dst[:]...)
	b = append(b, src[:]...)
	b = append(b, 0x08, 0)
	s, d := from.As4(), imds.Addr.As4()
	b = append(b, 0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, packet.ProtoTCP, 0, 0)
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	copy(b[24:], []byte{byte(packet.IPv4Checksum(b[14:34]) >> 8), byte(packet.IPv4Checksum(b[14:34]))})
	b = append(b, byte(port>>8), byte(port), 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, packet.TCPFlagSYN, 0xff, 0xff, 0, 0, 0, 0)
	var p packet.Packet
	packet.Parse(b, &p)
	packet.SetTransportChecksum(b, &p)
	return b
}

// The switch hands the guest's frames for 169.254.169.254 to the
// metadata service whatever its security groups say, answers its ARP
// for the address with the router's MAC, and gives the answers the hop
// limit as TTL; without metadata it drops them.
func TestSwitchMetadata(t *testing.T) {
	self := Peer{Index: 1, IP: netip.MustParseAddr("10.0.1.5"), MAC: mac(5), Subnet: subnetA}
	sw, _ := metadataSwitch(t, self, metadataFor(self, nil, 2))
	var p packet.Packet
	var out []byte

	sw.fromGuest(0, &p, packet.AppendARP(nil, packet.BroadcastMAC, self.MAC, &packet.ARP{Op: packet.ARPRequest,
		SenderMAC: self.MAC, SenderIP: self.IP, TargetIP: imds.Addr}), &out)
	local := sw.takeLocal(nil)
	if len(local) != 1 || packet.Parse(local[0], &p) != nil || p.ARP.SenderMAC != gwMAC || p.ARP.SenderIP != imds.Addr {
		t.Fatalf("ARP for the metadata address: %d answers", len(local))
	}

	sw.fromGuest(0, &p, synFrame(self.MAC, gwMAC, self.IP, 40000), &out)
	local = sw.takeLocal(nil)
	if len(local) != 1 || packet.Parse(local[0], &p) != nil {
		t.Fatalf("SYN: %d answers", len(local))
	}
	if p.TCPFlags != packet.TCPFlagSYN|packet.TCPFlagACK || p.TTL != 2 || p.Dst != self.MAC || p.Src != gwMAC || p.SrcIP != imds.Addr {
		t.Fatalf("SYN/ACK: flags %x TTL %d %v→%v", p.TCPFlags, p.TTL, p.Src, p.Dst)
	}
	if err := packet.VerifyTransport(local[0], &p); err != nil {
		t.Fatal(err)
	}
	if d := sw.Metrics().Snapshot().Drops[DropSecurityGroup-1]; d != 0 {
		t.Errorf("security groups judged the metadata service's frames: %d drops", d)
	}

	// To the guest's own MAC rather than the router's: not routed.
	before := sw.Metrics().Snapshot().Drops[dropNoRoute-1]
	sw.fromGuest(0, &p, synFrame(self.MAC, mac(9), self.IP, 40001), &out)
	if len(sw.takeLocal(nil)) != 0 || sw.Metrics().Snapshot().Drops[dropNoRoute-1] != before+1 {
		t.Error("a frame for the metadata address to another MAC was answered")
	}

	// Without metadata: no ARP answer, frames dropped and counted.
	sw2, st2 := metadataSwitch(t, self, nil)
	sw2.fromGuest(0, &p, packet.AppendARP(nil, packet.BroadcastMAC, self.MAC, &packet.ARP{Op: packet.ARPRequest,
		SenderMAC: self.MAC, SenderIP: self.IP, TargetIP: imds.Addr}), &out)
	sw2.fromGuest(0, &p, synFrame(self.MAC, gwMAC, self.IP, 40000), &out)
	if n := len(sw2.takeLocal(nil)); n != 0 || st2.Counts().Unavailable != 1 {
		t.Fatalf("without metadata: %d answers, %+v", n, st2.Counts())
	}
}

// The real Linux TCP stack as the client: a network namespace whose
// interface is a tap device served by the switch, curl doing the IMDSv2
// flow in it (through the default route, then through an on-link route
// that ARPs for the address), a 16 KiB user data crossing in many
// segments, two requests on one connection.
func TestMetadataLinuxClient(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a network namespace and a tap device need root (CI runs as root)")
	}
	for _, tool := range []string{"ip", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	var rb [4]byte
	rand.Read(rb[:])
	ns, dev := "azimds"+hex.EncodeToString(rb[:]), "azimds"+hex.EncodeToString(rb[:3])
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })

	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	ifr, _ := unix.NewIfreq(dev)
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		t.Fatal(err)
	}
	self := Peer{Index: 1, IP: netip.MustParseAddr("10.0.1.5"), MAC: mac(5), Subnet: subnetA}
	inNS := func(args ...string) string { return run(append([]string{"ip", "netns", "exec", ns}, args...)...) }
	run("ip", "link", "set", "dev", dev, "address", self.MAC.String(), "netns", ns)
	inNS("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
	inNS("ip", "link", "set", "lo", "up")
	inNS("ip", "addr", "add", "10.0.1.5/24", "dev", dev)
	inNS("ip", "link", "set", dev, "up")
	inNS("ip", "route", "add", "default", "via", "10.0.1.1")

	userData := make([]byte, imds.MaxUserData)
	for i := range userData {
		userData[i] = "abcdefghijklmnopqrstuvwxyz\n"[i%27]
	}
	sw, st := metadataSwitch(t, self, metadataFor(self, userData, 1))
	ufd, _ := udpSocket(t)
	port, err := NewTap(fd, sw, ufd)
	if err != nil {
		t.Fatal(err)
	}
	go port.Run()
	t.Cleanup(port.Stop)

	base := "http://169.254.169.254/latest/"
	curl := func(args ...string) string {
		return inNS(append([]string{"curl", "-sS", "--max-time", "10"}, args...)...)
	}
	for _, route := range []string{"default route", "on-link route"} {
		if route == "on-link route" {
			inNS("ip", "route", "add", "169.254.169.254/32", "dev", dev)
		}
		tok := curl("-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60", base+"api/token")
		if len(tok) < 20 {
			t.Fatalf("%s: token %q", route, tok)
		}
		// Two requests on one connection (curl reuses it for the
		// second URL), the second 16 KiB in many segments.
		got := curl("-H", "X-aws-ec2-metadata-token: "+tok, base+"meta-data/instance-id", base+"user-data")
		if want := "i-0123456789abcdef0" + string(userData); got != want {
			t.Fatalf("%s: %d bytes, want %d", route, len(got), len(want))
		}
		if code := curl("-o", "/dev/null", "-w", "%{http_code}", base+"meta-data/"); code != "401" {
			t.Errorf("%s: no token: %s", route, code)
		}
		if code := curl("-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60",
			"-H", "X-Forwarded-For: 1.2.3.4", base+"api/token"); code != "403" {
			t.Errorf("%s: X-Forwarded-For: %s", route, code)
		}
		if code := curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "X-aws-ec2-metadata-token: "+tok, base+"meta-data/nope"); code != "404" {
			t.Errorf("%s: unknown path: %s", route, code)
		}
	}
	if sw.Metrics().Snapshot().ARPAnswered == 0 {
		t.Error("the on-link route did not ARP for the address")
	}
	t.Logf("stack %+v", st.Counts())
}
