package packet

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Checksum returns the one's complement sum (RFC 1071) of b, read as
// big-endian 16-bit words (an odd last byte padded with a zero), added to
// initial, folded to 16 bits and not complemented: the checksum field of a
// header is ^Checksum over the covered bytes with the field zeroed, and a
// header with a correct checksum sums to 0xffff. b must start at an even
// offset of the data it is a part of when initial carries the sum of the
// part before it.
//
// The sum is taken over little-endian 64-bit words with end-around carry
// and byte-swapped at the end; byte order does not change a one's
// complement sum except by that swap (RFC 1071 §2(B)).
func Checksum(b []byte, initial uint16) uint16 {
	le := binary.LittleEndian
	s := uint64(bits.ReverseBytes16(initial))
	var carries, c uint64
	for len(b) >= 32 {
		s, c = bits.Add64(s, le.Uint64(b[0:8]), 0)
		s, c = bits.Add64(s, le.Uint64(b[8:16]), c)
		s, c = bits.Add64(s, le.Uint64(b[16:24]), c)
		s, c = bits.Add64(s, le.Uint64(b[24:32]), c)
		carries += c
		b = b[32:]
	}
	for len(b) >= 8 {
		s, c = bits.Add64(s, le.Uint64(b[0:8]), 0)
		carries += c
		b = b[8:]
	}
	if len(b) >= 4 {
		s, c = bits.Add64(s, uint64(le.Uint32(b[0:4])), 0)
		carries += c
		b = b[4:]
	}
	if len(b) >= 2 {
		s, c = bits.Add64(s, uint64(le.Uint16(b[0:2])), 0)
		carries += c
		b = b[2:]
	}
	if len(b) == 1 {
		s, c = bits.Add64(s, uint64(b[0]), 0)
		carries += c
	}
	s, c = bits.Add64(s, carries, 0)
	s += c // cannot overflow: a carry out leaves s small
	return bits.ReverseBytes16(fold(s))
}

// fold reduces a one's complement sum to 16 bits with end-around carry.
func fold(s uint64) uint16 {
	s = s>>32 + s&0xffffffff
	s = s>>32 + s&0xffffffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return uint16(s)
}

// PseudoHeaderChecksum returns the folded sum of the IPv4 pseudo-header
// that TCP and UDP checksums cover (RFC 793 §3.1, RFC 768): source and
// destination address, protocol and the transport length (header and
// payload). Addresses that are not IPv4 count as zero.
func PseudoHeaderChecksum(proto uint8, src, dst netip.Addr, length uint16) uint16 {
	s := as4(src)
	d := as4(dst)
	sum := uint64(be.Uint16(s[0:2])) + uint64(be.Uint16(s[2:4])) +
		uint64(be.Uint16(d[0:2])) + uint64(be.Uint16(d[2:4])) +
		uint64(proto) + uint64(length)
	return fold(sum)
}

// UpdateChecksum returns the checksum field that replaces csum when one
// 16-bit word the checksum covers changes from old to new, by RFC 1624's
// equation 3: HC' = ~(~HC + ~m + m'). Unlike equation 2 it never turns a
// correct checksum into the other zero.
func UpdateChecksum(csum, old, new uint16) uint16 {
	return ^fold(uint64(^csum) + uint64(^old) + uint64(new))
}

// IPv4Checksum returns the header checksum that belongs in hdr[10:12], an
// IPv4 header of len(hdr) bytes, whatever those bytes hold now.
func IPv4Checksum(hdr []byte) uint16 {
	s := Checksum(hdr[:10], 0)
	return ^Checksum(hdr[12:], s)
}

// checksumField returns the offset of the checksum in a transport header,
// and whether the pseudo-header is covered.
func checksumField(proto uint8) (off int, pseudo bool) {
	switch proto {
	case ProtoTCP:
		return 16, true
	case ProtoUDP:
		return 6, true
	default: // ProtoICMP
		return 2, false
	}
}

// SetTransportChecksum computes the TCP, UDP or ICMP checksum of the
// packet p was parsed from and stores it in frame. The packet must have a
// transport header and not be a fragment (the checksum covers the whole
// datagram). A UDP checksum that computes to zero is sent as 0xffff
// (RFC 768).
func SetTransportChecksum(frame []byte, p *Packet) error {
	if !p.HasTransport || p.Fragment {
		return errNoTransport
	}
	off, pseudo := checksumField(p.Proto)
	seg := frame[p.L4:p.PayloadEnd]
	seg[off], seg[off+1] = 0, 0
	var init uint16
	if pseudo {
		init = PseudoHeaderChecksum(p.Proto, p.SrcIP, p.DstIP, uint16(len(seg)))
	}
	c := ^Checksum(seg, init)
	if c == 0 && p.Proto == ProtoUDP {
		c = 0xffff
	}
	be.PutUint16(seg[off:], c)
	return nil
}

// VerifyTransport verifies the TCP, UDP or ICMP checksum of the packet p
// was parsed from. A UDP checksum of zero means none was sent and passes.
// Only unfragmented packets with a parsed transport header can be checked.
func VerifyTransport(frame []byte, p *Packet) error {
	if !p.HasTransport || p.Fragment {
		return errNoTransport
	}
	off, pseudo := checksumField(p.Proto)
	seg := frame[p.L4:p.PayloadEnd]
	if p.Proto == ProtoUDP && be.Uint16(seg[off:]) == 0 {
		return nil
	}
	var init uint16
	if pseudo {
		init = PseudoHeaderChecksum(p.Proto, p.SrcIP, p.DstIP, uint16(len(seg)))
	}
	if Checksum(seg, init) != 0xffff {
		return errL4Checksum
	}
	return nil
}

// DecTTL decrements the TTL of the IPv4 packet p was parsed from, in
// frame, and updates the header checksum incrementally; p.TTL follows. A
// TTL of 0 or 1 is left alone and reported as ErrTTLExpired: the packet
// must not be forwarded.
func DecTTL(frame []byte, p *Packet) error {
	if p.Kind != KindIPv4 {
		return errNotIPv4
	}
	if p.TTL <= 1 {
		return ErrTTLExpired
	}
	h := frame[p.L3 : p.L3+IPv4MinHeaderLen]
	old := be.Uint16(h[8:10]) // TTL and protocol
	h[8]--
	be.PutUint16(h[10:12], UpdateChecksum(be.Uint16(h[10:12]), old, be.Uint16(h[8:10])))
	p.TTL--
	return nil
}

// SetEthernet rewrites the destination and source addresses of frame, as
// the card does when it routes a packet from one subnet's gateway to a
// guest. The frame must hold an Ethernet header.
func SetEthernet(frame []byte, dst, src MAC) {
	copy(frame[0:6], dst[:])
	copy(frame[6:12], src[:])
}

// as4 returns the four bytes of an IPv4 (or IPv4-mapped IPv6) address, and
// zeros for anything else.
func as4(a netip.Addr) [4]byte {
	if a.Is4() || a.Is4In6() {
		return a.As4()
	}
	return [4]byte{}
}
