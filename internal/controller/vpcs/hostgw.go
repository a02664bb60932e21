package vpcs

import (
	"errors"
	"net/netip"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/store"
)

// The host gateway gives a host an address in a VPC, so that its operator
// can reach the VPC's instances (ping, ssh). It is an interface of the
// VPC like an instance's (an address and a MAC claimed in a subnet, the
// VPC's default security group, a number in the encapsulation header),
// of type api.InterfaceTypeHostGateway, that the host itself holds: one
// per host, in the VPC's lowest subnet. azoted makes it (HostGateway)
// once the VPC has the gateway on and a subnet, and serves it with a net
// card on a tap device in place of a guest. Nobody attaches, detaches or
// deletes it: it goes when the gateway is turned off, and with its
// subnet.

// notHostGateway refuses to let a user act on a host gateway's interface.
func notHostGateway(n InterfaceRecord) error {
	if n.Type == api.InterfaceTypeHostGateway {
		return refusal.New(ErrOperationNotPermitted, "network interface %s is host %s's gateway into VPC %s; it goes when the host gateway is turned off (vpc modify %s --host-gateway=false)",
			n.ID, n.Host, n.VPCID, n.VPCID)
	}
	return nil
}

// HostGateway returns this host's gateway interface in VPC vpcID, making
// it when the VPC has the gateway on and a subnet; ok is false when the
// VPC wants none (its gateway is off, it has no subnet, or it is gone).
func (s *Service) HostGateway(vpcID string) (n InterfaceRecord, ok bool, err error) {
	made := false
	err = s.update(func(tx store.Tx) (string, error) {
		var v VPCRecord
		if err := tx.Get(VPCTable, vpcID, &v); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return "", nil
			}
			return "", err
		}
		if !v.HostGateway {
			return "", nil
		}
		ifaces, err := allInterfacesTx(tx)
		if err != nil {
			return "", err
		}
		for _, x := range ifaces {
			if x.VPCID == v.ID && x.Type == api.InterfaceTypeHostGateway && x.Host == s.cfg.HostID {
				n, ok = x, true
				return "", nil
			}
		}
		subnets, err := allSubnetsTx(tx)
		if err != nil {
			return "", err
		}
		var in *SubnetRecord
		for i, sn := range subnets {
			if sn.VPCID == v.ID && (in == nil || lower(sn.CIDR, in.CIDR)) {
				in = &subnets[i]
			}
		}
		if in == nil {
			return "", nil
		}
		if n, err = s.createInterfaceTx(tx, api.CreateNetworkInterfaceRequest{Subnet: in.ID}, nil, api.InterfaceTypeHostGateway); err != nil {
			return "", err
		}
		ok, made = true, true
		return v.ID, nil
	})
	if err != nil || !made {
		return n, ok, err
	}
	s.log.Info("host gateway interface created", "id", n.ID, "vpc", n.VPCID, "ip", n.PrivateIP, "host", n.Host)
	s.cfg.Event("HostGatewayInterfaceCreated", "vpc/"+n.VPCID, map[string]any{
		"network_interface": n.ID, "private_ip": n.PrivateIP, "host": n.Host})
	return n, true, nil
}

// lower says whether block a starts below block b.
func lower(a, b string) bool {
	pa, _ := netip.ParsePrefix(a)
	pb, _ := netip.ParsePrefix(b)
	return pa.Addr().Less(pb.Addr())
}

// HostGatewayVPCs returns the VPCs whose host gateway is on.
func (s *Service) HostGatewayVPCs() ([]string, error) {
	var out []string
	err := s.view(func(tx store.Tx) error {
		all, err := allVPCsTx(tx)
		for _, v := range all {
			if v.HostGateway {
				out = append(out, v.ID)
			}
		}
		return err
	})
	return out, err
}

// HostGatewayInterfaces returns this host's gateway interfaces, of every
// VPC.
func (s *Service) HostGatewayInterfaces() ([]InterfaceRecord, error) {
	var out []InterfaceRecord
	err := s.view(func(tx store.Tx) error {
		all, err := allInterfacesTx(tx)
		for _, n := range all {
			if n.Type == api.InterfaceTypeHostGateway && n.Host == s.cfg.HostID {
				out = append(out, n)
			}
		}
		return err
	})
	return out, err
}

// deleteHostGatewaysTx deletes every host's gateway interface in VPC v,
// whose record it writes.
func deleteHostGatewaysTx(tx store.Tx, v *VPCRecord) error {
	ifaces, err := allInterfacesTx(tx)
	if err != nil {
		return err
	}
	for _, x := range ifaces {
		if x.VPCID == v.ID && x.Type == api.InterfaceTypeHostGateway {
			if err := deleteInterfaceTx(tx, x); err != nil {
				return err
			}
		}
	}
	*v, err = vpcOfTx(tx, v.ID)
	return err
}

// checkHostGatewayTx refuses the host gateway for VPC v when another VPC
// with one has an overlapping block: the host would have two routes to
// one address.
func checkHostGatewayTx(tx store.Tx, v *VPCRecord) error {
	p, err := netip.ParsePrefix(v.CIDR)
	if err != nil {
		return err
	}
	all, err := allVPCsTx(tx)
	if err != nil {
		return err
	}
	for _, o := range all {
		if o.ID == v.ID || !o.HostGateway {
			continue
		}
		if q, err := netip.ParsePrefix(o.CIDR); err == nil && q.Overlaps(p) {
			return refusal.New(ErrHostGatewayConflict, "VPC %s (%s) has the host gateway on and its block overlaps %s: the host could not tell their addresses apart",
				o.ID, o.CIDR, p)
		}
	}
	return nil
}
