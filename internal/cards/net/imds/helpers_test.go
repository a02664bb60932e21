package imds

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/cards/net/packet"
)

var (
	guestMAC = packet.MAC{0x02, 0xaa, 0, 0, 0, 1}
	gwMAC    = packet.MAC{0x02, 0xaa, 0, 0, 0, 0xfe}
	guestIP  = netip.MustParseAddr("10.0.1.5")
)

// testMetadata is an instance with every part of the tree.
func testMetadata() *cardproto.NetMetadata {
	return &cardproto.NetMetadata{
		InstanceID: "i-0123456789abcdef0", ImageID: "ami-busybox", InstanceType: "azote.2c.1024m",
		Hostname: "ip-10-0-1-5", AccountID: "123456789012", Region: "local", AvailabilityZone: "local-1a",
		Interfaces: []cardproto.NetMetadataInterface{{
			MAC: guestMAC.String(), DeviceNumber: 0, InterfaceID: "eni-1", LocalIPv4: guestIP.String(),
			SubnetID: "subnet-1", SubnetCIDR: "10.0.1.0/24", VPCID: "vpc-1", VPCCIDR: "10.0.0.0/16",
			SecurityGroups: []string{"default", "web"}, SecurityGroupIDs: []string{"sg-1", "sg-2"},
		}},
		PublicKeys:        []cardproto.NetPublicKey{{Name: "alice", OpenSSH: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice"}},
		UserData:          []byte("#!/bin/sh\necho hi\n"),
		IdentityDocument:  []byte(`{"instanceId":"i-0123456789abcdef0"}`),
		IdentitySignature: "c2lnbmF0dXJl",
		Role: &cardproto.NetRoleCredentials{
			InstanceProfileARN: "arn:aws:iam::123456789012:instance-profile/app", InstanceProfileID: "AIPA1",
			RoleName: "app-role", AccessKeyID: "ASIA1", SecretAccessKey: "secret", Token: "session",
			Expiration: "2030-01-01T06:00:00Z", LastUpdated: "2030-01-01T00:00:00Z",
		},
	}
}

// clock is a fake time shared by a service and its stack.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestService(t testing.TB, md *cardproto.NetMetadata, rate, burst int) (*Service, *clock) {
	t.Helper()
	s, err := NewService(guestMAC.String(), "eni-1", rate, burst)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Unix(1_900_000_000, 0)}
	s.now = clk.now
	s.last = clk.now()
	if md != nil {
		d, err := Compile(md, guestMAC.String(), guestIP)
		if err != nil {
			t.Fatal(err)
		}
		s.SetData(d)
	}
	return s, clk
}

// guest is a TCP client written by hand, driving a Stack frame by frame.
type guest struct {
	t    testing.TB
	st   *Stack
	clk  *clock
	port uint16
	seq  uint32 // the next sequence number the guest sends
	ack  uint32 // the next the guest expects
	mu   sync.Mutex
	out  [][]byte // frames the stack emitted, not yet taken
	wnd  uint16
}

func newGuest(t testing.TB, md *cardproto.NetMetadata) *guest {
	svc, clk := newTestService(t, md, 0, 0)
	g := &guest{t: t, clk: clk, port: 40000, seq: 1000, wnd: 65535}
	g.st = NewStack(svc, func(f []byte) {
		g.mu.Lock()
		g.out = append(g.out, f)
		g.mu.Unlock()
	})
	g.st.now = clk.now
	t.Cleanup(g.st.Close)
	return g
}

// frame builds a segment from the guest to the service.
func (g *guest) frame(port uint16, seq, ack uint32, flags uint8, opts, payload []byte) []byte {
	tcpLen := 20 + len(opts)
	total := 20 + tcpLen + len(payload)
	b := append([]byte(nil), gwMAC[:]...)
	b = append(b, guestMAC[:]...)
	b = append(b, 0x08, 0)
	src, dst := guestIP.As4(), Addr.As4()
	b = append(b, 0x45, 0, byte(total>>8), byte(total), 0, 0, 0x40, 0, 64, packet.ProtoTCP, 0, 0)
	b = append(b, src[:]...)
	b = append(b, dst[:]...)
	binary.BigEndian.PutUint16(b[24:], packet.IPv4Checksum(b[14:34]))
	b = binary.BigEndian.AppendUint16(b, port)
	b = binary.BigEndian.AppendUint16(b, Port)
	b = binary.BigEndian.AppendUint32(b, seq)
	b = binary.BigEndian.AppendUint32(b, ack)
	b = append(b, byte(tcpLen/4)<<4, flags)
	b = binary.BigEndian.AppendUint16(b, g.wnd)
	b = append(b, 0, 0, 0, 0)
	b = append(b, opts...)
	b = append(b, payload...)
	sum := packet.PseudoHeaderChecksum(packet.ProtoTCP, guestIP, Addr, uint16(tcpLen+len(payload)))
	binary.BigEndian.PutUint16(b[34+16:], ^packet.Checksum(b[34:], sum))
	return b
}

