package packet

import (
	"encoding/binary"
	"net/netip"
)

// Header lengths, in bytes.
const (
	EthernetHeaderLen = 14
	ARPLen            = 28 // ARP for IPv4 over Ethernet
	IPv4MinHeaderLen  = 20
	TCPMinHeaderLen   = 20
	UDPHeaderLen      = 8
	ICMPHeaderLen     = 8 // type, code, checksum and the 4-byte rest of header
)

// EtherTypes the card cares about.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeVLAN = 0x8100 // IEEE 802.1Q tag
	EtherTypeQinQ = 0x88A8 // IEEE 802.1ad service tag
	EtherTypeIPv6 = 0x86DD
)

// IP protocol numbers.
const (
	ProtoICMP = 1
	ProtoTCP  = 6
	ProtoUDP  = 17
)

// TCP flags, as in the 13th byte of the TCP header.
const (
	TCPFlagFIN = 0x01
	TCPFlagSYN = 0x02
	TCPFlagRST = 0x04
	TCPFlagPSH = 0x08
	TCPFlagACK = 0x10
	TCPFlagURG = 0x20
	TCPFlagECE = 0x40
	TCPFlagCWR = 0x80
)

// ARP operations (RFC 826).
const (
	ARPRequest = 1
	ARPReply   = 2
)

// ICMP types whose rest-of-header is an identifier and a sequence number.
const (
	ICMPEchoReply   = 0
	ICMPEchoRequest = 8
)

// MAC is an Ethernet address.
type MAC [6]byte

// BroadcastMAC is ff:ff:ff:ff:ff:ff.
var BroadcastMAC = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// IsBroadcast reports whether m is ff:ff:ff:ff:ff:ff.
func (m MAC) IsBroadcast() bool { return m == BroadcastMAC }

// IsMulticast reports whether m is a group address (broadcast included).
func (m MAC) IsMulticast() bool { return m[0]&1 != 0 }

// String formats m as six colon-separated lower-case hex bytes.
func (m MAC) String() string {
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 17)
	for i, c := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hex[c>>4], hex[c&0xf])
	}
	return string(b)
}

// Kind is what a frame carries, as far as Parse looked.
type Kind uint8

// Frame kinds. Parse looks into ARP and IPv4 only; the card drops and
// counts the others.
const (
	KindOther Kind = iota // an EtherType not listed here, or an 802.3 length
	KindARP
	KindIPv4
	KindIPv6
	KindVLAN // 802.1Q or 802.1ad tagged
)

var kindNames = [...]string{KindOther: "other", KindARP: "arp", KindIPv4: "ipv4", KindIPv6: "ipv6", KindVLAN: "vlan"}

// String returns a short lower-case name, usable as a metrics label.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "invalid"
}

// ARP is an ARP packet for IPv4 over Ethernet.
type ARP struct {
	Op        uint16
	SenderMAC MAC
	SenderIP  netip.Addr
	TargetMAC MAC
	TargetIP  netip.Addr
}

