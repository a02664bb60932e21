package filter

import (
	"encoding/binary"
	"net/netip"
)

// Dir is the direction of a packet as the interface sees it.
type Dir uint8

const (
	// Ingress is a packet on its way to the guest.
	Ingress Dir = iota
	// Egress is a packet the guest sent.
	Egress
)

func (d Dir) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// TCPFlags are the flags byte of a TCP header (byte 13).
type TCPFlags uint8

// TCP flags the connection tracker looks at.
const (
	FlagFIN TCPFlags = 0x01
	FlagSYN TCPFlags = 0x02
	FlagRST TCPFlags = 0x04
	FlagPSH TCPFlags = 0x08
	FlagACK TCPFlags = 0x10
)

// ICMP types the tracker knows (RFC 792).
const (
	icmpEchoReply      = 0
	icmpUnreachable    = 3
	icmpSourceQuench   = 4
	icmpRedirect       = 5
	icmpEcho           = 8
	icmpTimeExceeded   = 11
	icmpParamProblem   = 12
	icmpTimestamp      = 13
	icmpTimestampReply = 14
)

// Packet holds what the filter needs to know about one IPv4 packet, as the
// card parsed it from a frame. Fields that do not apply to Proto are
// ignored. The filter never keeps a reference to it.
type Packet struct {
	Proto    Proto
	Src, Dst netip.Addr
	// SrcPort and DstPort are the TCP or UDP ports.
	SrcPort, DstPort uint16
	// ICMPType and ICMPCode are the ICMP header's; ICMPID is the
	// identifier of an echo or timestamp message.
	ICMPType, ICMPCode uint8
	ICMPID             uint16
	// TCPFlags is the TCP header's flags byte.
	TCPFlags TCPFlags
	// Len is the size the rate limiter charges, in bytes: the frame as it
	// crosses the interface.
	Len int
	// Embedded is the header an ICMP error quotes (ParseEmbedded), or the
	// zero value when the card did not parse one.
	Embedded Embedded
}

// Embedded is the start of the packet an ICMP error message quotes: the
// packet that caused the error, as its sender sent it.
type Embedded struct {
	Proto    Proto
	Src, Dst netip.Addr
	// SrcPort and DstPort are the quoted TCP or UDP ports.
	SrcPort, DstPort uint16
	// ICMPType and ICMPID are those of a quoted ICMP query.
	ICMPType uint8
	ICMPID   uint16
}

// ParseEmbedded parses b, the body of an ICMP error message (what follows
// its 8-byte ICMP header): the IPv4 header of the offending packet and at
// least the first 8 bytes of its payload, as RFC 792 requires. It reports
// false if b is not that: too short, not IPv4, a header length below 20
// bytes, or a TCP, UDP or ICMP packet whose ports or type cannot be read
// (too short, or a fragment other than the first).
func ParseEmbedded(b []byte) (Embedded, bool) {
	var e Embedded
	if len(b) < 20 || b[0]>>4 != 4 {
		return e, false
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || len(b) < ihl {
		return e, false
	}
	e.Proto = Proto(b[9])
	e.Src = netip.AddrFrom4([4]byte(b[12:16]))
	e.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	switch e.Proto {
	case ProtoTCP, ProtoUDP, ProtoICMP:
	default:
		return e, true
	}
	if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 || len(b) < ihl+8 {
		return e, false
	}
	l4 := b[ihl:]
	if e.Proto == ProtoICMP {
		e.ICMPType = l4[0]
		e.ICMPID = binary.BigEndian.Uint16(l4[4:6])
	} else {
		e.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		e.DstPort = binary.BigEndian.Uint16(l4[2:4])
	}
	return e, true
}

// isICMPError reports whether an ICMP type quotes the packet that caused
// it.
func isICMPError(t uint8) bool {
	switch t {
	case icmpUnreachable, icmpSourceQuench, icmpRedirect, icmpTimeExceeded, icmpParamProblem:
		return true
	}
	return false
}
