package packet

import (
	"errors"
	"net/netip"
	"testing"
)

func TestAppendARPReply(t *testing.T) {
	gw := MAC{0x02, 0xaa, 0, 0, 0, 1}
	req := append(eth(BroadcastMAC, macA, EtherTypeARP), arpPkt(ARPRequest, macA, ipA, MAC{}, netip.MustParseAddr("10.0.1.1"))...)
	req = append(req, make([]byte, 18)...) // padded to 60
	var p Packet
	if err := Parse(req, &p); err != nil {
		t.Fatal(err)
	}
	prefix := []byte("keep")
	b := AppendARPReply(prefix, &p, gw)
	if string(b[:4]) != "keep" || len(b) != 4+42 {
		t.Fatalf("appended %d bytes", len(b)-4)
	}
	want := append(eth(macA, gw, EtherTypeARP), arpPkt(ARPReply, gw, netip.MustParseAddr("10.0.1.1"), macA, ipA)...)
	if string(b[4:]) != string(want) {
		t.Fatalf("reply\n% x\nwant\n% x", b[4:], want)
	}
	var r Packet
	if err := Parse(b[4:], &r); err != nil {
		t.Fatal(err)
	}
	if r.ARP.Op != ARPReply || r.ARP.SenderIP != p.ARP.TargetIP || r.ARP.TargetMAC != macA || r.Dst != macA || r.Src != gw {
		t.Fatalf("%+v", r)
	}
	// Addresses that are not IPv4 become zeros rather than a panic.
	b = AppendARP(nil, BroadcastMAC, gw, &ARP{Op: ARPRequest, SenderMAC: gw, TargetIP: netip.MustParseAddr("::1")})
	if err := Parse(b, &r); err != nil || r.ARP.SenderIP != netip.IPv4Unspecified() || r.ARP.TargetIP != netip.IPv4Unspecified() {
		t.Fatalf("%v %+v", err, r.ARP)
	}
}

func TestAppendUDP(t *testing.T) {
	f := &UDPFrame{
		DstMAC: macA, SrcMAC: macB,
		Src: netip.MustParseAddrPort("10.0.1.1:67"), Dst: netip.MustParseAddrPort("255.255.255.255:68"),
		TOS: 0x10, ID: 4242, DontFragment: true,
	}
	for _, n := range []int{0, 1, 300, 1472, MaxUDPPayload} {
		payload := seq(n)
		b, err := AppendUDP([]byte{9}, f, payload)
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != 9 {
			t.Fatal("prefix lost")
		}
		b = b[1:]
		want := frame(ipOpts{proto: ProtoUDP, src: f.Src.Addr(), dst: f.Dst.Addr(), id: 4242, frag: 0x4000}, udpSeg(67, 68, payload))
		want[15] = 0x10 // TOS
		be.PutUint16(want[24:], 0)
		be.PutUint16(want[24:], refChecksum(want[14:34]))
		copy(want[0:6], macA[:])
		copy(want[6:12], macB[:])
		if string(b) != string(want) {
			t.Fatalf("%d bytes: frame differs from the reference", n)
		}
		var p Packet
		if err := Parse(b, &p); err != nil {
			t.Fatal(err)
		}
		if err := VerifyTransport(b, &p); err != nil {
			t.Fatal(err)
		}
		if p.TTL != 64 || p.SrcPort != 67 || p.DstPort != 68 || len(p.TransportPayload(b)) != n {
			t.Fatalf("%+v", p)
		}
	}
	for name, g := range map[string]UDPFrame{
		"ipv6 source":      {Src: netip.MustParseAddrPort("[::1]:67"), Dst: f.Dst},
		"no destination":   {Src: f.Src},
		"mapped ipv4 dest": {Src: f.Src, Dst: netip.AddrPortFrom(netip.AddrFrom16(f.Dst.Addr().As16()), 68)},
	} {
		if b, err := AppendUDP([]byte{1}, &g, nil); !errors.Is(err, ErrInvalidArgument) || len(b) != 1 {
			t.Errorf("%s: %v, %d bytes", name, err, len(b))
		}
	}
	if _, err := AppendUDP(nil, f, make([]byte, MaxUDPPayload+1)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("oversized payload: %v", err)
	}
}

func TestBuildersDoNotAllocateIntoRoom(t *testing.T) {
	buf := make([]byte, 0, 2048)
	payload := seq(300)
	f := &UDPFrame{Src: netip.MustParseAddrPort("10.0.1.1:67"), Dst: netip.MustParseAddrPort("10.0.1.5:68")}
	var p Packet
	req := append(eth(BroadcastMAC, macA, EtherTypeARP), arpPkt(ARPRequest, macA, ipA, MAC{}, ipB)...)
	if err := Parse(req, &p); err != nil {
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(100, func() {
		_, _ = AppendUDP(buf[:0], f, payload)
		_ = AppendARPReply(buf[:0], &p, macB)
	}); a != 0 {
		t.Fatalf("%v allocations", a)
	}
}
