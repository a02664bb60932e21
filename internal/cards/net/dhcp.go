package net

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/azote/azote/internal/cards/net/dhcp"
	"github.com/azote/azote/internal/cards/net/packet"
)

// dhcpServer answers the guest from its view: its address, the subnet's
// router, the VPC's range through it, the MTU.
type dhcpServer struct {
	cfg atomic.Pointer[dhcp.Config]
}

// dhcpLease is long: the address is the interface's for its life, and a
// guest that stops renewing keeps it.
const dhcpLease = 24 * time.Hour

func (s *dhcpServer) set(v *View, mtu uint16, dns []netip.Addr) {
	c := &dhcp.Config{
		ServerIP: v.Gateway, ServerMAC: v.GatewayMAC, Router: v.Gateway,
		ClientMAC: v.Self.MAC, ClientIP: v.Self.IP, Prefix: v.Self.Subnet.Bits(),
		DNS: dns, MTU: mtu, Lease: dhcpLease,
	}
	if v.VPC.Bits() < v.Self.Subnet.Bits() {
		// The VPC's other subnets are through the router too; with the
		// default route it adds nothing, but says what is inside.
		c.Routes = []dhcp.Route{{Prefix: v.VPC, Via: v.Gateway}}
	}
	s.cfg.Store(c)
}

// Reply implements DHCP.
func (s *dhcpServer) Reply(p *packet.Packet, frame []byte, out []byte) []byte {
	c := s.cfg.Load()
	if c == nil {
		return nil
	}
	var buf [1500]byte
	resp, err := dhcp.Reply(c, p.TransportPayload(frame), buf[:0])
	if err != nil || resp == nil {
		return nil
	}
	f, err := dhcp.AppendFrame(out, c, resp)
	if err != nil {
		return nil
	}
	return f
}
