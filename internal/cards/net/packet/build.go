package packet

import "net/netip"

// AppendARP appends an Ethernet frame carrying the ARP packet a (IPv4 over
// Ethernet) from ethSrc to ethDst. Addresses in a that are not IPv4 are
// written as zeros. The frame is 42 bytes, not padded: virtio and tap
// carry short frames, and a physical NIC pads what it sends.
func AppendARP(b []byte, ethDst, ethSrc MAC, a *ARP) []byte {
	b = appendEthernet(b, ethDst, ethSrc, EtherTypeARP)
	sip, tip := as4(a.SenderIP), as4(a.TargetIP)
	b = append(b, 0, 1, 0x08, 0x00, 6, 4, byte(a.Op>>8), byte(a.Op))
	b = append(b, a.SenderMAC[:]...)
	b = append(b, sip[:]...)
	b = append(b, a.TargetMAC[:]...)
	return append(b, tip[:]...)
}

// AppendARPReply appends the reply to the ARP request in req (a frame
// Parse made a KindARP Packet of) saying that req's target address is at
// mac: from mac to the requester's hardware address. Whether to answer is
// the caller's decision.
func AppendARPReply(b []byte, req *Packet, mac MAC) []byte {
	return AppendARP(b, req.ARP.SenderMAC, mac, &ARP{
		Op:        ARPReply,
		SenderMAC: mac,
		SenderIP:  req.ARP.TargetIP,
		TargetMAC: req.ARP.SenderMAC,
		TargetIP:  req.ARP.SenderIP,
	})
}

// UDPFrame describes the Ethernet, IPv4 and UDP headers AppendUDP writes.
type UDPFrame struct {
	DstMAC, SrcMAC MAC
	Src, Dst       netip.AddrPort // IPv4 addresses
	TOS            uint8
	TTL            uint8 // 0 means 64
	ID             uint16
	DontFragment   bool
}

// MaxUDPPayload is the largest payload one unfragmented IPv4 UDP datagram
// (without IP options) can carry.
const MaxUDPPayload = 0xffff - IPv4MinHeaderLen - UDPHeaderLen

// AppendUDP appends an Ethernet frame holding an IPv4 datagram without
// options that holds a UDP datagram with payload, both checksums computed.
// It refuses addresses that are not IPv4 and payloads over MaxUDPPayload
// (ErrInvalidArgument), leaving b as it was.
func AppendUDP(b []byte, f *UDPFrame, payload []byte) ([]byte, error) {
	if !f.Src.Addr().Is4() || !f.Dst.Addr().Is4() || len(payload) > MaxUDPPayload {
		return b, ErrInvalidArgument
	}
	b = appendEthernet(b, f.DstMAC, f.SrcMAC, EtherTypeIPv4)
	ttl := f.TTL
	if ttl == 0 {
		ttl = 64
	}
	var frag byte
	if f.DontFragment {
		frag = 0x40
	}
	total := IPv4MinHeaderLen + UDPHeaderLen + len(payload)
	src, dst := f.Src.Addr().As4(), f.Dst.Addr().As4()
	ip := len(b)
	b = append(b, 0x45, f.TOS, byte(total>>8), byte(total), byte(f.ID>>8), byte(f.ID), frag, 0, ttl, ProtoUDP, 0, 0)
	b = append(b, src[:]...)
	b = append(b, dst[:]...)
	be.PutUint16(b[ip+10:], IPv4Checksum(b[ip:]))

	udp := len(b)
	ulen := UDPHeaderLen + len(payload)
	sp, dp := f.Src.Port(), f.Dst.Port()
	b = append(b, byte(sp>>8), byte(sp), byte(dp>>8), byte(dp), byte(ulen>>8), byte(ulen), 0, 0)
	b = append(b, payload...)
	sum := PseudoHeaderChecksum(ProtoUDP, f.Src.Addr(), f.Dst.Addr(), uint16(ulen))
	c := ^Checksum(b[udp:], sum)
	if c == 0 {
		c = 0xffff
	}
	be.PutUint16(b[udp+6:], c)
	return b, nil
}

func appendEthernet(b []byte, dst, src MAC, etherType uint16) []byte {
	b = append(b, dst[:]...)
	b = append(b, src[:]...)
	return append(b, byte(etherType>>8), byte(etherType))
}
