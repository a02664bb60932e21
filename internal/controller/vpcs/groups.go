package vpcs

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/store"
)

// Security groups follow EC2's semantics: allow rules only, one set per
// direction, stateful (a reply to an allowed flow needs no rule of its
// own; the net card tracks flows). A VPC's default group lets its
// members reach each other and everything reach out; a new group lets
// nothing in and everything out.

// Direction is a side of a security group's rules.
type Direction string

// The two directions.
const (
	Ingress Direction = "ingress"
	Egress  Direction = "egress"
)

// MaxDescription bounds a group's description (EC2's).
const MaxDescription = 255

// CreateSecurityGroup makes a group in a VPC: no ingress, all egress. Its
// name is unique in the VPC, and "default" is the default group's.
func (s *Service) CreateSecurityGroup(req api.CreateSecurityGroupRequest) (api.SecurityGroup, error) {
	if req.Name == "" {
		return api.SecurityGroup{}, refusal.New(refusal.ErrInvalidName, "a security group needs a name: %s", api.NameRule)
	}
	if err := checkName("security group", req.Name); err != nil {
		return api.SecurityGroup{}, err
	}
	if strings.EqualFold(req.Name, api.DefaultSecurityGroupName) {
		return api.SecurityGroup{}, refusal.New(refusal.ErrInvalidName, "%q is the name of every VPC's default group", req.Name)
	}
	if len(req.Description) > MaxDescription || !printable(req.Description) {
		return api.SecurityGroup{}, refusal.New(refusal.ErrInvalidParameter, "description: at most %d printable characters", MaxDescription)
	}
	if e := api.ValidateTags(req.Tags); e != nil {
		return api.SecurityGroup{}, e
	}
	if req.VPC == "" {
		return api.SecurityGroup{}, refusal.New(ErrVPCNotFound, "vpc: a VPC id or name is required")
	}
	id := api.NewID(api.SecurityGroupIDPrefix)
	g := GroupRecord{api.SecurityGroup{ID: id, Name: req.Name, Description: req.Description,
		Ingress: []api.SecurityGroupRule{}, Egress: []api.SecurityGroupRule{allEgress()}, Tags: req.Tags, CreatedAt: time.Now().UTC()}}
	err := s.update(func(tx store.Tx) (string, error) {
		v, err := ResolveVPCTx(tx, req.VPC)
		if err != nil {
			return "", err
		}
		g.VPCID = v.ID
		if err := claimNameTx(tx, "security group in "+v.ID, groupNameKey(v.ID, g.Name), g.Name, id); err != nil {
			return "", err
		}
		if err := tx.Create(GroupTable, id, &g); err != nil {
			return "", err
		}
		return v.ID, bumpTx(tx, &v)
	})
	if err != nil {
		return api.SecurityGroup{}, err
	}
	s.log.Info("security group created", "id", id, "vpc", g.VPCID, "name", g.Name)
	return g.SecurityGroup, nil
}

func printable(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f || c == 0xfffd {
			return false
		}
	}
	return true
}

// ListSecurityGroups returns the groups of the VPC vpcRef (every VPC's
// when empty), oldest first.
func (s *Service) ListSecurityGroups(vpcRef string) ([]api.SecurityGroup, error) {
	out := []api.SecurityGroup{}
	err := s.view(func(tx store.Tx) error {
		vpcID, err := filterVPC(tx, vpcRef)
		if err != nil {
			return err
		}
		all, err := allGroupsTx(tx)
		for _, g := range all {
			if vpcID == "" || g.VPCID == vpcID {
				out = append(out, g.SecurityGroup)
			}
		}
		return err
	})
	return out, err
}

