package packet

import (
	"errors"
	"testing"
)

// fixIPv4Checksum rewrites the header checksum of an IPv4 frame whose
// header fits, so that the fuzzer gets past it to the layers above.
func fixIPv4Checksum(f []byte) {
	if len(f) < 34 || be.Uint16(f[12:]) != EtherTypeIPv4 {
		return
	}
	ihl := int(f[14]&0xf) * 4
	if ihl < 20 || len(f) < 14+ihl {
		return
	}
	be.PutUint16(f[24:], IPv4Checksum(f[14:14+ihl]))
}

func seedFrames(f *testing.F) [][]byte {
	return [][]byte{
		nil,
		append(eth(BroadcastMAC, macA, EtherTypeARP), arpPkt(ARPRequest, macA, ipA, MAC{}, ipB)...),
		frame(ipOpts{proto: ProtoTCP, options: []byte{1, 1, 1, 0}}, tcpSeg(1, 2, 3, 4, TCPFlagSYN, []byte{2, 4, 5, 0xb4}, seq(10))),
		frame(ipOpts{proto: ProtoUDP, pad: 10}, udpSeg(68, 67, seq(300))),
		frame(ipOpts{proto: ProtoICMP}, icmpSeg(ICMPEchoRequest, 0, 1, 2, seq(56))),
		frame(ipOpts{proto: ProtoUDP, frag: 0x2000}, udpSeg(1, 2, seq(40))),
		frame(ipOpts{proto: ProtoTCP, frag: 0x0004}, seq(40)),
		append(eth(macB, macA, EtherTypeVLAN), seq(50)...),
		append(eth(macB, macA, EtherTypeIPv6), seq(50)...),
	}
}

// FuzzParse checks that Parse never panics, that the offsets it reports
// are ordered and inside the frame, that errors wrap a sentinel, and that
// the helpers that work on a parsed packet (SetTransportChecksum,
// VerifyTransport, DecTTL) keep it parseable and its checksums valid.
// fix set rewrites the IPv4 header checksum first.
func FuzzParse(f *testing.F) {
	for _, fr := range seedFrames(f) {
		f.Add(fr, true)
		f.Add(fr, false)
	}
	sentinels := []error{ErrTruncated, ErrBadIPHeader, ErrBadChecksum, ErrBadTransport, ErrUnsupported}
	f.Fuzz(func(t *testing.T, fr []byte, fix bool) {
		if fix {
			fixIPv4Checksum(fr)
		}
		var p Packet
		err := Parse(fr, &p)
		if err != nil {
			n := 0
			for _, s := range sentinels {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%v wraps %d sentinels", err, n)
			}
			return
		}
		if !(p.L3 <= p.L4 && p.L4 <= p.Payload && p.Payload <= p.PayloadEnd && p.PayloadEnd <= p.End && p.End <= len(fr)) {
			t.Fatalf("offsets out of order: L3 %d L4 %d Payload %d PayloadEnd %d End %d len %d", p.L3, p.L4, p.Payload, p.PayloadEnd, p.End, len(fr))
		}
		if p.Kind != KindIPv4 {
			return
		}
		if p.HasTransport && !p.Fragment {
			if err := SetTransportChecksum(fr, &p); err != nil {
				t.Fatal(err)
			}
			if err := VerifyTransport(fr, &p); err != nil {
				t.Fatal(err)
			}
		}
		ttl := p.TTL
		err = DecTTL(fr, &p)
		if ttl <= 1 {
			if !errors.Is(err, ErrTTLExpired) {
				t.Fatalf("TTL %d: %v", ttl, err)
			}
			return
		}
		var q Packet
		if err := Parse(fr, &q); err != nil {
			t.Fatalf("after DecTTL: %v", err)
		}
		if q.TTL != ttl-1 {
			t.Fatalf("TTL %d became %d", ttl, q.TTL)
		}
	})
}

// FuzzSegment checks that Segment never panics on any frame and header,
// and that when it accepts one every segment parses, has valid IPv4 and
// TCP checksums, and carries the next piece of the payload at the right
// sequence number, with no more than GSOSize bytes each. fix set rewrites
// the IPv4 header checksum first.
func FuzzSegment(f *testing.F) {
	tsOpt := []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}
	f.Add(frame(ipOpts{proto: ProtoTCP}, tcpSeg(1, 2, 3, 4, TCPFlagACK|TCPFlagPSH|TCPFlagCWR|TCPFlagFIN, tsOpt, seq(3000))), uint8(GSOTCPv4), uint16(1000), true)
	f.Add(frame(ipOpts{proto: ProtoTCP, options: []byte{1, 1, 1, 0}, pad: 3}, tcpSeg(1, 2, 0xffffff00, 4, TCPFlagACK, nil, seq(500))), uint8(GSOTCPv4), uint16(48), false)
	f.Add(frame(ipOpts{proto: ProtoTCP}, tcpSeg(1, 2, 3, 4, TCPFlagACK, nil, nil)), uint8(GSOTCPv4), uint16(1448), false)
	f.Add(frame(ipOpts{proto: ProtoUDP}, udpSeg(1, 2, seq(3000))), uint8(GSOUDP), uint16(1000), false)
	f.Add(frame(ipOpts{proto: ProtoTCP}, tcpSeg(1, 2, 3, 4, TCPFlagACK, nil, seq(100))), uint8(GSOTCPv4|GSOECN), uint16(60), false)
	f.Fuzz(func(t *testing.T, fr []byte, gsoType uint8, mss uint16, fix bool) {
		if fix {
			fixIPv4Checksum(fr)
		}
		h := VnetHdr{Flags: VnetFlagNeedsCsum, GSOType: gsoType, GSOSize: mss}
		var orig Packet
		perr := Parse(fr, &orig)
		buf := make([]byte, 200+int(mss))
		next := 0
		seqNo := orig.Seq
		err := Segment(fr, &h, buf, func(seg []byte) error {
			var p Packet
			if err := Parse(seg, &p); err != nil {
				t.Fatalf("segment: %v", err)
			}
			if err := VerifyTransport(seg, &p); err != nil {
				t.Fatalf("segment: %v", err)
			}
			pl := p.TransportPayload(seg)
			if len(pl) > int(mss) || p.End != len(seg) {
				t.Fatalf("segment of %d payload bytes for mss %d, %d after", len(pl), mss, len(seg)-p.End)
			}
			want := fr[orig.Payload+next : orig.Payload+next+len(pl)]
			if string(pl) != string(want) || p.Seq != seqNo {
				t.Fatal("segment payload or sequence number out of step")
			}
			next += len(pl)
			seqNo += uint32(len(pl))
			return nil
		})
		if err != nil {
			return
		}
		if perr != nil {
			t.Fatalf("Segment accepted a frame Parse refuses: %v", perr)
		}
		if next != orig.End-orig.Payload {
			t.Fatalf("segments carried %d of %d payload bytes", next, orig.End-orig.Payload)
		}
	})
}