// Packet is one parsed frame. Parse fills it; the fields a frame's kind
// does not have are zero. Offsets index the frame that was parsed and obey
// L3 <= L4 <= Payload <= PayloadEnd <= End <= len(frame).
type Packet struct {
	Kind      Kind
	Dst, Src  MAC
	EtherType uint16

	// ARP is set for KindARP.
	ARP ARP

	// IPv4 header fields, for KindIPv4.
	TOS           uint8
	ID            uint16
	TTL           uint8
	Proto         uint8
	SrcIP, DstIP  netip.Addr
	DontFragment  bool
	MoreFragments bool
	FragOffset    uint16 // in 8-byte units
	// Fragment is MoreFragments || FragOffset != 0. Only the first
	// fragment (FragOffset 0) carries the transport header.
	Fragment bool
	// HasTransport reports that a TCP, UDP or ICMP header was parsed into
	// the fields below: Proto is one of them and the datagram is not a
	// fragment other than the first.
	HasTransport bool

	// TCP and UDP.
	SrcPort, DstPort uint16
	// TCP.
	Seq, Ack uint32
	TCPFlags uint8
	Window   uint16
	// UDP: the length field, header included.
	UDPLen uint16
	// ICMP; ICMPID and ICMPSeq for echo request and reply only.
	ICMPType, ICMPCode uint8
	ICMPID, ICMPSeq    uint16

	// L3 is where the ARP or IPv4 header starts (EthernetHeaderLen).
	L3 int
	// L4 is where the transport header starts (KindIPv4 only; else End).
	L4 int
	// Payload is where the transport payload starts: after the TCP
	// header with its options, the UDP or the ICMP header. It is L4
	// without a parsed transport header.
	Payload int
	// PayloadEnd is where the transport payload ends: the end of the UDP
	// datagram by its length field, else End.
	PayloadEnd int
	// End is where the ARP packet or IPv4 datagram ends; bytes after it
	// are Ethernet padding. For the kinds Parse does not look into it is
	// the frame's length.
	End int
}

// TransportPayload returns frame[p.Payload:p.PayloadEnd], the TCP, UDP or
// ICMP payload of a frame p was parsed from.
func (p *Packet) TransportPayload(frame []byte) []byte {
	return frame[p.Payload:p.PayloadEnd]
}

var be = binary.BigEndian

// Parse parses frame into p, overwriting all of it. On error p holds what
// was parsed before the rule the frame broke (always Kind and the Ethernet
// header once the frame is long enough for one); the error wraps one of
// ErrTruncated, ErrBadIPHeader, ErrBadChecksum, ErrBadTransport or
// ErrUnsupported. Kinds other than ARP and IPv4 are not errors.
//
// Trailing bytes after an IPv4 datagram's total length or after an ARP
// packet are allowed (Ethernet pads short frames to 60 bytes). Transport
// checksums are not verified here: see VerifyTransport.
func Parse(frame []byte, p *Packet) error {
	*p = Packet{}
	if len(frame) < EthernetHeaderLen {
		p.End = len(frame)
		return errShortEthernet
	}
	copy(p.Dst[:], frame[0:6])
	copy(p.Src[:], frame[6:12])
	p.EtherType = be.Uint16(frame[12:14])
	p.L3 = EthernetHeaderLen
	p.End = len(frame)
	p.L4, p.Payload, p.PayloadEnd = p.End, p.End, p.End
	switch p.EtherType {
	case EtherTypeARP:
		p.Kind = KindARP
		return parseARP(frame, p)
	case EtherTypeIPv4:
		p.Kind = KindIPv4
		return parseIPv4(frame, p)
	case EtherTypeIPv6:
		p.Kind = KindIPv6
	case EtherTypeVLAN, EtherTypeQinQ:
		p.Kind = KindVLAN
	default:
		p.Kind = KindOther
	}
	return nil
}

func parseARP(frame []byte, p *Packet) error {
	b := frame[EthernetHeaderLen:]
	if len(b) < ARPLen {
		return errShortARP
	}
	// htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4.
	if be.Uint16(b[0:2]) != 1 || be.Uint16(b[2:4]) != EtherTypeIPv4 || b[4] != 6 || b[5] != 4 {
		return errARPType
	}
	a := &p.ARP
	a.Op = be.Uint16(b[6:8])
	copy(a.SenderMAC[:], b[8:14])
	a.SenderIP = netip.AddrFrom4([4]byte(b[14:18]))
	copy(a.TargetMAC[:], b[18:24])
	a.TargetIP = netip.AddrFrom4([4]byte(b[24:28]))
	p.End = EthernetHeaderLen + ARPLen
	p.L4, p.Payload, p.PayloadEnd = p.End, p.End, p.End
	return nil
}