// DeleteSecurityGroup deletes a group that no interface has and no other
// group's rule names. A VPC's default group goes only with its VPC.
func (s *Service) DeleteSecurityGroup(ref string) (api.SecurityGroup, error) {
	var g GroupRecord
	err := s.update(func(tx store.Tx) (string, error) {
		var err error
		if g, err = ResolveGroupTx(tx, ref, ""); err != nil {
			return "", err
		}
		if g.Default {
			return "", refusal.New(ErrCannotDelete, "security group %s is the default group of VPC %s; it is deleted with the VPC", g.ID, g.VPCID)
		}
		v, err := vpcOfTx(tx, g.VPCID)
		if err != nil {
			return "", err
		}
		ifaces, err := allInterfacesTx(tx)
		if err != nil {
			return "", err
		}
		for _, x := range ifaces {
			if slices.Contains(x.SecurityGroups, g.ID) {
				return "", refusal.New(ErrDependencyViolation, "security group %s is in use by network interface %s", g.ID, x.ID)
			}
		}
		groups, err := allGroupsTx(tx)
		if err != nil {
			return "", err
		}
		for _, o := range groups {
			if o.ID == g.ID {
				continue // its own rules may name it
			}
			for _, r := range append(slices.Clone(o.Ingress), o.Egress...) {
				if r.Group == g.ID {
					return "", refusal.New(ErrDependencyViolation, "security group %s is named by a rule of group %s (%s); revoke it first", g.ID, o.ID, o.Name)
				}
			}
		}
		if err := releaseTx(tx, groupNameKey(g.VPCID, g.Name)); err != nil {
			return "", err
		}
		if err := tx.Delete(GroupTable, g.ID); err != nil {
			return "", err
		}
		return v.ID, bumpTx(tx, &v)
	})
	if err != nil {
		return api.SecurityGroup{}, err
	}
	s.log.Info("security group deleted", "id", g.ID)
	return g.SecurityGroup, nil
}

// AuthorizeIngress adds ingress rules to a group.
func (s *Service) AuthorizeIngress(ref string, rules []api.SecurityGroupRule) (api.SecurityGroup, error) {
	return s.changeRules(ref, Ingress, true, rules)
}

// AuthorizeEgress adds egress rules to a group.
func (s *Service) AuthorizeEgress(ref string, rules []api.SecurityGroupRule) (api.SecurityGroup, error) {
	return s.changeRules(ref, Egress, true, rules)
}

// RevokeIngress removes ingress rules from a group.
func (s *Service) RevokeIngress(ref string, rules []api.SecurityGroupRule) (api.SecurityGroup, error) {
	return s.changeRules(ref, Ingress, false, rules)
}

// RevokeEgress removes egress rules from a group.
func (s *Service) RevokeEgress(ref string, rules []api.SecurityGroupRule) (api.SecurityGroup, error) {
	return s.changeRules(ref, Egress, false, rules)
}

// changeRules adds (or removes) rules of one direction, all or none, as
// EC2 does: a rule the group has already (or does not have) refuses the
// whole call.
func (s *Service) changeRules(ref string, dir Direction, add bool, rules []api.SecurityGroupRule) (api.SecurityGroup, error) {
	if len(rules) == 0 {
		return api.SecurityGroup{}, refusal.New(refusal.ErrInvalidParameter, "no rules given")
	}
	if len(rules) > RulesPerDirection {
		return api.SecurityGroup{}, refusal.New(ErrLimitExceeded, "%d rules: a group has at most %d per direction", len(rules), RulesPerDirection)
	}
	var g GroupRecord
	err := s.update(func(tx store.Tx) (string, error) {
		var err error
		if g, err = ResolveGroupTx(tx, ref, ""); err != nil {
			return "", err
		}
		v, err := vpcOfTx(tx, g.VPCID)
		if err != nil {
			return "", err
		}
		cur := &g.Ingress
		if dir == Egress {
			cur = &g.Egress
		}
		norm := make([]api.SecurityGroupRule, 0, len(rules))
		for _, r := range rules {
			n, err := normalizeRule(tx, r, g.SecurityGroup)
			if err != nil {
				return "", err
			}
			if slices.Contains(norm, n) {
				return "", refusal.New(ErrDuplicateRule, "the %s rule %s is given twice", dir, RuleString(n))
			}
			norm = append(norm, n)
		}
		for _, n := range norm {
			i := slices.Index(*cur, n)
			switch {
			case add && i >= 0:
				return "", refusal.New(ErrDuplicateRule, "security group %s already has the %s rule %s", g.ID, dir, RuleString(n))
			case add:
				*cur = append(*cur, n)
			case i < 0:
				return "", refusal.New(ErrRuleNotFound, "security group %s has no %s rule %s", g.ID, dir, RuleString(n))
			default:
				*cur = slices.Delete(*cur, i, i+1)
			}
		}
		if len(*cur) > RulesPerDirection {
			return "", refusal.New(ErrLimitExceeded, "security group %s would have %d %s rules: at most %d", g.ID, len(*cur), dir, RulesPerDirection)
		}
		if err := tx.Put(GroupTable, g.ID, &g); err != nil {
			return "", err
		}
		return v.ID, bumpTx(tx, &v)
	})
	if err != nil {
		return api.SecurityGroup{}, err
	}
	verb := "authorized"
	if !add {
		verb = "revoked"
	}
	s.log.Info("security group rules "+verb, "id", g.ID, "direction", dir, "rules", len(rules))
	return g.SecurityGroup, nil
}

