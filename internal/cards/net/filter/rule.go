package filter

import (
	"fmt"
	"net/netip"
)

// Proto is an IP protocol number as a rule names it, or ProtoAll.
type Proto uint8

// The protocols rules name most. Any other IP protocol number may be used
// too; its rules match on protocol and peer only, as in EC2.
const (
	// ProtoAll matches every protocol (EC2's "-1"). It is the zero value:
	// a packet carrying IP protocol 0 can only be matched by it.
	ProtoAll  Proto = 0
	ProtoICMP Proto = 1
	ProtoTCP  Proto = 6
	ProtoUDP  Proto = 17
)

// String returns "all", "tcp", "udp", "icmp" or the protocol number.
func (p Proto) String() string {
	switch p {
	case ProtoAll:
		return "all"
	case ProtoICMP:
		return "icmp"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	}
	return fmt.Sprintf("%d", uint8(p))
}

// Rule allows one kind of traffic to or from one set of peers. The peer
// is the source of ingress traffic and the destination of egress traffic.
type Rule struct {
	Proto Proto
	// FromPort and ToPort are, for TCP and UDP, the inclusive range of
	// destination ports (the guest's port for ingress, the peer's for
	// egress); -1 and -1 mean every port. For ICMP, FromPort is the type
	// and ToPort the code, -1 meaning any (a code needs a type, as in
	// EC2). For other protocols they are ignored.
	FromPort, ToPort int
	// Exactly one of Prefix and Group names the peers. An IPv6 prefix is
	// accepted and matches nothing, since the card carries IPv4 only.
	Prefix netip.Prefix
	// Group is a security group id: the rule matches peers whose address
	// Members reports in that group.
	Group string
}

// Policy is the union of the rules of every security group on an
// interface. Security groups only allow: a packet that no rule of its
// direction allows, and that belongs to no tracked flow, is dropped.
type Policy struct {
	Ingress, Egress []Rule
}

// Members answers whether addr is the private address of an interface in
// group. It is called only for the first packet of a flow, with no lock
// of the filter held, from the card's queue goroutines at once: it must
// be safe for concurrent use. A Filter without Members matches no group
// rule.
type Members interface {
	InGroup(group string, addr netip.Addr) bool
}

// crule is a rule validated and put in the form the data path tests.
type crule struct {
	proto     Proto
	lo, hi    uint16 // TCP/UDP destination ports, inclusive
	icmpType  int16  // -1: any
	icmpCode  int16  // -1: any
	net, mask uint32 // CIDR rules
	group     string // group rules; "" for CIDR rules
}

// policy is a compiled Policy: per direction, the CIDR rules first (cheap)
// and then the group rules (a Members call each).
type policy struct {
	rules [2][]crule
}

func compile(p Policy) (*policy, error) {
	c := &policy{}
	for d, rs := range [2][]Rule{Ingress: p.Ingress, Egress: p.Egress} {
		var cidr, group []crule
		for i, r := range rs {
			cr, ok, err := compileRule(r)
			if err != nil {
				return nil, fmt.Errorf("%s rule %d: %w", Dir(d), i, err)
			}
			switch {
			case !ok:
			case cr.group == "":
				cidr = append(cidr, cr)
			default:
				group = append(group, cr)
			}
		}
		c.rules[d] = append(cidr, group...)
	}
	return c, nil
}

// compileRule validates r; ok is false for a valid rule that can never
// match IPv4 traffic (an IPv6 prefix).
func compileRule(r Rule) (crule, bool, error) {
	c := crule{proto: r.Proto, hi: 65535, icmpType: -1, icmpCode: -1}
	switch {
	case r.Prefix.IsValid() && r.Group != "":
		return c, false, fmt.Errorf("%w: both a prefix and a group", ErrInvalidRule)
	case !r.Prefix.IsValid() && r.Group == "":
		return c, false, fmt.Errorf("%w: neither a prefix nor a group", ErrInvalidRule)
	}
	switch r.Proto {
	case ProtoTCP, ProtoUDP:
		switch {
		case r.FromPort == -1 && r.ToPort == -1:
		case r.FromPort < 0 || r.ToPort > 65535 || r.FromPort > r.ToPort:
			return c, false, fmt.Errorf("%w: %s port range %d-%d", ErrInvalidRule, r.Proto, r.FromPort, r.ToPort)
		default:
			c.lo, c.hi = uint16(r.FromPort), uint16(r.ToPort)
		}
	case ProtoICMP:
		if r.FromPort < -1 || r.FromPort > 255 || r.ToPort < -1 || r.ToPort > 255 || (r.FromPort == -1 && r.ToPort != -1) {
			return c, false, fmt.Errorf("%w: icmp type %d code %d", ErrInvalidRule, r.FromPort, r.ToPort)
		}
		c.icmpType, c.icmpCode = int16(r.FromPort), int16(r.ToPort)
	}
	if r.Group != "" {
		c.group = r.Group
		return c, true, nil
	}
	if !r.Prefix.Addr().Is4() {
		if r.Prefix.Addr().Is4In6() {
			return c, false, fmt.Errorf("%w: prefix %s is IPv4-mapped IPv6", ErrInvalidRule, r.Prefix)
		}
		return c, false, nil
	}
	pm := r.Prefix.Masked()
	c.net = be32(pm.Addr().As4())
	if bits := pm.Bits(); bits > 0 {
		c.mask = ^uint32(0) << (32 - bits)
	}
	return c, true, nil
}

// matches reports whether the rule allows p, whose peer is peer. Group
// rules call m.
func (r *crule) matches(p *Packet, peer uint32, peerAddr netip.Addr, m Members) bool {
	if r.proto != ProtoAll {
		if r.proto != p.Proto {
			return false
		}
		switch r.proto {
		case ProtoTCP, ProtoUDP:
			if p.DstPort < r.lo || p.DstPort > r.hi {
				return false
			}
		case ProtoICMP:
			if (r.icmpType >= 0 && int16(p.ICMPType) != r.icmpType) || (r.icmpCode >= 0 && int16(p.ICMPCode) != r.icmpCode) {
				return false
			}
		}
	}
	if r.group == "" {
		return peer&r.mask == r.net
	}
	return m != nil && m.InGroup(r.group, peerAddr)
}

func be32(a [4]byte) uint32 {
	return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
}
