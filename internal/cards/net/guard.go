package net

import (
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/cards/net/filter"
	"github.com/azote/azote/internal/cards/net/packet"
)

// guard is the interface's security groups, connection tracking and
// rate limits (filter), judged on the frames the switch parsed.
type guard struct {
	f       *filter.Filter
	members atomic.Pointer[membership]
}

// membership says which addresses of the VPC are in which group, for
// rules that name a group; azoted's view of the VPC, swapped whole.
type membership map[string]map[netip.Addr]bool

func (g *guard) InGroup(group string, addr netip.Addr) bool {
	m := g.members.Load()
	return m != nil && (*m)[group][addr]
}

func newGuard(cfg *cardproto.NetConfig) (*guard, error) {
	g := &guard{}
	lim := filter.Limits{PacketsPerSec: uint64(max(cfg.PacketsPerSecond, 0)), BitsPerSec: uint64(max(cfg.BitsPerSecond, 0))}
	f, err := filter.New(filter.Config{Members: g, IngressLimits: lim, EgressLimits: lim}, filter.Policy{})
	if err != nil {
		return nil, err
	}
	g.f = f
	return g, nil
}

// policyOf checks a state's rules and memberships.
func policyOf(st *cardproto.NetState) (filter.Policy, membership, error) {
	var p filter.Policy
	var err error
	if p.Ingress, err = rulesOf(st.Ingress); err != nil {
		return p, nil, fmt.Errorf("ingress: %w", err)
	}
	if p.Egress, err = rulesOf(st.Egress); err != nil {
		return p, nil, fmt.Errorf("egress: %w", err)
	}
	m := membership{}
	add := func(np *cardproto.NetPeer) {
		ip, err := netip.ParseAddr(np.IP)
		if err != nil {
			return
		}
		for _, grp := range np.Groups {
			if m[grp] == nil {
				m[grp] = map[netip.Addr]bool{}
			}
			m[grp][ip] = true
		}
	}
	add(&st.Self)
	for i := range st.Peers {
		add(&st.Peers[i])
	}
	return p, m, nil
}

// set applies checked rules and memberships: new flows are judged by
// them at once, tracked ones go on.
func (g *guard) set(p filter.Policy, m membership) error {
	if err := g.f.SetPolicy(p); err != nil {
		return err
	}
	g.members.Store(&m)
	return nil
}

func rulesOf(rs []cardproto.NetRule) ([]filter.Rule, error) {
	out := make([]filter.Rule, 0, len(rs))
	for _, r := range rs {
		fr := filter.Rule{FromPort: r.FromPort, ToPort: r.ToPort, Group: r.Group}
		switch r.Protocol {
		case "all", "-1":
			fr.Proto = filter.ProtoAll
		case "tcp":
			fr.Proto = filter.ProtoTCP
		case "udp":
			fr.Proto = filter.ProtoUDP
		case "icmp":
			fr.Proto = filter.ProtoICMP
		default:
			return nil, fmt.Errorf("protocol %q", r.Protocol)
		}
		if r.CIDR != "" {
			p, err := netip.ParsePrefix(r.CIDR)
			if err != nil {
				return nil, fmt.Errorf("CIDR %q", r.CIDR)
			}
			fr.Prefix = p
		}
		if (r.CIDR == "") == (r.Group == "") {
			return nil, fmt.Errorf("a rule needs a CIDR or a group, not both")
		}
		out = append(out, fr)
	}
	return out, nil
}

// Egress implements Guard.
func (g *guard) Egress(p *packet.Packet, frame []byte, now int64) Drop {
	return g.check(filter.Egress, p, frame, now)
}

// Ingress implements Guard.
func (g *guard) Ingress(p *packet.Packet, frame []byte, now int64) Drop {
	return g.check(filter.Ingress, p, frame, now)
}

// icmpError says whether an ICMP type is an error that quotes a header:
// destination unreachable, source quench, redirect, time exceeded,
// parameter problem.
func icmpError(t uint8) bool { return t == 3 || t == 4 || t == 5 || t == 11 || t == 12 }

func (g *guard) check(d filter.Dir, p *packet.Packet, frame []byte, now int64) Drop {
	n := len(frame)
	if p.Fragment && !p.HasTransport {
		// A later fragment carries no ports to judge or to match a flow
		// with; the card does not reassemble, so it is dropped (guests
		// use path MTU discovery: DF is set on what they send).
		return DropSecurityGroup
	}
	fp := filter.Packet{Proto: filter.Proto(p.Proto), Src: p.SrcIP, Dst: p.DstIP, Len: n}
	if p.HasTransport {
		fp.SrcPort, fp.DstPort = p.SrcPort, p.DstPort
		fp.TCPFlags = filter.TCPFlags(p.TCPFlags)
		fp.ICMPType, fp.ICMPCode, fp.ICMPID = p.ICMPType, p.ICMPCode, p.ICMPID
		if p.Proto == packet.ProtoICMP && icmpError(p.ICMPType) {
			// An error quotes the header it is about: it passes when that
			// header is of a tracked flow (path MTU discovery's
			// "fragmentation needed", "port unreachable").
			fp.Embedded, _ = filter.ParseEmbedded(p.TransportPayload(frame))
		}
	}
	v := g.f.Check(d, &fp, now)
	if v.Allow {
		return DropNone
	}
	switch v.Reason {
	case filter.DropConntrackFull:
		return DropConntrackFull
	case filter.DropRateLimit:
		return DropRateLimit
	case filter.DropMalformed:
		return dropMalformedFrame
	}
	return DropSecurityGroup
}
