package net

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cards/net/packet"
)

// hostSide is a tap device made for a test and a packet socket on it:
// what the socket sends leaves the device and reaches whoever holds the
// tap's descriptor (the card), and what the card writes arrives on the
// socket, as the host's kernel would see it.
type hostSide struct {
	name string
	tap  int
	raw  int
	idx  int
}

func newHostSide(t *testing.T) *hostSide {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a tap device needs root (CI runs as root)")
	}
	var b [4]byte
	rand.Read(b[:])
	h := &hostSide{name: "aztest" + hex.EncodeToString(b[:])}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ifr, _ := unix.NewIfreq(h.name)
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		t.Fatal(err)
	}
	h.tap = fd
	t.Cleanup(func() { unix.Close(h.tap) }) // the device goes with it
	os.WriteFile("/proc/sys/net/ipv6/conf/"+h.name+"/disable_ipv6", []byte("1"), 0)
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	ifr, _ = unix.NewIfreq(h.name)
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		t.Fatal(err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		t.Fatal(err)
	}
	ifr, _ = unix.NewIfreq(h.name)
	if err := unix.IoctlIfreq(s, unix.SIOCGIFINDEX, ifr); err != nil {
		t.Fatal(err)
	}
	h.idx = int(ifr.Uint32())
	proto := int(htons(unix.ETH_P_ALL))
	raw, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(raw) })
	if err := unix.Bind(raw, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: h.idx}); err != nil {
		t.Fatal(err)
	}
	h.raw = raw
	if err := unix.SetNonblock(h.tap, true); err != nil {
		t.Fatal(err)
	}
	return h
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// send puts frame on the wire of the device, towards the card.
func (h *hostSide) send(t *testing.T, frame []byte) {
	t.Helper()
	if err := unix.Sendto(h.raw, frame, 0, &unix.SockaddrLinklayer{Ifindex: h.idx, Halen: 6}); err != nil {
		t.Fatal(err)
	}
}

// receive returns the first frame the card wrote for the host that
// match accepts, or nil after timeout.
func (h *hostSide) receive(t *testing.T, timeout time.Duration, match func(*packet.Packet, []byte) bool) []byte {
	t.Helper()
	end := time.Now().Add(timeout)
	buf := make([]byte, 65536)
	for time.Now().Before(end) {
		tv := unix.NsecToTimeval(int64(time.Until(end)) + 1)
		unix.SetsockoptTimeval(h.raw, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		n, from, err := unix.Recvfrom(h.raw, buf, 0)
		if err != nil {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue // the host's own, on its way to the card
		}
		var p packet.Packet
		if packet.Parse(buf[:n], &p) == nil && match(&p, buf[:n]) {
			return append([]byte(nil), buf[:n]...)
		}
	}
	return nil
}

// TestTap: the host's side of a tap device is switched like a guest's:
// the card answers its ARP for the gateway, carries its frames to a peer
// over the underlay and writes the peer's frames to the device, and
// drops (and counts) a frame with a source the interface does not own.
func TestTap(t *testing.T) {
	h := newHostSide(t)
	host := Peer{Index: 1, IP: netip.MustParseAddr("10.0.1.4"), MAC: mac(1), Subnet: subnetA}
	peer := Peer{Index: 2, IP: netip.MustParseAddr("10.0.1.10"), MAC: mac(2), Subnet: subnetA}
	ufd, uaddr := udpSocket(t)
	pfd, paddr := udpSocket(t)
	host.Underlay, peer.Underlay = uaddr, paddr
	v := &View{Self: host, Gateway: netip.MustParseAddr("10.0.1.1"), GatewayMAC: gwMAC,
		VPC: netip.MustParsePrefix("10.0.0.0/16"), Peers: []Peer{peer}}
	sw := NewSwitch(v, plainTunnel{host.Index}, allowAll{}, nil, sendUDP(ufd), slog.New(slog.NewTextHandler(io.Discard, nil)))
	port, err := NewTap(h.tap, sw, ufd)
	if err != nil {
		t.Fatal(err)
	}
	go port.Run()
	t.Cleanup(port.Stop)

	// ARP for the gateway, answered by the card.
	h.send(t, packet.AppendARP(nil, packet.BroadcastMAC, host.MAC, &packet.ARP{Op: packet.ARPRequest,
		SenderMAC: host.MAC, SenderIP: host.IP, TargetIP: v.Gateway}))
	if got := h.receive(t, 2*time.Second, func(p *packet.Packet, _ []byte) bool {
		return p.Kind == packet.KindARP && p.ARP.Op == packet.ARPReply
	}); got == nil {
		t.Fatal("no ARP answer for the gateway")
	} else {
		var p packet.Packet
		packet.Parse(got, &p)
		if p.ARP.SenderMAC != gwMAC || p.ARP.SenderIP != v.Gateway || p.Dst != host.MAC {
			t.Fatalf("ARP answer %+v", p.ARP)
		}
	}

	// The host's frame to the peer, over the underlay.
	payload := bytes.Repeat([]byte("host gateway "), 50)
	f := udpFrame(t, host.MAC, peer.MAC, netip.AddrPortFrom(host.IP, 5000), netip.AddrPortFrom(peer.IP, 6000), payload)
	h.send(t, f)
	buf := make([]byte, 65536)
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	unix.SetsockoptTimeval(pfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	n, _, err := unix.Recvfrom(pfd, buf, 0)
	if err != nil {
		t.Fatalf("nothing reached the peer: %v", err)
	}
	if binary.BigEndian.Uint32(buf) != host.Index || !bytes.Equal(buf[4:n], f) {
		t.Fatalf("the peer received %d bytes, not the host's frame", n)
	}

	// The peer's frame to the host, written to the device.
	back := udpFrame(t, peer.MAC, host.MAC, netip.AddrPortFrom(peer.IP, 6000), netip.AddrPortFrom(host.IP, 5000), []byte("reply"))
	if err := unix.Sendto(pfd, append(binary.BigEndian.AppendUint32(nil, peer.Index), back...), 0,
		&unix.SockaddrInet4{Addr: uaddr.Addr().As4(), Port: int(uaddr.Port())}); err != nil {
		t.Fatal(err)
	}
	if got := h.receive(t, 2*time.Second, func(p *packet.Packet, _ []byte) bool {
		return p.Kind == packet.KindIPv4 && p.SrcIP == peer.IP
	}); !bytes.Equal(got, back) {
		t.Fatalf("the host received %x, want the peer's frame", got)
	}

	// A source the host's interface does not own.
	before := sw.Metrics().Snapshot().Drops[DropSpoof-1]
	h.send(t, udpFrame(t, host.MAC, peer.MAC, netip.MustParseAddrPort("10.0.1.99:5000"), netip.AddrPortFrom(peer.IP, 6000), payload))
	deadline := time.Now().Add(2 * time.Second)
	for sw.Metrics().Snapshot().Drops[DropSpoof-1] == before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if sw.Metrics().Snapshot().Drops[DropSpoof-1] != before+1 {
		t.Fatal("a spoofed frame from the host was not counted")
	}
	tv = unix.NsecToTimeval(int64(200 * time.Millisecond))
	unix.SetsockoptTimeval(pfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if n, _, err := unix.Recvfrom(pfd, buf, 0); err == nil {
		t.Fatalf("a spoofed frame reached the peer (%d bytes)", n)
	}
	if s := sw.Metrics().Snapshot(); s.RxPackets < 2 || s.TxPackets < 3 {
		t.Errorf("counters: %+v", s)
	}
}