func parseIPv4(frame []byte, p *Packet) error {
	b := frame[EthernetHeaderLen:]
	if len(b) < IPv4MinHeaderLen {
		return errShortIPv4
	}
	if b[0]>>4 != 4 {
		return errIPVersion
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < IPv4MinHeaderLen {
		return errIHL
	}
	if len(b) < ihl {
		return errShortIPv4
	}
	total := int(be.Uint16(b[2:4]))
	if total < ihl {
		return errTotalLen
	}
	if total > len(b) {
		return errIPBeyondFrame
	}
	if Checksum(b[:ihl], 0) != 0xffff {
		return errIPChecksum
	}
	p.TOS = b[1]
	p.ID = be.Uint16(b[4:6])
	frag := be.Uint16(b[6:8])
	p.DontFragment = frag&0x4000 != 0
	p.MoreFragments = frag&0x2000 != 0
	p.FragOffset = frag & 0x1fff
	p.Fragment = p.MoreFragments || p.FragOffset != 0
	p.TTL = b[8]
	p.Proto = b[9]
	p.SrcIP = netip.AddrFrom4([4]byte(b[12:16]))
	p.DstIP = netip.AddrFrom4([4]byte(b[16:20]))

	p.L4 = EthernetHeaderLen + ihl
	p.End = EthernetHeaderLen + total
	p.Payload, p.PayloadEnd = p.L4, p.End
	if p.FragOffset != 0 {
		// A TCP fragment at offset 8 would overwrite the flags of the
		// first fragment's header on reassembly (RFC 1858 §3.2).
		if p.Proto == ProtoTCP && p.FragOffset == 1 {
			return errTinyFragment
		}
		return nil
	}
	return parseTransport(frame[p.L4:p.End], p)
}

// parseTransport parses the TCP, UDP or ICMP header at the start of seg,
// the IPv4 payload (of the first fragment when p.Fragment).
func parseTransport(seg []byte, p *Packet) error {
	switch p.Proto {
	case ProtoTCP:
		if len(seg) < TCPMinHeaderLen {
			if p.Fragment {
				return errTinyFragment
			}
			return errShortTCP
		}
		off := int(seg[12]>>4) * 4
		if off < TCPMinHeaderLen {
			return errTCPOffset
		}
		if off > len(seg) {
			if p.Fragment {
				return errTinyFragment
			}
			return errTCPOffset
		}
		p.SrcPort = be.Uint16(seg[0:2])
		p.DstPort = be.Uint16(seg[2:4])
		p.Seq = be.Uint32(seg[4:8])
		p.Ack = be.Uint32(seg[8:12])
		p.TCPFlags = seg[13]
		p.Window = be.Uint16(seg[14:16])
		p.Payload = p.L4 + off
	case ProtoUDP:
		if len(seg) < UDPHeaderLen {
			if p.Fragment {
				return errTinyFragment
			}
			return errShortUDP
		}
		ulen := int(be.Uint16(seg[4:6]))
		// A first fragment holds only part of the datagram its length
		// field describes.
		if ulen < UDPHeaderLen || (!p.Fragment && ulen > len(seg)) {
			return errUDPLen
		}
		p.SrcPort = be.Uint16(seg[0:2])
		p.DstPort = be.Uint16(seg[2:4])
		p.UDPLen = uint16(ulen)
		p.Payload = p.L4 + UDPHeaderLen
		p.PayloadEnd = p.L4 + min(ulen, len(seg))
	case ProtoICMP:
		if len(seg) < ICMPHeaderLen {
			if p.Fragment {
				return errTinyFragment
			}
			return errShortICMP
		}
		p.ICMPType = seg[0]
		p.ICMPCode = seg[1]
		if p.ICMPType == ICMPEchoRequest || p.ICMPType == ICMPEchoReply {
			p.ICMPID = be.Uint16(seg[4:6])
			p.ICMPSeq = be.Uint16(seg[6:8])
		}
		p.Payload = p.L4 + ICMPHeaderLen
	default:
		return nil
	}
	p.HasTransport = true
	return nil
}
