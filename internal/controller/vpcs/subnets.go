package vpcs

import (
	"net/netip"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/store"
)

// CreateSubnet makes a subnet inside its VPC's block, overlapping none of
// the VPC's other subnets.
func (s *Service) CreateSubnet(req api.CreateSubnetRequest) (api.Subnet, error) {
	if err := checkName("subnet", req.Name); err != nil {
		return api.Subnet{}, err
	}
	p, err := parseBlock("subnet", req.CIDR, ErrInvalidSubnetRange)
	if err != nil {
		return api.Subnet{}, err
	}
	if e := api.ValidateTags(req.Tags); e != nil {
		return api.Subnet{}, e
	}
	if req.VPC == "" {
		return api.Subnet{}, refusal.New(ErrVPCNotFound, "vpc: a VPC id or name is required")
	}
	id := api.NewID(api.SubnetIDPrefix)
	name := req.Name
	if name == "" {
		name = id
	}
	sn := SubnetRecord{api.Subnet{ID: id, Name: name, CIDR: p.String(), Gateway: Gateway(p).String(),
		AvailableAddresses: Usable(p), Tags: req.Tags, CreatedAt: time.Now().UTC()}}
	err = s.update(func(tx store.Tx) (string, error) {
		v, err := ResolveVPCTx(tx, req.VPC)
		if err != nil {
			return "", err
		}
		sn.VPCID = v.ID
		vp := netip.MustParsePrefix(v.CIDR)
		if !vp.Contains(p.Addr()) || p.Bits() < vp.Bits() {
			return "", refusal.New(ErrInvalidSubnetRange, "subnet CIDR %s is not inside the block %s of VPC %s", p, vp, v.ID)
		}
		all, err := allSubnetsTx(tx)
		if err != nil {
			return "", err
		}
		for _, x := range all {
			if x.VPCID == v.ID && netip.MustParsePrefix(x.CIDR).Overlaps(p) {
				return "", refusal.New(ErrSubnetConflict, "subnet CIDR %s overlaps subnet %s (%s) of VPC %s", p, x.ID, x.CIDR, v.ID)
			}
		}
		if err := claimNameTx(tx, "subnet", nameKey("subnet", name), name, id); err != nil {
			return "", err
		}
		if err := tx.Create(SubnetTable, id, &sn); err != nil {
			return "", err
		}
		return v.ID, bumpTx(tx, &v)
	})
	if err != nil {
		return api.Subnet{}, err
	}
	s.log.Info("subnet created", "id", id, "vpc", sn.VPCID, "cidr", sn.CIDR)
	return sn.Subnet, nil
}

// subnetView is the public view of sn: its free addresses counted from
// the interfaces in it.
func subnetView(sn SubnetRecord, ifaces []InterfaceRecord) api.Subnet {
	v := sn.Subnet
	v.AvailableAddresses = Usable(netip.MustParsePrefix(sn.CIDR))
	for _, x := range ifaces {
		if x.SubnetID == sn.ID {
			v.AvailableAddresses--
		}
	}
	return v
}

// DescribeSubnet returns the subnet ref with its free addresses counted.
func (s *Service) DescribeSubnet(ref string) (api.Subnet, error) {
	var out api.Subnet
	err := s.view(func(tx store.Tx) error {
		sn, err := ResolveSubnetTx(tx, ref)
		if err != nil {
			return err
		}
		ifaces, err := allInterfacesTx(tx)
		out = subnetView(sn, ifaces)
		return err
	})
	return out, err
}

// ListSubnets returns the subnets of the VPC vpcRef (every VPC's when
// empty), oldest first.
func (s *Service) ListSubnets(vpcRef string) ([]api.Subnet, error) {
	out := []api.Subnet{}
	err := s.view(func(tx store.Tx) error {
		vpcID, err := filterVPC(tx, vpcRef)
		if err != nil {
			return err
		}
		all, err := allSubnetsTx(tx)
		if err != nil {
			return err
		}
		ifaces, err := allInterfacesTx(tx)
		if err != nil {
			return err
		}
		for _, sn := range all {
			if vpcID == "" || sn.VPCID == vpcID {
				out = append(out, subnetView(sn, ifaces))
			}
		}
		return nil
	})
	return out, err
}

// filterVPC resolves the VPC a list is limited to ("" for none).
func filterVPC(tx store.Tx, ref string) (string, error) {
	if ref == "" {
		return "", nil
	}
	v, err := ResolveVPCTx(tx, ref)
	return v.ID, err
}

// DeleteSubnet deletes a subnet that no interface is in.
func (s *Service) DeleteSubnet(ref string) (api.Subnet, error) {
	var sn SubnetRecord
	err := s.update(func(tx store.Tx) (string, error) {
		var err error
		if sn, err = ResolveSubnetTx(tx, ref); err != nil {
			return "", err
		}
		v, err := vpcOfTx(tx, sn.VPCID)
		if err != nil {
			return "", err
		}
		ifaces, err := allInterfacesTx(tx)
		if err != nil {
			return "", err
		}
		for _, x := range ifaces {
			if x.SubnetID == sn.ID && x.Type != api.InterfaceTypeHostGateway {
				return "", refusal.New(ErrDependencyViolation, "subnet %s has network interface %s (%s); delete it first", sn.ID, x.ID, x.PrivateIP)
			}
		}
		// The hosts' gateways in it go with it (a host whose VPC still
		// has the gateway on makes its own again in another subnet).
		for _, x := range ifaces {
			if x.SubnetID == sn.ID {
				if err := deleteInterfaceTx(tx, x); err != nil {
					return "", err
				}
				if v, err = vpcOfTx(tx, sn.VPCID); err != nil {
					return "", err
				}
			}
		}
		if err := releaseTx(tx, nameKey("subnet", sn.Name)); err != nil {
			return "", err
		}
		if err := tx.Delete(SubnetTable, sn.ID); err != nil {
			return "", err
		}
		return v.ID, bumpTx(tx, &v)
	})
	if err != nil {
		return api.Subnet{}, err
	}
	s.log.Info("subnet deleted", "id", sn.ID)
	sn.AvailableAddresses = Usable(netip.MustParsePrefix(sn.CIDR))
	return sn.Subnet, nil
}
