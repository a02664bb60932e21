package imds

import (
	"encoding/binary"
	"net/netip"

	"github.com/azote/azote/internal/cards/net/packet"
)

// Addr is the metadata service's address, Port its port.
var Addr = netip.AddrFrom4([4]byte{169, 254, 169, 254})

// Port is the metadata service's TCP port.
const Port = 80

// seg is one TCP segment to send the guest.
type seg struct {
	seq, ack uint32
	flags    uint8
	window   uint16
	mss      uint16 // the MSS option, on a SYN only
	payload  []byte
}

// appendFrame appends the Ethernet frame carrying s from the service to
// the guest of c: IPv4 with TTL ttl (the hop limit) and Don't Fragment,
// both checksums computed.
func appendFrame(b []byte, c *endpoint, ttl uint8, s *seg) []byte {
	tcpLen := packet.TCPMinHeaderLen
	if s.mss != 0 {
		tcpLen += 4
	}
	total := packet.IPv4MinHeaderLen + tcpLen + len(s.payload)
	b = append(b, c.guestMAC[:]...)
	b = append(b, c.ourMAC[:]...)
	b = append(b, packet.EtherTypeIPv4>>8, packet.EtherTypeIPv4&0xff)
	ip := len(b)
	src, dst := Addr.As4(), c.guestIP.As4()
	b = append(b, 0x45, 0, byte(total>>8), byte(total), 0, 0, 0x40, 0, ttl, packet.ProtoTCP, 0, 0)
	b = append(b, src[:]...)
	b = append(b, dst[:]...)
	binary.BigEndian.PutUint16(b[ip+10:], packet.IPv4Checksum(b[ip:]))
	tcp := len(b)
	b = binary.BigEndian.AppendUint16(b, Port)
	b = binary.BigEndian.AppendUint16(b, c.guestPort)
	b = binary.BigEndian.AppendUint32(b, s.seq)
	b = binary.BigEndian.AppendUint32(b, s.ack)
	b = append(b, byte(tcpLen/4)<<4, s.flags)
	b = binary.BigEndian.AppendUint16(b, s.window)
	b = append(b, 0, 0, 0, 0) // checksum, urgent pointer
	if s.mss != 0 {
		b = append(b, 2, 4, byte(s.mss>>8), byte(s.mss))
	}
	b = append(b, s.payload...)
	sum := packet.PseudoHeaderChecksum(packet.ProtoTCP, Addr, c.guestIP, uint16(len(b)-tcp))
	binary.BigEndian.PutUint16(b[tcp+16:], ^packet.Checksum(b[tcp:], sum))
	return b
}

// mssOption returns the MSS option of a SYN's TCP options, or 0.
func mssOption(opts []byte) uint16 {
	for len(opts) > 0 {
		switch opts[0] {
		case 0: // end of options
			return 0
		case 1: // no-op
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || opts[1] < 2 || int(opts[1]) > len(opts) {
			return 0
		}
		if opts[0] == 2 && opts[1] == 4 {
			return binary.BigEndian.Uint16(opts[2:4])
		}
		opts = opts[opts[1]:]
	}
	return 0
}