func (g *guest) deliver(f []byte) {
	var p packet.Packet
	if err := packet.Parse(f, &p); err != nil {
		g.t.Fatalf("the test's own frame: %v", err)
	}
	g.st.FromGuest(&p, f)
}

// send sends a segment at the guest's sequence and advances it.
func (g *guest) send(flags uint8, payload []byte) {
	g.deliver(g.frame(g.port, g.seq, g.ack, flags, nil, payload))
	g.seq += uint32(len(payload))
	if flags&(packet.TCPFlagSYN|packet.TCPFlagFIN) != 0 {
		g.seq++
	}
}

// rseg is a segment the stack sent, checked and parsed.
type rseg struct {
	p       packet.Packet
	mss     uint16
	payload []byte
}

// take returns the segments the stack sent since the last take, each
// checked: addresses, both checksums, TTL.
func (g *guest) take(ttl uint8) []rseg { // ttl 0xff: any
	g.t.Helper()
	g.mu.Lock()
	frames := g.out
	g.out = nil
	g.mu.Unlock()
	var out []rseg
	for _, f := range frames {
		var s rseg
		if err := packet.Parse(f, &s.p); err != nil {
			g.t.Fatalf("the stack sent a bad frame: %v", err)
		}
		if err := packet.VerifyTransport(f, &s.p); err != nil {
			g.t.Fatalf("the stack sent a bad TCP checksum: %v", err)
		}
		if s.p.Src != gwMAC || s.p.Dst != guestMAC || s.p.SrcIP != Addr || s.p.DstIP != guestIP || s.p.SrcPort != Port {
			g.t.Fatalf("the stack sent %v→%v %v→%v", s.p.Src, s.p.Dst, s.p.SrcIP, s.p.DstIP)
		}
		if ttl != 0xff && s.p.TTL != ttl {
			g.t.Fatalf("TTL %d, want the hop limit %d", s.p.TTL, ttl)
		}
		s.mss = mssOption(f[s.p.L4+20 : s.p.Payload])
		s.payload = append([]byte(nil), f[s.p.Payload:s.p.End]...)
		out = append(out, s)
	}
	return out
}

// connect does the handshake and returns the SYN/ACK.
func (g *guest) connect(mss uint16) rseg {
	g.t.Helper()
	opts := []byte{2, 4, byte(mss >> 8), byte(mss), 1, 1, 1, 0}
	g.deliver(g.frame(g.port, g.seq, 0, packet.TCPFlagSYN, opts, nil))
	g.seq++
	segs := g.take(1)
	if len(segs) != 1 || segs[0].p.TCPFlags != packet.TCPFlagSYN|packet.TCPFlagACK || segs[0].p.Ack != g.seq {
		g.t.Fatalf("no SYN/ACK: %+v", segs)
	}
	g.ack = segs[0].p.Seq + 1
	g.send(packet.TCPFlagACK, nil)
	return segs[0]
}

// readAnswer takes segments, acknowledging each, until n bytes arrived.
func (g *guest) readAnswer(ttl uint8) (string, []rseg) {
	g.t.Helper()
	var all []rseg
	var b strings.Builder
	for range 100 {
		segs := g.take(ttl)
		if len(segs) == 0 {
			break
		}
		for _, s := range segs {
			all = append(all, s)
			if s.p.Seq == g.ack && len(s.payload) > 0 {
				b.Write(s.payload)
				g.ack += uint32(len(s.payload))
			}
			if s.p.Seq+uint32(len(s.payload)) == g.ack && s.p.TCPFlags&packet.TCPFlagFIN != 0 {
				g.ack++
			}
		}
		g.send(packet.TCPFlagACK, nil)
	}
	return b.String(), all
}
