package packet

import (
	"net/netip"
)

// Frame construction for the tests, written independently of the package's
// own builders and checksums so that each checks the other.

var (
	macA = MAC{0x02, 0, 0, 0, 0, 0x0a}
	macB = MAC{0x02, 0, 0, 0, 0, 0x0b}
	ipA  = netip.MustParseAddr("10.0.1.5")
	ipB  = netip.MustParseAddr("10.0.2.9")
)

// refSum is RFC 1071's one's complement sum, the slow and obvious way.
func refSum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return s
}

func refChecksum(parts ...[]byte) uint16 {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	return ^uint16(refSum(all))
}

func pseudo(src, dst netip.Addr, proto byte, n int) []byte {
	s, d := src.As4(), dst.As4()
	return []byte{s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3], 0, proto, byte(n >> 8), byte(n)}
}

// ipOpts describes an IPv4 packet for frame.
type ipOpts struct {
	src, dst   netip.Addr
	proto      byte
	ttl        byte
	id         uint16
	frag       uint16 // flags and offset as on the wire
	options    []byte // IP options, a multiple of 4 bytes
	pad        int    // Ethernet padding after the datagram
	badSum     bool
	noL4Csum   bool
	totalDelta int // added to the total length field
}

// frame returns an Ethernet frame from macA to macB holding an IPv4
// datagram with the transport segment l4 (its checksum filled in for TCP,
// UDP and ICMP unless noL4Csum).
func frame(o ipOpts, l4 []byte) []byte {
	if !o.src.IsValid() {
		o.src = ipA
	}
	if !o.dst.IsValid() {
		o.dst = ipB
	}
	if o.ttl == 0 {
		o.ttl = 64
	}
	l4 = append([]byte(nil), l4...)
	if !o.noL4Csum {
		switch o.proto {
		case ProtoTCP:
			be.PutUint16(l4[16:], 0)
			be.PutUint16(l4[16:], refChecksum(pseudo(o.src, o.dst, o.proto, len(l4)), l4))
		case ProtoUDP:
			be.PutUint16(l4[6:], 0)
			be.PutUint16(l4[6:], refChecksum(pseudo(o.src, o.dst, o.proto, len(l4)), l4))
		case ProtoICMP:
			be.PutUint16(l4[2:], 0)
			be.PutUint16(l4[2:], refChecksum(l4))
		}
	}
	ihl := 20 + len(o.options)
	ip := make([]byte, ihl)
	ip[0] = 0x40 | byte(ihl/4)
	be.PutUint16(ip[2:], uint16(ihl+len(l4)+o.totalDelta))
	be.PutUint16(ip[4:], o.id)
	be.PutUint16(ip[6:], o.frag)
	ip[8], ip[9] = o.ttl, o.proto
	s, d := o.src.As4(), o.dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	copy(ip[20:], o.options)
	be.PutUint16(ip[10:], refChecksum(ip))
	if o.badSum {
		ip[10] ^= 0x40
	}
	f := append(eth(macB, macA, EtherTypeIPv4), ip...)
	f = append(f, l4...)
	return append(f, make([]byte, o.pad)...)
}

func eth(dst, src MAC, et uint16) []byte {
	return append(append(append([]byte(nil), dst[:]...), src[:]...), byte(et>>8), byte(et))
}

// tcpSeg returns a TCP header (with options, a multiple of 4 bytes)
// followed by payload.
func tcpSeg(sport, dport uint16, seq, ack uint32, flags byte, options, payload []byte) []byte {
	h := make([]byte, 20+len(options))
	be.PutUint16(h[0:], sport)
	be.PutUint16(h[2:], dport)
	be.PutUint32(h[4:], seq)
	be.PutUint32(h[8:], ack)
	h[12] = byte(len(h)/4) << 4
	h[13] = flags
	be.PutUint16(h[14:], 64240)
	copy(h[20:], options)
	return append(h, payload...)
}

func udpSeg(sport, dport uint16, payload []byte) []byte {
	h := make([]byte, 8)
	be.PutUint16(h[0:], sport)
	be.PutUint16(h[2:], dport)
	be.PutUint16(h[4:], uint16(8+len(payload)))
	return append(h, payload...)
}

func icmpSeg(typ, code byte, id, seq uint16, payload []byte) []byte {
	h := []byte{typ, code, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq)}
	return append(h, payload...)
}

func arpPkt(op uint16, smac MAC, sip netip.Addr, tmac MAC, tip netip.Addr) []byte {
	s, t := sip.As4(), tip.As4()
	b := []byte{0, 1, 8, 0, 6, 4, byte(op >> 8), byte(op)}
	b = append(b, smac[:]...)
	b = append(b, s[:]...)
	b = append(b, tmac[:]...)
	return append(b, t[:]...)
}

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// set returns a copy of b with b[i] = v.
func set(b []byte, i int, v byte) []byte {
	b = append([]byte(nil), b...)
	b[i] = v
	return b
}
