package vpcs

import (
	"net"
	"net/netip"
	"slices"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/store"
)

// The read side: what azoted's net card wiring asks of the network
// records, in the types a data plane wants (netip, MACs as bytes) rather
// than the API's strings. Each answer is read in one transaction, so it
// is one consistent state of the VPC; Mapping.Revision says which.

// SubnetInfo is a subnet as routing and DHCP need it.
type SubnetInfo struct {
	ID     string
	Prefix netip.Prefix
	// Gateway is the subnet's router (first usable .1, as in EC2), which
	// the card answers ARP for and hands out by DHCP.
	Gateway netip.Addr
}

// Endpoint is one interface of a VPC, as a card of the VPC needs to
// reach it and to evaluate group references to it.
type Endpoint struct {
	InterfaceID string
	// NumericID names the interface in the encapsulation header.
	NumericID uint32
	IP        netip.Addr
	MAC       net.HardwareAddr
	SubnetID  string
	// Host is the host whose card serves the interface (its underlay
	// address is the wiring's to know).
	Host string
	// InstanceID is the instance the interface is attached to, "" when
	// none.
	InstanceID  string
	DeviceIndex int
	// Groups are the ids of the interface's security groups.
	Groups []string
	// Underlay is where the card serving it receives (SetUnderlay); not
	// valid while no card runs for it.
	Underlay netip.AddrPort
}

// Mapping is a VPC as every card of it needs it: its numeric id, the
// current (and during a rotation the next) key epoch, its subnets and
// every interface in it.
type Mapping struct {
	VPCID        string
	NumericID    uint32
	CIDR         netip.Prefix
	KeyEpoch     uint32
	NextKeyEpoch uint32
	HostGateway  bool
	// Revision increases with every committed change of the VPC: a card
	// can drop a mapping older than the one it has.
	Revision  uint64
	Subnets   []SubnetInfo
	Endpoints []Endpoint
}

func subnetInfo(sn SubnetRecord) SubnetInfo {
	p := netip.MustParsePrefix(sn.CIDR)
	return SubnetInfo{ID: sn.ID, Prefix: p, Gateway: Gateway(p)}
}

func endpoint(n InterfaceRecord) Endpoint {
	e := Endpoint{InterfaceID: n.ID, NumericID: n.NumericID, SubnetID: n.SubnetID, Host: n.Host,
		Groups: slices.Clone(n.SecurityGroups)}
	e.IP, _ = netip.ParseAddr(n.PrivateIP)
	e.MAC, _ = net.ParseMAC(n.MAC)
	if n.Attachment != nil {
		e.InstanceID, e.DeviceIndex = n.Attachment.InstanceID, n.Attachment.DeviceIndex
	}
	return e
}

// Mapping returns VPC vpcID with all its subnets and interfaces.
func (s *Service) Mapping(vpcID string) (Mapping, error) {
	var m Mapping
	err := s.view(func(tx store.Tx) error {
		var v VPCRecord
		if err := tx.Get(VPCTable, vpcID, &v); err != nil {
			return refusal.New(ErrVPCNotFound, "no VPC %q", vpcID)
		}
		m = Mapping{VPCID: v.ID, NumericID: v.NumericID, CIDR: netip.MustParsePrefix(v.CIDR), KeyEpoch: v.KeyEpoch,
			NextKeyEpoch: v.NextKeyEpoch, HostGateway: v.HostGateway, Revision: v.Revision}
		subnets, err := allSubnetsTx(tx)
		if err != nil {
			return err
		}
		for _, sn := range subnets {
			if sn.VPCID == v.ID {
				m.Subnets = append(m.Subnets, subnetInfo(sn))
			}
		}
		ifaces, err := allInterfacesTx(tx)
		for _, n := range ifaces {
			if n.VPCID == v.ID {
				e := endpoint(n)
				e.Underlay = underlayOf(tx, n.ID)
				m.Endpoints = append(m.Endpoints, e)
			}
		}
		return err
	})
	return m, err
}

// Subnets returns the subnets of VPC vpcID, oldest first.
func (s *Service) Subnets(vpcID string) ([]SubnetInfo, error) {
	m, err := s.Mapping(vpcID)
	return m.Subnets, err
}

// InstanceInterfaces returns the interfaces attached to instance instID,
// by device index (the primary first).
func (s *Service) InstanceInterfaces(instID string) ([]api.NetworkInterface, error) {
	var out []api.NetworkInterface
	err := s.view(func(tx store.Tx) error {
		recs, err := InstanceInterfacesTx(tx, instID)
		for _, n := range recs {
			out = append(out, n.NetworkInterface)
		}
		return err
	})
	return out, err
}

// Rule is one allow rule in force on an interface, typed for
// evaluation. Exactly one of Prefix (valid) and Group is set; a group is
// kept by id and stands for the addresses of the VPC's interfaces that
// have it (Mapping.Endpoints[].Groups).
type Rule struct {
	Protocol string // tcp, udp, icmp or all
	// FromPort and ToPort: the port range of tcp and udp; the ICMP type
	// and code (api.AnyPort for any) of icmp; api.AnyPort for all.
	FromPort, ToPort int
	Prefix           netip.Prefix
	Group            string
}

// Rules are the rules in force on an interface: the union of its
// groups', each once.
type Rules struct {
	InterfaceID string
	VPCID       string
	Ingress     []Rule
	Egress      []Rule
}

func toRule(r api.SecurityGroupRule) Rule {
	out := Rule{Protocol: r.Protocol, FromPort: r.FromPort, ToPort: r.ToPort, Group: r.Group}
	if r.CIDR != "" {
		out.Prefix, _ = netip.ParsePrefix(r.CIDR)
	}
	return out
}

// EffectiveRules returns the rules in force on interface id: the union
// of the rules of its security groups, with group references kept as
// group ids.
func (s *Service) EffectiveRules(id string) (Rules, error) {
	var out Rules
	err := s.view(func(tx store.Tx) error {
		var n InterfaceRecord
		if err := tx.Get(InterfaceTable, id, &n); err != nil {
			return refusal.New(ErrInterfaceNotFound, "no network interface %q", id)
		}
		out = Rules{InterfaceID: n.ID, VPCID: n.VPCID, Ingress: []Rule{}, Egress: []Rule{}}
		var in, eg []api.SecurityGroupRule
		for _, gid := range n.SecurityGroups {
			var g GroupRecord
			if err := tx.Get(GroupTable, gid, &g); err != nil {
				return err
			}
			in, eg = union(in, g.Ingress), union(eg, g.Egress)
		}
		for _, r := range in {
			out.Ingress = append(out.Ingress, toRule(r))
		}
		for _, r := range eg {
			out.Egress = append(out.Egress, toRule(r))
		}
		return nil
	})
	return out, err
}

func union(have, more []api.SecurityGroupRule) []api.SecurityGroupRule {
	for _, r := range more {
		if !slices.Contains(have, r) {
			have = append(have, r)
		}
	}
	return have
}

// VPCsOnHost returns the ids of the VPCs that have an interface on host
// (this one when empty): those whose cards live here.
func (s *Service) VPCsOnHost(host string) ([]string, error) {
	if host == "" {
		host = s.cfg.HostID
	}
	var out []string
	err := s.view(func(tx store.Tx) error {
		ifaces, err := allInterfacesTx(tx)
		for _, n := range ifaces {
			if n.Host == host && !slices.Contains(out, n.VPCID) {
				out = append(out, n.VPCID)
			}
		}
		return err
	})
	return out, err
}
