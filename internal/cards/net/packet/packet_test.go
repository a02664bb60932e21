package packet

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestChecksumMatchesRFC1071(t *testing.T) {
	// RFC 1071 §3's example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
	if got := Checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, 0); got != 0xddf2 {
		t.Fatalf("RFC 1071 example: got %#04x, want 0xddf2", got)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 300; n++ {
		for _, fill := range []byte{0x00, 0xff, 0} {
			b := make([]byte, n)
			for i := range b {
				if fill == 0 {
					b[i] = byte(r.Uint32())
				} else {
					b[i] = fill
				}
			}
			init := uint16(r.Uint32())
			want := refSum(append([]byte{byte(init >> 8), byte(init)}, b...))
			if got := Checksum(b, init); uint32(got) != want && !(want == 0 && got == 0xffff) && !(want == 0xffff && got == 0) {
				t.Fatalf("len %d fill %#x init %#04x: got %#04x, want %#04x", n, fill, init, got, want)
			}
		}
	}
	// Sums that carry out of 64 bits many times.
	b := make([]byte, 65536)
	for i := range b {
		b[i] = 0xff
	}
	if got := Checksum(b, 0xffff); got != 0xffff {
		t.Fatalf("all ones: got %#04x", got)
	}
}

func TestParse(t *testing.T) {
	tcpOpts := []byte{2, 4, 0x05, 0xb4, 1, 1, 4, 2} // MSS 1460, NOP, NOP, SACK permitted
	tcp := frame(ipOpts{proto: ProtoTCP, id: 77, frag: 0x4000, ttl: 63}, tcpSeg(40000, 443, 1000, 2000, TCPFlagSYN|TCPFlagACK, tcpOpts, []byte("hello")))
	udpPadded := frame(ipOpts{proto: ProtoUDP, pad: 60 - 14 - 29}, udpSeg(68, 67, []byte{1}))
	udpOptions := frame(ipOpts{proto: ProtoUDP, options: []byte{1, 1, 1, 0}}, udpSeg(5353, 53, []byte("abcd")))
	echo := frame(ipOpts{proto: ProtoICMP}, icmpSeg(ICMPEchoRequest, 0, 0x1234, 7, []byte("ping")))
	unreach := frame(ipOpts{proto: ProtoICMP}, icmpSeg(3, 1, 0x1234, 7, nil))
	arpReq := append(eth(BroadcastMAC, macA, EtherTypeARP), arpPkt(ARPRequest, macA, ipA, MAC{}, ipB)...)
	// A first fragment of a UDP datagram longer than the fragment, and a
	// later one.
	firstFrag := frame(ipOpts{proto: ProtoUDP, frag: 0x2000, noL4Csum: true}, append(udpSeg(1, 2, nil), seq(16)...))
	be.PutUint16(firstFrag[14+20+4:], 1000)
	laterFrag := frame(ipOpts{proto: ProtoTCP, frag: 0x0003}, seq(40))
	gre := frame(ipOpts{proto: 47}, seq(12))

	type want struct {
		kind                         Kind
		proto                        uint8
		transport, fragment          bool
		sport, dport                 uint16
		l4, payload, payloadEnd, end int
	}
	cases := []struct {
		name  string
		frame []byte
		err   error
		want  want
		check func(t *testing.T, p *Packet)
	}{
		{name: "empty", frame: nil, err: ErrTruncated},
		{name: "13 bytes", frame: make([]byte, 13), err: ErrTruncated},
		{name: "ipv6", frame: append(eth(macB, macA, EtherTypeIPv6), seq(40)...), want: want{kind: KindIPv6, l4: 54, payload: 54, payloadEnd: 54, end: 54}},
		{name: "802.1Q", frame: append(eth(macB, macA, EtherTypeVLAN), seq(30)...), want: want{kind: KindVLAN, l4: 44, payload: 44, payloadEnd: 44, end: 44}},
		{name: "802.1ad", frame: append(eth(macB, macA, EtherTypeQinQ), seq(30)...), want: want{kind: KindVLAN, l4: 44, payload: 44, payloadEnd: 44, end: 44}},
		{name: "LLDP", frame: eth(macB, macA, 0x88cc), want: want{kind: KindOther, l4: 14, payload: 14, payloadEnd: 14, end: 14}},
		{name: "802.3 length", frame: append(eth(macB, macA, 46), seq(46)...), want: want{kind: KindOther, l4: 60, payload: 60, payloadEnd: 60, end: 60}},

		{name: "arp request", frame: append(arpReq, make([]byte, 18)...), want: want{kind: KindARP, l4: 42, payload: 42, payloadEnd: 42, end: 42},
			check: func(t *testing.T, p *Packet) {
				want := ARP{Op: ARPRequest, SenderMAC: macA, SenderIP: ipA, TargetIP: ipB}
				if p.ARP != want || p.Dst != BroadcastMAC || p.Src != macA {
					t.Errorf("got %+v dst %v src %v", p.ARP, p.Dst, p.Src)
				}
			}},
		{name: "arp short", frame: arpReq[:41], err: ErrTruncated},
		{name: "arp for ipv6", frame: set(arpReq, 14+3, 0xdd), err: ErrUnsupported},
		{name: "arp hlen 8", frame: set(arpReq, 14+4, 8), err: ErrUnsupported},
		{name: "arp over token ring", frame: set(arpReq, 14+1, 6), err: ErrUnsupported},

		{name: "tcp", frame: tcp, want: want{kind: KindIPv4, proto: ProtoTCP, transport: true, sport: 40000, dport: 443, l4: 34, payload: 34 + 28, payloadEnd: 34 + 28 + 5, end: 34 + 28 + 5},
			check: func(t *testing.T, p *Packet) {
				if p.Seq != 1000 || p.Ack != 2000 || p.TCPFlags != TCPFlagSYN|TCPFlagACK || p.Window != 64240 {
					t.Errorf("tcp fields: %+v", p)
				}
				if p.SrcIP != ipA || p.DstIP != ipB || p.TTL != 63 || p.ID != 77 || !p.DontFragment || p.Src != macA || p.Dst != macB {
					t.Errorf("ip fields: %+v", p)
				}
				if string(p.TransportPayload(tcp)) != "hello" {
					t.Errorf("payload %q", p.TransportPayload(tcp))
				}
			}},
		{name: "udp with ethernet padding", frame: udpPadded, want: want{kind: KindIPv4, proto: ProtoUDP, transport: true, sport: 68, dport: 67, l4: 34, payload: 42, payloadEnd: 43, end: 43},
			check: func(t *testing.T, p *Packet) {
				if p.UDPLen != 9 || len(udpPadded) != 60 {
					t.Errorf("udp len %d, frame %d", p.UDPLen, len(udpPadded))
				}
			}},
		{name: "udp after ip options", frame: udpOptions, want: want{kind: KindIPv4, proto: ProtoUDP, transport: true, sport: 5353, dport: 53, l4: 38, payload: 46, payloadEnd: 50, end: 50}},
		{name: "udp length shorter than the datagram", frame: func() []byte {
			f := frame(ipOpts{proto: ProtoUDP, noL4Csum: true}, udpSeg(1, 2, seq(10)))
			be.PutUint16(f[34+4:], 12)
			return f
		}(), want: want{kind: KindIPv4, proto: ProtoUDP, transport: true, sport: 1, dport: 2, l4: 34, payload: 42, payloadEnd: 46, end: 52}},
		{name: "icmp echo", frame: echo, want: want{kind: KindIPv4, proto: ProtoICMP, transport: true, l4: 34, payload: 42, payloadEnd: 46, end: 46},
			check: func(t *testing.T, p *Packet) {
				if p.ICMPType != ICMPEchoRequest || p.ICMPID != 0x1234 || p.ICMPSeq != 7 {
					t.Errorf("icmp %+v", p)
				}
			}},
		{name: "icmp unreachable has no id", frame: unreach, want: want{kind: KindIPv4, proto: ProtoICMP, transport: true, l4: 34, payload: 42, payloadEnd: 42, end: 42},
			check: func(t *testing.T, p *Packet) {
				if p.ICMPType != 3 || p.ICMPCode != 1 || p.ICMPID != 0 || p.ICMPSeq != 0 {
					t.Errorf("icmp %+v", p)
				}
			}},
		{name: "first fragment carries ports", frame: firstFrag, want: want{kind: KindIPv4, proto: ProtoUDP, transport: true, fragment: true, sport: 1, dport: 2, l4: 34, payload: 42, payloadEnd: 58, end: 58},
			check: func(t *testing.T, p *Packet) {
				if !p.MoreFragments || p.FragOffset != 0 || p.UDPLen != 1000 {
					t.Errorf("%+v", p)
				}
			}},
		{name: "later fragment has no transport", frame: laterFrag, want: want{kind: KindIPv4, proto: ProtoTCP, fragment: true, l4: 34, payload: 34, payloadEnd: 74, end: 74},
			check: func(t *testing.T, p *Packet) {
				if p.MoreFragments || p.FragOffset != 3 {
					t.Errorf("%+v", p)
				}
			}},
		{name: "other protocol", frame: gre, want: want{kind: KindIPv4, proto: 47, l4: 34, payload: 34, payloadEnd: 46, end: 46}},

		{name: "ipv4 shorter than 20", frame: tcp[:33], err: ErrTruncated},
		{name: "version 6 in ipv4", frame: set(tcp, 14, 0x65), err: ErrBadIPHeader},
		{name: "ihl 4", frame: set(tcp, 14, 0x44), err: ErrBadIPHeader},
		{name: "ihl beyond frame", frame: frame(ipOpts{proto: 47, options: make([]byte, 40)}, nil)[:70], err: ErrTruncated},
		{name: "total length below ihl", frame: frame(ipOpts{proto: 47, totalDelta: -1}, nil), err: ErrBadIPHeader},
		{name: "total length beyond frame", frame: frame(ipOpts{proto: ProtoUDP, totalDelta: 1}, udpSeg(1, 2, nil)), err: ErrTruncated},
		{name: "bad header checksum", frame: frame(ipOpts{proto: ProtoUDP, badSum: true}, udpSeg(1, 2, nil)), err: ErrBadChecksum},
		{name: "tcp shorter than 20", frame: frame(ipOpts{proto: ProtoTCP, noL4Csum: true}, seq(19)), err: ErrTruncated},
		{name: "tcp data offset 4", frame: frame(ipOpts{proto: ProtoTCP, noL4Csum: true}, set(tcpSeg(1, 2, 0, 0, 0, nil, nil), 12, 0x40)), err: ErrBadTransport},
		{name: "tcp data offset beyond segment", frame: frame(ipOpts{proto: ProtoTCP, noL4Csum: true}, set(tcpSeg(1, 2, 0, 0, 0, nil, seq(39)), 12, 0xf0)), err: ErrBadTransport},
		{name: "udp shorter than 8", frame: frame(ipOpts{proto: ProtoUDP, noL4Csum: true}, seq(7)), err: ErrTruncated},
		{name: "udp length 7", frame: frame(ipOpts{proto: ProtoUDP, noL4Csum: true}, set(udpSeg(1, 2, nil), 5, 7)), err: ErrBadTransport},
		{name: "udp length beyond datagram", frame: frame(ipOpts{proto: ProtoUDP, noL4Csum: true}, set(udpSeg(1, 2, seq(3)), 5, 12)), err: ErrBadTransport},
		{name: "icmp shorter than 8", frame: frame(ipOpts{proto: ProtoICMP, noL4Csum: true}, seq(7)), err: ErrTruncated},
		{name: "tcp fragment at offset 8 (RFC 1858)", frame: frame(ipOpts{proto: ProtoTCP, frag: 1}, seq(40)), err: ErrBadIPHeader},
		{name: "tiny first tcp fragment", frame: frame(ipOpts{proto: ProtoTCP, frag: 0x2000, noL4Csum: true}, seq(16)), err: ErrBadIPHeader},
		{name: "first fragment cuts tcp options", frame: frame(ipOpts{proto: ProtoTCP, frag: 0x2000, noL4Csum: true}, set(tcpSeg(1, 2, 0, 0, 0, nil, nil), 12, 0x60)), err: ErrBadIPHeader},
		{name: "tiny first udp fragment", frame: frame(ipOpts{proto: ProtoUDP, frag: 0x2000, noL4Csum: true}, seq(4)), err: ErrBadIPHeader},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var p Packet
			err := Parse(c.frame, &p)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("err = %v, want %v", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			got := want{p.Kind, p.Proto, p.HasTransport, p.Fragment, p.SrcPort, p.DstPort, p.L4, p.Payload, p.PayloadEnd, p.End}
			if got != c.want {
				t.Fatalf("got  %+v\nwant %+v", got, c.want)
			}
			if p.L3 != EthernetHeaderLen {
				t.Fatalf("L3 = %d", p.L3)
			}
			if c.check != nil {
				c.check(t, &p)
			}
		})
	}
}

