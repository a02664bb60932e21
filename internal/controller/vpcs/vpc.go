package vpcs

import (
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/store"
)

// CreateVPC makes a VPC with its first traffic key (epoch 1, stored only
// wrapped) and its default security group, in one transaction.
func (s *Service) CreateVPC(req api.CreateVPCRequest) (api.VPC, error) {
	if err := checkName("VPC", req.Name); err != nil {
		return api.VPC{}, err
	}
	p, err := parseBlock("VPC", req.CIDR, ErrInvalidVPCRange)
	if err != nil {
		return api.VPC{}, err
	}
	for _, f := range forbidden {
		if f.Overlaps(p) {
			return api.VPC{}, refusal.New(ErrInvalidVPCRange, "VPC CIDR %s overlaps %s, whose addresses mean something else on every host; use a private block such as 10.0.0.0/16", p, f)
		}
	}
	if e := api.ValidateTags(req.Tags); e != nil {
		return api.VPC{}, e
	}
	id := api.NewID(api.VPCIDPrefix)
	name := req.Name
	if name == "" {
		name = id
	}
	wrapped, err := s.newWrappedKey(id, 1)
	if err != nil {
		return api.VPC{}, err
	}
	now := time.Now().UTC()
	v := VPCRecord{
		VPC: api.VPC{ID: id, Name: name, CIDR: p.String(), HostGateway: req.HostGateway, KeyEpoch: 1,
			Tags: req.Tags, CreatedAt: now},
		Keys:          []WrappedKey{{Epoch: 1, Wrapped: wrapped}},
		NextInterface: 1,
		Revision:      1,
	}
	def := defaultGroup(id, now)
	v.DefaultSecurityGroup = def.ID
	err = s.update(func(tx store.Tx) (string, error) {
		if err := claimNameTx(tx, "VPC", nameKey("vpc", name), name, id); err != nil {
			return "", err
		}
		// The numeric id is random: two hosts making VPCs at once do not
		// race for the next number, and a claim makes it unique.
		for try := 0; ; try++ {
			n, err := randomUint32()
			if err != nil {
				return "", err
			}
			taken, err := claimTx(tx, claimKey("vpc-number", u32Key(n)), id)
			if err != nil {
				return "", err
			}
			if !taken {
				v.NumericID = n
				break
			}
			if try == 16 {
				return "", refusal.New(refusal.ErrQuotaExceeded, "no free VPC number found")
			}
		}
		if v.HostGateway {
			if err := checkHostGatewayTx(tx, &v); err != nil {
				return "", err
			}
		}
		if err := claimNameTx(tx, "security group", groupNameKey(id, def.Name), def.Name, def.ID); err != nil {
			return "", err
		}
		if err := tx.Create(GroupTable, def.ID, &def); err != nil {
			return "", err
		}
		return id, tx.Create(VPCTable, id, &v)
	})
	if err != nil {
		return api.VPC{}, err
	}
	s.log.Info("VPC created", "id", id, "cidr", v.CIDR, "numeric_id", v.NumericID, "host_gateway", v.HostGateway)
	if v.HostGateway {
		s.cfg.Event("HostGatewayEnabled", "vpc/"+id, map[string]any{"cidr": v.CIDR, "reason": "VPC created with the host gateway"})
	}
	return v.VPC, nil
}

// defaultGroup is the group a VPC is made with: ingress of everything
// from its own members, egress of everything anywhere.
func defaultGroup(vpcID string, now time.Time) GroupRecord {
	id := api.NewID(api.SecurityGroupIDPrefix)
	return GroupRecord{api.SecurityGroup{
		ID: id, Name: api.DefaultSecurityGroupName, Description: "default VPC security group", VPCID: vpcID, Default: true,
		Ingress:   []api.SecurityGroupRule{{Protocol: api.ProtocolAll, FromPort: api.AnyPort, ToPort: api.AnyPort, Group: id}},
		Egress:    []api.SecurityGroupRule{allEgress()},
		CreatedAt: now,
	}}
}

