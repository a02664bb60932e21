package packet

import (
	"strconv"
	"testing"
)

func benchFrames() map[string][]byte {
	return map[string][]byte{
		"tcp":  frame(ipOpts{proto: ProtoTCP}, tcpSeg(40000, 443, 1, 2, TCPFlagACK, []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}, seq(1448))),
		"udp":  frame(ipOpts{proto: ProtoUDP}, udpSeg(5000, 53, seq(64))),
		"icmp": frame(ipOpts{proto: ProtoICMP}, icmpSeg(ICMPEchoRequest, 0, 1, 2, seq(56))),
		"arp":  append(eth(BroadcastMAC, macA, EtherTypeARP), arpPkt(ARPRequest, macA, ipA, MAC{}, ipB)...),
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	var p Packet
	bad := frame(ipOpts{proto: ProtoUDP, badSum: true}, udpSeg(1, 2, nil))
	for name, f := range benchFrames() {
		if a := testing.AllocsPerRun(100, func() {
			if err := Parse(f, &p); err != nil {
				t.Fatal(err)
			}
			_ = Parse(bad, &p)
			_ = DecTTL(f, &p)
		}); a != 0 {
			t.Errorf("%s: %v allocations", name, a)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	for name, f := range benchFrames() {
		b.Run(name, func(b *testing.B) {
			var p Packet
			b.ReportAllocs()
			for b.Loop() {
				if err := Parse(f, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkChecksum(b *testing.B) {
	for _, n := range []int{20, 64, 1500, 65535} {
		buf := seq(n)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				_ = Checksum(buf, 0)
			}
		})
	}
}

func BenchmarkSegment(b *testing.B) {
	fr := frame(ipOpts{proto: ProtoTCP}, tcpSeg(1, 2, 3, 4, TCPFlagACK, nil, seq(65535-40)))
	h := VnetHdr{GSOType: GSOTCPv4, GSOSize: 1448}
	buf := make([]byte, 2048)
	emit := func([]byte) error { return nil }
	b.ReportAllocs()
	b.SetBytes(int64(len(fr)))
	for b.Loop() {
		if err := Segment(fr, &h, buf, emit); err != nil {
			b.Fatal(err)
		}
	}
}
