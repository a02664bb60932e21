package dhcp

import (
	"encoding/binary"
	"net/netip"
)

// Layout of a BOOTP/DHCP message (RFC 2131 §2, figure 1).
const (
	offOp      = 0
	offHType   = 1
	offHLen    = 2
	offXID     = 4
	offFlags   = 10
	offCIAddr  = 12
	offYIAddr  = 16
	offSIAddr  = 20
	offGIAddr  = 24
	offCHAddr  = 28 // 16 bytes
	offSName   = 44 // 64 bytes
	offFile    = 108
	offMagic   = 236
	offOptions = 240

	lenSName = 64
	lenFile  = 128

	// minMessage is the smallest BOOTP message (RFC 1542 §3.4: a 64-byte
	// vendor field); replies are padded to it.
	minMessage = 300
)

var magic = [4]byte{99, 130, 83, 99}

const (
	opRequest = 1
	opReply   = 2

	htypeEthernet = 1

	flagBroadcast = 0x8000
)

// Option codes used here (RFC 2132, RFC 3442).
const (
	optPad             = 0
	optSubnetMask      = 1
	optRouter          = 3
	optDNS             = 6
	optHostname        = 12
	optDomain          = 15
	optMTU             = 26
	optBroadcast       = 28
	optRequestedIP     = 50
	optLeaseTime       = 51
	optOverload        = 52
	optMessageType     = 53
	optServerID        = 54
	optParamRequest    = 55
	optMessage         = 56
	optMaxMessageSize  = 57
	optRenewalTime     = 58
	optRebindingTime   = 59
	optClasslessRoutes = 121
	optEnd             = 255
)

// MessageType is the value of option 53.
type MessageType uint8

// DHCP message types (RFC 2132 §9.6).
const (
	Discover MessageType = 1
	Offer    MessageType = 2
	Request  MessageType = 3
	Decline  MessageType = 4
	Ack      MessageType = 5
	Nak      MessageType = 6
	Release  MessageType = 7
	Inform   MessageType = 8
)

var typeNames = [...]string{"", "DHCPDISCOVER", "DHCPOFFER", "DHCPREQUEST", "DHCPDECLINE", "DHCPACK", "DHCPNAK", "DHCPRELEASE", "DHCPINFORM"}

// String returns the RFC's name of t, such as DHCPDISCOVER.
func (t MessageType) String() string {
	if t >= Discover && int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "DHCP(unknown)"
}

// message is what Reply and AppendFrame need of a DHCP message. Slices
// point into the message.
type message struct {
	op        byte
	flags     uint16
	ciaddr    netip.Addr
	yiaddr    netip.Addr
	giaddr    netip.Addr
	chaddr    [6]byte
	typ       MessageType
	requested netip.Addr // option 50
	serverID  netip.Addr // option 54
	maxSize   uint16     // option 57, 0 if absent
	params    []byte     // option 55
}

// parseMessage reads the fixed header and the options of b, a BOOTP
// message, into m. Each option is taken from its first occurrence; the
// options field is read first, then file and sname if option 52 says they
// hold options (RFC 2131 §4.1). A missing END is tolerated, an option
// running past its field is not.
func parseMessage(b []byte, m *message) error {
	*m = message{}
	if len(b) < offOptions {
		return errShort
	}
	m.op = b[offOp]
	if b[offHType] != htypeEthernet || b[offHLen] != 6 {
		return errHType
	}
	if [4]byte(b[offMagic:offOptions]) != magic {
		return errBOOTP
	}
	m.flags = binary.BigEndian.Uint16(b[offFlags:])
	m.ciaddr = netip.AddrFrom4([4]byte(b[offCIAddr:]))
	m.yiaddr = netip.AddrFrom4([4]byte(b[offYIAddr:]))
	m.giaddr = netip.AddrFrom4([4]byte(b[offGIAddr:]))
	copy(m.chaddr[:], b[offCHAddr:])

	var overload byte
	if err := m.scan(b[offOptions:], &overload); err != nil {
		return err
	}
	if overload&1 != 0 {
		if err := m.scan(b[offFile:offFile+lenFile], nil); err != nil {
			return err
		}
	}
	if overload&2 != 0 {
		if err := m.scan(b[offSName:offSName+lenSName], nil); err != nil {
			return err
		}
	}
	if m.typ == 0 {
		return errBOOTP
	}
	return nil
}

// scan reads the options in area into m, and option 52 into overload
// unless it is nil (file and sname cannot overload again).
func (m *message) scan(area []byte, overload *byte) error {
	for i := 0; i < len(area); {
		code := area[i]
		if code == optPad {
			i++
			continue
		}
		if code == optEnd {
			return nil
		}
		if i+2 > len(area) || i+2+int(area[i+1]) > len(area) {
			return errOptionLen
		}
		v := area[i+2 : i+2+int(area[i+1])]
		i += 2 + len(v)
		switch code {
		case optMessageType:
			if len(v) != 1 {
				return errOptionSize
			}
			if m.typ == 0 {
				m.typ = MessageType(v[0])
			}
		case optRequestedIP:
			if len(v) != 4 {
				return errOptionSize
			}
			if !m.requested.IsValid() {
				m.requested = netip.AddrFrom4([4]byte(v))
			}
		case optServerID:
			if len(v) != 4 {
				return errOptionSize
			}
			if !m.serverID.IsValid() {
				m.serverID = netip.AddrFrom4([4]byte(v))
			}
		case optMaxMessageSize:
			if len(v) != 2 {
				return errOptionSize
			}
			if m.maxSize == 0 {
				m.maxSize = binary.BigEndian.Uint16(v)
			}
		case optParamRequest:
			if m.params == nil {
				m.params = v
			}
		case optOverload:
			if overload != nil {
				if len(v) != 1 {
					return errOptionSize
				}
				*overload = v[0]
			}
		}
	}
	return nil
}