func allEgress() api.SecurityGroupRule {
	return api.SecurityGroupRule{Protocol: api.ProtocolAll, FromPort: api.AnyPort, ToPort: api.AnyPort, CIDR: "0.0.0.0/0"}
}

// ListVPCs returns every VPC, oldest first.
func (s *Service) ListVPCs() ([]api.VPC, error) {
	out := []api.VPC{}
	err := s.view(func(tx store.Tx) error {
		all, err := allVPCsTx(tx)
		for _, v := range all {
			out = append(out, v.VPC)
		}
		return err
	})
	return out, err
}

// ModifyVPC changes what may change of a VPC: its host gateway. Turning
// it on is audited.
func (s *Service) ModifyVPC(ref string, req api.ModifyVPCRequest) (api.VPC, error) {
	var v VPCRecord
	was := false
	err := s.update(func(tx store.Tx) (string, error) {
		var err error
		if v, err = ResolveVPCTx(tx, ref); err != nil {
			return "", err
		}
		was = v.HostGateway
		if req.HostGateway == nil || *req.HostGateway == v.HostGateway {
			return "", nil // nothing changes; nothing to tell
		}
		v.HostGateway = *req.HostGateway
		if v.HostGateway {
			if err := checkHostGatewayTx(tx, &v); err != nil {
				return "", err
			}
		} else if err := deleteHostGatewaysTx(tx, &v); err != nil {
			return "", err
		}
		v.HostGateway = *req.HostGateway
		return v.ID, bumpTx(tx, &v)
	})
	if err != nil {
		return api.VPC{}, err
	}
	if v.HostGateway && !was {
		s.cfg.Event("HostGatewayEnabled", "vpc/"+v.ID, map[string]any{"cidr": v.CIDR, "reason": "host gateway turned on"})
	}
	if v.HostGateway != was {
		s.log.Info("VPC host gateway changed", "id", v.ID, "host_gateway", v.HostGateway)
	}
	return v.VPC, nil
}

// DeleteVPC deletes a VPC that has no subnets, no interfaces and no
// security group but its default one, which goes with it, as do its
// keys.
func (s *Service) DeleteVPC(ref string) (api.VPC, error) {
	var v VPCRecord
	err := s.update(func(tx store.Tx) (string, error) {
		var err error
		if v, err = ResolveVPCTx(tx, ref); err != nil {
			return "", err
		}
		subnets, err := allSubnetsTx(tx)
		if err != nil {
			return "", err
		}
		for _, x := range subnets {
			if x.VPCID == v.ID {
				return "", refusal.New(ErrDependencyViolation, "VPC %s has subnet %s (%s); delete its subnets first", v.ID, x.ID, x.CIDR)
			}
		}
		ifaces, err := allInterfacesTx(tx)
		if err != nil {
			return "", err
		}
		for _, x := range ifaces {
			if x.VPCID == v.ID {
				return "", refusal.New(ErrDependencyViolation, "VPC %s has network interface %s; delete its interfaces first", v.ID, x.ID)
			}
		}
		groups, err := allGroupsTx(tx)
		if err != nil {
			return "", err
		}
		for _, g := range groups {
			if g.VPCID != v.ID {
				continue
			}
			if !g.Default {
				return "", refusal.New(ErrDependencyViolation, "VPC %s has security group %s (%s); delete its groups first", v.ID, g.ID, g.Name)
			}
			if err := releaseTx(tx, groupNameKey(v.ID, g.Name)); err != nil {
				return "", err
			}
			if err := tx.Delete(GroupTable, g.ID); err != nil {
				return "", err
			}
		}
		for _, k := range []string{nameKey("vpc", v.Name), claimKey("vpc-number", u32Key(v.NumericID))} {
			if err := releaseTx(tx, k); err != nil {
				return "", err
			}
		}
		return v.ID, tx.Delete(VPCTable, v.ID)
	})
	if err != nil {
		return api.VPC{}, err
	}
	s.log.Info("VPC deleted", "id", v.ID)
	return v.VPC, nil
}
