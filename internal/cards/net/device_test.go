package net

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cards/net/packet"
	cardrt "github.com/azote/azote/internal/cards/runtime"
	"github.com/azote/azote/internal/vhostuser"
)

// plainTunnel carries a frame behind its sender's 4-byte index: the
// switch's tests need a tunnel, not a cipher (encap has its own).
type plainTunnel struct{ self uint32 }

var errPlain = errors.New("short datagram")

func (p plainTunnel) Seal(q int, dst []byte, to *Peer, frame []byte) ([]byte, error) {
	dst = binary.BigEndian.AppendUint32(dst, p.self)
	return append(dst, frame...), nil
}

func (p plainTunnel) Open(q int, pkt []byte) (uint32, []byte, error) {
	if len(pkt) < 4 {
		return 0, nil, errPlain
	}
	return binary.BigEndian.Uint32(pkt), pkt[4:], nil
}

func (plainTunnel) Reason(error) Drop { return DropDecrypt }

// allowAll is a guard without rules.
type allowAll struct{}

func (allowAll) Egress(*packet.Packet, []byte, int64) Drop  { return DropNone }
func (allowAll) Ingress(*packet.Packet, []byte, int64) Drop { return DropNone }

var (
	gwMAC   = packet.MAC{0x02, 0, 0, 0, 0, 1}
	subnetA = netip.MustParsePrefix("10.0.1.0/24")
	subnetB = netip.MustParsePrefix("10.0.2.0/24")
)

// card is one device behind a vhost-user socket, with its underlay
// socket on loopback, and the Go frontend playing its guest.
type card struct {
	self Peer
	sw   *Switch
	dev  *Device
	f    *vhostuser.Frontend
	fd   int
	// pending holds frames the guest received and the test has not
	// looked at yet.
	pending [][]byte
}

func udpSocket(t *testing.T) (int, netip.AddrPort) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
}

func sendUDP(fd int) func(int, netip.AddrPort, []byte) error {
	return func(_ int, to netip.AddrPort, pkt []byte) error {
		return unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: to.Addr().As4(), Port: int(to.Port())})
	}
}