// Errors from different layers wrap only their own sentinel, so drop
// counters by reason do not double count.
func TestErrorsAreDistinct(t *testing.T) {
	all := []error{ErrTruncated, ErrBadIPHeader, ErrBadChecksum, ErrBadTransport, ErrUnsupported, ErrTTLExpired, ErrBadVnetHdr, ErrShortBuffer, ErrInvalidArgument}
	specific := []error{errShortEthernet, errShortARP, errARPType, errShortIPv4, errIPVersion, errIHL, errTotalLen, errIPBeyondFrame, errIPChecksum,
		errTinyFragment, errShortTCP, errTCPOffset, errShortUDP, errUDPLen, errShortICMP, errL4Checksum, errNoTransport, errNotIPv4,
		errShortVnetHdr, errCsumRange, errGSOType, errGSOECN, errGSOSize, errGSONotTCP, errSegmentBuf}
	for _, e := range specific {
		n := 0
		for _, s := range all {
			if errors.Is(e, s) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%v wraps %d sentinels", e, n)
		}
	}
}

func TestKindAndMACStrings(t *testing.T) {
	for k, want := range map[Kind]string{KindOther: "other", KindARP: "arp", KindIPv4: "ipv4", KindIPv6: "ipv6", KindVLAN: "vlan", 99: "invalid"} {
		if k.String() != want {
			t.Errorf("%d: %q", k, k.String())
		}
	}
	m := MAC{0x02, 0xab, 0, 0x10, 0xff, 1}
	if m.String() != "02:ab:00:10:ff:01" || m.IsMulticast() || m.IsBroadcast() {
		t.Errorf("%v", m)
	}
	if !BroadcastMAC.IsMulticast() || !BroadcastMAC.IsBroadcast() || !(MAC{0x01, 0, 0x5e, 0, 0, 1}).IsMulticast() {
		t.Error("group addresses")
	}
}

