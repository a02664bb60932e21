package dhcp

import (
	"net/netip"

	"github.com/azote/azote/internal/cards/net/packet"
)

// AppendFrame appends to b the Ethernet frame that carries resp, a reply
// Reply made with cfg, from cfg.ServerMAC and cfg.ServerIP port 67 to the
// client's port 68, addressed as RFC 2131 §4.1 says for a server on the
// client's link (giaddr is not looked at: a relay would send from another
// hardware address, which Reply does not answer):
//
//   - a DHCPNAK is broadcast;
//   - a reply with ciaddr set (RENEWING, REBINDING, INFORM) is unicast
//     to ciaddr;
//   - a reply to a request with the BROADCAST flag is broadcast;
//   - anything else is unicast to yiaddr at the client's hardware
//     address.
//
// Broadcast means IP 255.255.255.255 and Ethernet ff:ff:ff:ff:ff:ff. It
// refuses anything that is not a reply (ErrMalformed), leaving b as it
// was, and an invalid cfg (ErrConfig).
func AppendFrame(b []byte, cfg *Config, resp []byte) ([]byte, error) {
	if err := cfg.Validate(); err != nil {
		return b, err
	}
	var m message
	if err := parseMessage(resp, &m); err != nil {
		return b, err
	}
	if m.op != opReply || len(resp) > packet.MaxUDPPayload {
		return b, errReplyType
	}
	f := packet.UDPFrame{
		SrcMAC: cfg.ServerMAC,
		Src:    netip.AddrPortFrom(cfg.ServerIP, ServerPort),
	}
	var dst netip.Addr
	switch {
	case m.typ == Nak:
	case !m.ciaddr.IsUnspecified():
		dst = m.ciaddr
	case m.flags&flagBroadcast != 0:
	default:
		dst = m.yiaddr
	}
	if dst.IsValid() && !dst.IsUnspecified() {
		f.DstMAC = cfg.ClientMAC
	} else {
		dst = netip.AddrFrom4([4]byte{255, 255, 255, 255})
		f.DstMAC = packet.BroadcastMAC
	}
	f.Dst = netip.AddrPortFrom(dst, ClientPort)
	out, err := packet.AppendUDP(b, &f, resp)
	if err != nil {
		return b, errReplyType
	}
	return out, nil
}