// newCards makes one card per peer, each knowing the others, and
// connects a frontend to each with features.
func newCards(t *testing.T, features uint64, peers ...Peer) []*card {
	t.Helper()
	cards := make([]*card, len(peers))
	for i := range peers {
		fd, addr := udpSocket(t)
		peers[i].Underlay = addr
		cards[i] = &card{self: peers[i], fd: fd}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i, c := range cards {
		var others []Peer
		for j, p := range peers {
			if j != i {
				others = append(others, p)
			}
		}
		v := &View{Self: c.self, Gateway: c.self.Subnet.Addr().Next(), GatewayMAC: gwMAC,
			VPC: netip.MustParsePrefix("10.0.0.0/16"), Peers: others}
		c.sw = NewSwitch(v, plainTunnel{c.self.Index}, allowAll{}, nil, sendUDP(c.fd), log)
		dev, err := New(Config{MAC: c.self.MAC, Pairs: 1, MTU: 1500}, c.sw, c.fd)
		if err != nil {
			t.Fatal(err)
		}
		c.dev = dev
		sock := filepath.Join(t.TempDir(), "net.sock")
		l, err := cardrt.ListenVhostUser(sock)
		if err != nil {
			t.Fatal(err)
		}
		b := vhostuser.NewBackend(dev, log)
		go cardrt.ServeVhostUser(b, l, log)
		f, err := vhostuser.Dial(sock, vhostuser.FrontendConfig{MemSize: 8 << 20, NumQueues: 3, QueueSize: 256,
			Features: features, QueuePairs: 1})
		if err != nil {
			t.Fatal(err)
		}
		c.f = f
		t.Cleanup(func() { f.Close(); l.Close(); time.Sleep(10 * time.Millisecond); dev.Close() })
	}
	return cards
}

// post offers n receive buffers of size bytes.
func (c *card) post(t *testing.T, n, size int) {
	t.Helper()
	q := c.f.Queues[0]
	for range n {
		gpa, _, err := c.f.Alloc(size)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.Add([]vhostuser.Buf{{Addr: gpa, Len: uint32(size), Write: true}}); err != nil {
			t.Fatal(err)
		}
	}
	q.Kick()
}

// send transmits frame behind hdr (zero: no offloads).
func (c *card) send(t *testing.T, hdr packet.VnetHdr, frame []byte) {
	t.Helper()
	gpa, b, err := c.f.Alloc(packet.VnetHdrLen + len(frame))
	if err != nil {
		t.Fatal(err)
	}
	hdr.Put(b)
	copy(b[packet.VnetHdrLen:], frame)
	q := c.f.Queues[1]
	if _, err := q.Add([]vhostuser.Buf{{Addr: gpa, Len: uint32(len(b))}}); err != nil {
		t.Fatal(err)
	}
	q.Kick()
	deadline := time.Now().Add(2 * time.Second)
	for q.InFlight() > 0 && time.Now().Before(deadline) {
		q.Wait(100 * time.Millisecond)
		q.Reap(nil)
	}
}

// receive returns the next frame delivered to the guest (its header
// checked: no offload flags, num_buffers of 1), or nil after timeout.
func (c *card) receive(t *testing.T, timeout time.Duration) []byte {
	t.Helper()
	q := c.f.Queues[0]
	deadline := time.Now().Add(timeout)
	for len(c.pending) == 0 && time.Now().Before(deadline) {
		q.Wait(50 * time.Millisecond)
		for _, d := range q.Reap(nil) {
			addr := binary.LittleEndian.Uint64(c.f.Mem[q.DescAddr()+16*uint64(d.Head):])
			b := c.f.Mem[addr : addr+uint64(d.Written)]
			var h packet.VnetHdr
			if err := h.Decode(b); err != nil || h.NumBuffers != 1 || h.Flags != 0 || h.GSOType != 0 {
				t.Fatalf("received header %+v, %v", h, err)
			}
			c.pending = append(c.pending, append([]byte(nil), b[packet.VnetHdrLen:]...))
		}
	}
	if len(c.pending) == 0 {
		return nil
	}
	f := c.pending[0]
	c.pending = c.pending[1:]
	return f
}

func mac(b byte) packet.MAC { return packet.MAC{0x02, 0xaa, 0, 0, 0, b} }

func udpFrame(t *testing.T, src, dst packet.MAC, from, to netip.AddrPort, payload []byte) []byte {
	t.Helper()
	f, err := packet.AppendUDP(nil, &packet.UDPFrame{SrcMAC: src, DstMAC: dst, Src: from, Dst: to}, payload)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestSwitchDelivers: a frame from one guest reaches the other, in the
// same subnet as sent and across subnets through the router (MACs
// rewritten, TTL down by one); ARP is answered by the card for the
// gateway and for a neighbour only.
func TestSwitchDelivers(t *testing.T) {
	a := Peer{Index: 1, IP: netip.MustParseAddr("10.0.1.10"), MAC: mac(1), Subnet: subnetA}
	b := Peer{Index: 2, IP: netip.MustParseAddr("10.0.1.11"), MAC: mac(2), Subnet: subnetA}
	c := Peer{Index: 3, IP: netip.MustParseAddr("10.0.2.10"), MAC: mac(3), Subnet: subnetB}
	cards := newCards(t, 1<<FMrgRxbuf, a, b, c)
	for _, k := range cards {
		k.post(t, 16, 2048)
	}

	payload := bytes.Repeat([]byte("azote"), 100)
	f := udpFrame(t, a.MAC, b.MAC, netip.AddrPortFrom(a.IP, 5000), netip.AddrPortFrom(b.IP, 6000), payload)
	cards[0].send(t, packet.VnetHdr{}, f)
	got := cards[1].receive(t, 2*time.Second)
	if !bytes.Equal(got, f) {
		t.Fatalf("same subnet: received %d bytes, want the %d sent", len(got), len(f))
	}

	f = udpFrame(t, a.MAC, gwMAC, netip.AddrPortFrom(a.IP, 5000), netip.AddrPortFrom(c.IP, 6000), payload)
	cards[0].send(t, packet.VnetHdr{}, f)
	got = cards[2].receive(t, 2*time.Second)
	var p packet.Packet
	if err := packet.Parse(got, &p); err != nil {
		t.Fatalf("routed frame: %v", err)
	}
	if p.Src != gwMAC || p.Dst != c.MAC || p.TTL != 63 || p.SrcIP != a.IP || !bytes.Equal(p.TransportPayload(got), payload) {
		t.Fatalf("routed frame: src %v dst %v ttl %d src ip %v", p.Src, p.Dst, p.TTL, p.SrcIP)
	}

	for _, tc := range []struct {
		target netip.Addr
		want   packet.MAC
	}{
		{netip.MustParseAddr("10.0.1.1"), gwMAC},
		{b.IP, b.MAC},
		{c.IP, packet.MAC{}}, // another subnet: through the router
		{netip.MustParseAddr("10.0.1.99"), packet.MAC{}},
	} {
		req := packet.AppendARP(nil, packet.BroadcastMAC, a.MAC, &packet.ARP{Op: packet.ARPRequest,
			SenderMAC: a.MAC, SenderIP: a.IP, TargetIP: tc.target})
		cards[0].send(t, packet.VnetHdr{}, req)
		wait := 2 * time.Second
		if tc.want == (packet.MAC{}) {
			wait = 200 * time.Millisecond
		}
		got := cards[0].receive(t, wait)
		if tc.want == (packet.MAC{}) {
			if got != nil {
				t.Fatalf("ARP for %v answered", tc.target)
			}
			continue
		}
		if err := packet.Parse(got, &p); err != nil || p.Kind != packet.KindARP || p.ARP.Op != packet.ARPReply ||
			p.ARP.SenderMAC != tc.want || p.ARP.SenderIP != tc.target || p.Dst != a.MAC {
			t.Fatalf("ARP for %v: %+v, %v", tc.target, p.ARP, err)
		}
	}
	if n := cards[1].receive(t, 100*time.Millisecond); n != nil {
		t.Fatal("an ARP request reached another guest")
	}
}

// TestSwitchDrops: a spoofed source, an unknown destination, IPv6 and
// garbage are dropped and counted, and nothing reaches the peer.
func TestSwitchDrops(t *testing.T) {
	a := Peer{Index: 1, IP: netip.MustParseAddr("10.0.1.10"), MAC: mac(1), Subnet: subnetA}
	b := Peer{Index: 2, IP: netip.MustParseAddr("10.0.1.11"), MAC: mac(2), Subnet: subnetA}
	cards := newCards(t, 1<<FMrgRxbuf, a, b)
	cards[1].post(t, 16, 2048)
	pl := []byte("x")
	for _, tc := range []struct {
		name  string
		frame []byte
		drop  Drop
	}{
		{"source IP of another", udpFrame(t, a.MAC, b.MAC, netip.MustParseAddrPort("10.0.1.12:1"), netip.AddrPortFrom(b.IP, 2), pl), DropSpoof},
		{"source MAC of another", udpFrame(t, b.MAC, b.MAC, netip.AddrPortFrom(a.IP, 1), netip.AddrPortFrom(b.IP, 2), pl), DropSpoof},
		{"unknown destination", udpFrame(t, a.MAC, b.MAC, netip.AddrPortFrom(a.IP, 1), netip.MustParseAddrPort("10.0.1.50:2"), pl), dropNoRoute},
		{"IPv6", append(append(append([]byte{}, b.MAC[:]...), a.MAC[:]...), 0x86, 0xdd, 0x60, 0, 0, 0), dropIPv6},
		{"runt", []byte{1, 2, 3}, dropMalformedFrame},
	} {
		before := cards[0].sw.Metrics().Snapshot().Drops[tc.drop-1]
		cards[0].send(t, packet.VnetHdr{}, tc.frame)
		if after := cards[0].sw.Metrics().Snapshot().Drops[tc.drop-1]; after != before+1 {
			t.Errorf("%s: drops[%s] went from %d to %d", tc.name, tc.drop, before, after)
		}
	}
	if got := cards[1].receive(t, 200*time.Millisecond); got != nil {
		t.Fatalf("a dropped frame was delivered: %x", got)
	}
}

// TestSwitchOffloads: a 64 KiB TSO frame with a partial checksum arrives
// as MSS-sized frames with whole checksums, and a frame spread over
// several small receive buffers (MRG_RXBUF) says how many it took.
func TestSwitchOffloads(t *testing.T) {
	a := Peer{Index: 1, IP: netip.MustParseAddr("10.0.1.10"), MAC: mac(1), Subnet: subnetA}
	b := Peer{Index: 2, IP: netip.MustParseAddr("10.0.1.11"), MAC: mac(2), Subnet: subnetA}
	cards := newCards(t, 1<<FMrgRxbuf|1<<FCsum|1<<FHostTSO4, a, b)
	cards[1].post(t, 200, 2048)

	payload := make([]byte, 60000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	frame := tcpFrame(a, b, payload)
	var p packet.Packet
	if err := packet.Parse(frame, &p); err != nil {
		t.Fatal(err)
	}
	hdr := packet.VnetHdr{Flags: packet.VnetFlagNeedsCsum, GSOType: packet.GSOTCPv4, GSOSize: 1448,
		HdrLen: uint16(p.Payload), CsumStart: uint16(p.L4), CsumOffset: 16}
	cards[0].send(t, hdr, frame)
	var got []byte
	for len(got) < len(payload) {
		seg := cards[1].receive(t, 2*time.Second)
		if seg == nil {
			t.Fatalf("received %d of %d bytes", len(got), len(payload))
		}
		if err := packet.Parse(seg, &p); err != nil {
			t.Fatal(err)
		}
		if err := packet.VerifyTransport(seg, &p); err != nil {
			t.Fatalf("segment at %d: %v", len(got), err)
		}
		got = append(got, p.TransportPayload(seg)...)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("segments do not add up to the payload")
	}
}

// tcpFrame is one TCP segment from a to b carrying payload, its checksum
// left to the device (the pseudo-header sum, as Linux leaves it).
func tcpFrame(a, b Peer, payload []byte) []byte {
	f := append([]byte{}, b.MAC[:]...)
	f = append(f, a.MAC[:]...)
	f = append(f, 0x08, 0x00)
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, packet.ProtoTCP
	binary.BigEndian.PutUint16(ip[2:], uint16(20+20+len(payload)))
	sa, da := a.IP.As4(), b.IP.As4()
	copy(ip[12:], sa[:])
	copy(ip[16:], da[:])
	binary.BigEndian.PutUint16(ip[10:], packet.IPv4Checksum(ip))
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 80)
	binary.BigEndian.PutUint32(tcp[4:], 1000)
	tcp[12], tcp[13] = 5<<4, 0x18 // PSH ACK
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	binary.BigEndian.PutUint16(tcp[16:], packet.PseudoHeaderChecksum(packet.ProtoTCP, a.IP, b.IP, uint16(20+len(payload))))
	f = append(f, ip...)
	f = append(f, tcp...)
	return append(f, payload...)
}