func TestDecTTL(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 2000; i++ {
		ttl := byte(r.IntN(256))
		f := frame(ipOpts{proto: []byte{0, 47, 50, 132}[r.IntN(4)], ttl: ttl, id: uint16(r.Uint32()), frag: uint16(r.Uint32()) & 0x4000,
			src: netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), 1, 2}), options: []byte{1, 1, 1, 0}}, seq(r.IntN(20)))
		if ttl == 0 { // frame makes 0 mean 64
			f[22] = 0
			be.PutUint16(f[24:], 0)
			be.PutUint16(f[24:], refChecksum(f[14:38]))
		}
		var p Packet
		if err := Parse(f, &p); err != nil {
			t.Fatal(err)
		}
		before := append([]byte(nil), f...)
		err := DecTTL(f, &p)
		if ttl <= 1 {
			if !errors.Is(err, ErrTTLExpired) || string(f) != string(before) || p.TTL != ttl {
				t.Fatalf("ttl %d: err %v, frame changed %v", ttl, err, string(f) != string(before))
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if f[22] != ttl-1 || p.TTL != ttl-1 {
			t.Fatalf("ttl %d became %d (p %d)", ttl, f[22], p.TTL)
		}
		// The incremental update equals a full recomputation.
		if got, want := be.Uint16(f[24:]), refChecksum(append(append([]byte(nil), f[14:24]...), f[26:38]...)); got != want {
			t.Fatalf("ttl %d: checksum %#04x, recomputed %#04x", ttl, got, want)
		}
		if err := Parse(f, &p); err != nil {
			t.Fatalf("after DecTTL: %v", err)
		}
	}
	var p Packet
	arp := append(eth(BroadcastMAC, macA, EtherTypeARP), arpPkt(ARPRequest, macA, ipA, MAC{}, ipB)...)
	if err := Parse(arp, &p); err != nil {
		t.Fatal(err)
	}
	if err := DecTTL(arp, &p); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("DecTTL on ARP: %v", err)
	}
}

func TestUpdateChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 20000; i++ {
		h := make([]byte, 20)
		for j := range h {
			h[j] = byte(r.Uint32())
		}
		h[0] = 0x45
		be.PutUint16(h[10:], 0)
		be.PutUint16(h[10:], refChecksum(h))
		w := 2 * r.IntN(10)
		if w == 10 {
			continue
		}
		old := be.Uint16(h[w:])
		nw := uint16(r.Uint32())
		if i%7 == 0 {
			nw = ^old // the word that makes equation 2 go wrong
		}
		be.PutUint16(h[w:], nw)
		got := UpdateChecksum(be.Uint16(h[10:]), old, nw)
		be.PutUint16(h[10:], 0)
		if want := refChecksum(h); got != want {
			t.Fatalf("word %d %#04x→%#04x: %#04x, want %#04x", w, old, nw, got, want)
		}
	}
}

func TestIPv4ChecksumIgnoresField(t *testing.T) {
	f := frame(ipOpts{proto: ProtoUDP, options: []byte{7, 3, 4, 0}}, udpSeg(1, 2, nil))
	ip := f[14:38]
	want := be.Uint16(ip[10:])
	be.PutUint16(ip[10:], 0xbeef)
	if got := IPv4Checksum(ip); got != want {
		t.Fatalf("got %#04x, want %#04x", got, want)
	}
}