// normalizeRule checks a rule of group g and puts it in the one form it
// is stored and compared in: protocol lower-case ("-1" is "all"), AnyPort
// for what a protocol does not use, a group named by id.
func normalizeRule(tx store.Tx, r api.SecurityGroupRule, g api.SecurityGroup) (api.SecurityGroupRule, error) {
	n := r
	n.Protocol = strings.ToLower(r.Protocol)
	if n.Protocol == "-1" {
		n.Protocol = api.ProtocolAll
	}
	switch n.Protocol {
	case api.ProtocolTCP, api.ProtocolUDP:
		if r.FromPort < 0 || r.ToPort > 65535 || r.FromPort > r.ToPort {
			return n, refusal.New(refusal.ErrInvalidParameter, "%s ports %d-%d: want a range within 0-65535", n.Protocol, r.FromPort, r.ToPort)
		}
	case api.ProtocolICMP:
		// FromPort is the ICMP type and ToPort the code, AnyPort for any.
		if r.FromPort < -1 || r.FromPort > 255 || r.ToPort < -1 || r.ToPort > 255 {
			return n, refusal.New(refusal.ErrInvalidParameter, "icmp type %d code %d: each is 0-255, or -1 for any", r.FromPort, r.ToPort)
		}
		if r.FromPort == api.AnyPort && r.ToPort != api.AnyPort {
			return n, refusal.New(refusal.ErrInvalidParameter, "icmp code %d without a type: give the type too", r.ToPort)
		}
	case api.ProtocolAll:
		if (r.FromPort != 0 && r.FromPort != api.AnyPort) || (r.ToPort != 0 && r.ToPort != api.AnyPort) {
			return n, refusal.New(refusal.ErrInvalidParameter, "protocol all takes no ports")
		}
		n.FromPort, n.ToPort = api.AnyPort, api.AnyPort
	default:
		return n, refusal.New(refusal.ErrInvalidParameter, "protocol %q: want tcp, udp, icmp or all", r.Protocol)
	}
	switch {
	case (r.CIDR == "") == (r.Group == ""):
		return n, refusal.New(refusal.ErrInvalidParameter, "a rule names either a CIDR or a security group, not both or neither")
	case r.CIDR != "":
		p, err := parseRuleCIDR(r.CIDR)
		if err != nil {
			return n, err
		}
		n.CIDR = p.String()
	default:
		other, err := ResolveGroupTx(tx, r.Group, g.VPCID)
		if err != nil {
			// Not in this VPC by name or id: another VPC's, or none.
			if o, err2 := ResolveGroupTx(tx, r.Group, ""); err2 == nil && o.VPCID != g.VPCID {
				return n, refusal.New(ErrInvalidGroup, "security group %s is in VPC %s, not in %s with group %s", o.ID, o.VPCID, g.VPCID, g.ID)
			}
			return n, err
		}
		if other.VPCID != g.VPCID {
			return n, refusal.New(ErrInvalidGroup, "security group %s is in VPC %s, not in %s with group %s", other.ID, other.VPCID, g.VPCID, g.ID)
		}
		n.Group = other.ID
	}
	return n, nil
}

// RuleString renders a rule for people: "tcp 22 from 0.0.0.0/0".
func RuleString(r api.SecurityGroupRule) string {
	var ports string
	switch r.Protocol {
	case api.ProtocolTCP, api.ProtocolUDP:
		ports = fmt.Sprintf(" %d", r.FromPort)
		if r.ToPort != r.FromPort {
			ports = fmt.Sprintf(" %d-%d", r.FromPort, r.ToPort)
		}
	case api.ProtocolICMP:
		switch {
		case r.FromPort == api.AnyPort:
			ports = " any type"
		case r.ToPort == api.AnyPort:
			ports = fmt.Sprintf(" type %d", r.FromPort)
		default:
			ports = fmt.Sprintf(" type %d code %d", r.FromPort, r.ToPort)
		}
	}
	peer := r.CIDR
	if peer == "" {
		peer = r.Group
	}
	return r.Protocol + ports + " " + peer
}
