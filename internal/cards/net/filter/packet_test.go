package filter

import (
	"net/netip"
	"testing"
)

// quoted builds the body of an ICMP error: an IPv4 header (ihl words)
// from src to dst with protocol proto and fragment field frag, followed by
// l4.
func quoted(ihl int, proto byte, frag uint16, src, dst netip.Addr, l4 ...byte) []byte {
	b := make([]byte, ihl*4, ihl*4+len(l4))
	b[0] = 0x40 | byte(ihl)
	b[6], b[7] = byte(frag>>8), byte(frag)
	b[8] = 64
	b[9] = proto
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	return append(b, l4...)
}

func TestParseEmbedded(t *testing.T) {
	ports := []byte{0x9c, 0x40, 0x00, 0x35, 0, 8, 0, 0} // 40000 → 53
	cases := []struct {
		name string
		b    []byte
		ok   bool
		want Embedded
	}{
		{"udp", quoted(5, 17, 0, guest, outside, ports...), true,
			Embedded{Proto: ProtoUDP, Src: guest, Dst: outside, SrcPort: 40000, DstPort: 53}},
		{"tcp with options in the IP header", quoted(6, 6, 0x4000, guest, outside, ports...), true,
			Embedded{Proto: ProtoTCP, Src: guest, Dst: outside, SrcPort: 40000, DstPort: 53}},
		{"icmp echo", quoted(5, 1, 0, guest, outside, 8, 0, 0xff, 0xff, 0x12, 0x34, 0, 1), true,
			Embedded{Proto: ProtoICMP, Src: guest, Dst: outside, ICMPType: 8, ICMPID: 0x1234}},
		{"gre: the header is enough", quoted(5, 47, 0, guest, outside), true,
			Embedded{Proto: 47, Src: guest, Dst: outside}},
		{"payload cut short", quoted(5, 17, 0, guest, outside, ports[:7]...), false, Embedded{}},
		{"a later fragment has no ports", quoted(5, 17, 0x0010, guest, outside, ports...), false, Embedded{}},
		{"header length below 20", append([]byte{0x44}, quoted(5, 17, 0, guest, outside, ports...)[1:]...), false, Embedded{}},
		{"header longer than the body", quoted(15, 47, 0, guest, outside)[:40], false, Embedded{}},
		{"ipv6", append([]byte{0x60}, make([]byte, 47)...), false, Embedded{}},
		{"short", make([]byte, 19), false, Embedded{}},
		{"empty", nil, false, Embedded{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, ok := ParseEmbedded(c.b)
			if ok != c.ok || (ok && e != c.want) {
				t.Fatalf("ParseEmbedded = %+v, %v; want %+v, %v", e, ok, c.want, c.ok)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	for r := Reason(0); r <= numReasons; r++ {
		if r.String() == "" {
			t.Errorf("reason %d has no name", r)
		}
	}
	if DropConntrackFull.String() != "conntrack_full" || Reason(200).String() != "unknown" {
		t.Error("reason names")
	}
	if ProtoAll.String() != "all" || ProtoTCP.String() != "tcp" || Proto(47).String() != "47" {
		t.Error("protocol names")
	}
	if Ingress.String() != "ingress" || Egress.String() != "egress" || tcpTimeWait.String() != "TIME_WAIT" {
		t.Error("direction and state names")
	}
}