func TestTransportChecksums(t *testing.T) {
	frames := map[string][]byte{
		"tcp":        frame(ipOpts{proto: ProtoTCP}, tcpSeg(1, 2, 3, 4, TCPFlagACK, []byte{1, 1, 1, 1}, seq(1001))),
		"udp":        frame(ipOpts{proto: ProtoUDP, pad: 3}, udpSeg(1, 2, seq(33))),
		"icmp":       frame(ipOpts{proto: ProtoICMP}, icmpSeg(ICMPEchoReply, 0, 9, 9, seq(56))),
		"odd tcp":    frame(ipOpts{proto: ProtoTCP}, tcpSeg(1, 2, 3, 4, TCPFlagACK, nil, seq(1))),
		"empty udp":  frame(ipOpts{proto: ProtoUDP}, udpSeg(7, 8, nil)),
		"icmp pad 2": frame(ipOpts{proto: ProtoICMP, pad: 2}, icmpSeg(ICMPEchoRequest, 0, 1, 2, seq(3))),
	}
	for name, f := range frames {
		t.Run(name, func(t *testing.T) {
			var p Packet
			if err := Parse(f, &p); err != nil {
				t.Fatal(err)
			}
			if err := VerifyTransport(f, &p); err != nil {
				t.Fatalf("reference checksum rejected: %v", err)
			}
			want := append([]byte(nil), f...)
			f[p.PayloadEnd-1] ^= 0x01
			if err := VerifyTransport(f, &p); !errors.Is(err, ErrBadChecksum) {
				t.Fatalf("corrupted payload: %v", err)
			}
			if err := SetTransportChecksum(f, &p); err != nil {
				t.Fatal(err)
			}
			if err := VerifyTransport(f, &p); err != nil {
				t.Fatalf("after SetTransportChecksum: %v", err)
			}
			f[p.PayloadEnd-1] ^= 0x01
			if err := SetTransportChecksum(f, &p); err != nil {
				t.Fatal(err)
			}
			if string(f) != string(want) {
				t.Fatal("SetTransportChecksum differs from the reference")
			}
		})
	}
	// A UDP checksum of zero means none.
	f := frame(ipOpts{proto: ProtoUDP, noL4Csum: true}, udpSeg(1, 2, seq(5)))
	var p Packet
	if err := Parse(f, &p); err != nil {
		t.Fatal(err)
	}
	if err := VerifyTransport(f, &p); err != nil {
		t.Fatalf("no UDP checksum: %v", err)
	}
	// A UDP checksum that computes to zero is sent as 0xffff. Find a
	// payload word that makes it so.
	for w := 0; w < 0x10000; w++ {
		f := frame(ipOpts{proto: ProtoUDP}, udpSeg(1, 2, []byte{byte(w >> 8), byte(w)}))
		if be.Uint16(f[34+6:]) != 0 {
			continue
		}
		if err := Parse(f, &p); err != nil {
			t.Fatal(err)
		}
		if err := SetTransportChecksum(f, &p); err != nil || be.Uint16(f[34+6:]) != 0xffff {
			t.Fatalf("zero UDP checksum written as %#04x (%v)", be.Uint16(f[34+6:]), err)
		}
		if err := VerifyTransport(f, &p); err != nil {
			t.Fatal(err)
		}
		break
	}
	// Fragments and other protocols have no checksum to check.
	for _, f := range [][]byte{frame(ipOpts{proto: ProtoTCP, frag: 3}, seq(40)), frame(ipOpts{proto: 47}, nil), frame(ipOpts{proto: ProtoUDP, frag: 0x2000}, udpSeg(1, 2, seq(8)))} {
		if err := Parse(f, &p); err != nil {
			t.Fatal(err)
		}
		if err := VerifyTransport(f, &p); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("verify: %v", err)
		}
		if err := SetTransportChecksum(f, &p); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("set: %v", err)
		}
	}
}

