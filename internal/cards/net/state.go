package net

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/cards/net/packet"
)

// ParseMAC reads a colon-separated unicast MAC.
func ParseMAC(s string) (packet.MAC, error) {
	var m packet.MAC
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return m, fmt.Errorf("MAC %q: not a 6-byte address", s)
	}
	copy(m[:], hw)
	return m, nil
}

// viewOf checks what azoted sent and makes the switch's view of it.
func viewOf(st *cardproto.NetState) (*View, error) {
	self, err := peerOf(&st.Self, false)
	if err != nil {
		return nil, fmt.Errorf("self: %w", err)
	}
	v := &View{Self: self}
	if v.Gateway, err = netip.ParseAddr(st.Gateway); err != nil || !v.Gateway.Is4() || !self.Subnet.Contains(v.Gateway) {
		return nil, fmt.Errorf("gateway %q: not an address of the subnet %v", st.Gateway, self.Subnet)
	}
	if v.GatewayMAC, err = ParseMAC(st.GatewayMAC); err != nil {
		return nil, err
	}
	if v.VPC, err = netip.ParsePrefix(st.VPCCIDR); err != nil || !v.VPC.Addr().Is4() {
		return nil, fmt.Errorf("VPC range %q", st.VPCCIDR)
	}
	seen := map[uint32]bool{self.Index: true}
	for i := range st.Peers {
		p, err := peerOf(&st.Peers[i], true)
		if err != nil {
			return nil, fmt.Errorf("peer %d: %w", i, err)
		}
		if seen[p.Index] {
			return nil, fmt.Errorf("peer index %d twice", p.Index)
		}
		seen[p.Index] = true
		if !v.VPC.Contains(p.IP) {
			return nil, fmt.Errorf("peer %v outside the VPC %v", p.IP, v.VPC)
		}
		v.Peers = append(v.Peers, p)
	}
	return v, nil
}

func peerOf(np *cardproto.NetPeer, underlay bool) (Peer, error) {
	var p Peer
	var err error
	p.Index = np.Index
	if p.IP, err = netip.ParseAddr(np.IP); err != nil || !p.IP.Is4() {
		return p, fmt.Errorf("address %q", np.IP)
	}
	if p.MAC, err = ParseMAC(np.MAC); err != nil {
		return p, err
	}
	if p.MAC.IsMulticast() {
		return p, fmt.Errorf("MAC %v is not unicast", p.MAC)
	}
	if p.Subnet, err = netip.ParsePrefix(np.Subnet); err != nil || !p.Subnet.Contains(p.IP) {
		return p, fmt.Errorf("subnet %q does not hold %v", np.Subnet, p.IP)
	}
	if underlay {
		if p.Underlay, err = netip.ParseAddrPort(np.Underlay); err != nil || !p.Underlay.Addr().Is4() {
			return p, fmt.Errorf("underlay %q", np.Underlay)
		}
	}
	return p, nil
}