func TestPseudoHeaderChecksum(t *testing.T) {
	src, dst := netip.MustParseAddr("192.168.255.1"), netip.MustParseAddr("172.16.0.200")
	want := uint16(refSum(pseudo(src, dst, ProtoUDP, 1480)))
	if got := PseudoHeaderChecksum(ProtoUDP, src, dst, 1480); got != want {
		t.Fatalf("got %#04x want %#04x", got, want)
	}
	if got := PseudoHeaderChecksum(ProtoUDP, netip.AddrFrom16(src.As16()), netip.AddrFrom16(dst.As16()), 1480); got != want {
		t.Fatalf("IPv4-mapped: got %#04x want %#04x", got, want)
	}
	if got := PseudoHeaderChecksum(ProtoTCP, netip.Addr{}, netip.MustParseAddr("::1"), 20); got != ProtoTCP+20 {
		t.Fatalf("non-IPv4 addresses count as zero: %#04x", got)
	}
}

func TestSetEthernet(t *testing.T) {
	f := frame(ipOpts{proto: ProtoUDP}, udpSeg(1, 2, nil))
	SetEthernet(f, BroadcastMAC, macB)
	var p Packet
	if err := Parse(f, &p); err != nil || p.Dst != BroadcastMAC || p.Src != macB {
		t.Fatalf("%v %v %v", err, p.Dst, p.Src)
	}
}
