package filter

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

// Addresses used throughout: the guest behind the filter, another member
// of its group, and hosts outside.
var (
	guest    = netip.MustParseAddr("10.0.0.5")
	member   = netip.MustParseAddr("10.0.0.6")
	neighbor = netip.MustParseAddr("10.0.1.9") // same VPC, not a member
	outside  = netip.MustParseAddr("192.0.2.7")
	other    = netip.MustParseAddr("198.51.100.1")
	router   = netip.MustParseAddr("10.0.0.1")
)

const sec = int64(time.Second)

// groups is a Members backed by a map, safe for concurrent use.
type groups struct {
	mu sync.Mutex
	m  map[string]map[netip.Addr]bool
}

func newGroups(g string, addrs ...netip.Addr) *groups {
	gs := &groups{m: map[string]map[netip.Addr]bool{}}
	for _, a := range addrs {
		gs.add(g, a)
	}
	return gs
}

func (g *groups) add(group string, a netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m[group] == nil {
		g.m[group] = map[netip.Addr]bool{}
	}
	g.m[group][a] = true
}

func (g *groups) remove(group string, a netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.m[group], a)
}

func (g *groups) InGroup(group string, a netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.m[group][a]
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

var anywhere = pfx("0.0.0.0/0")

// The two groups EC2 starts with.
var (
	// defaultGroup: ingress from members of the same group, all egress.
	defaultGroup = Policy{
		Ingress: []Rule{{Proto: ProtoAll, Group: "sg-default"}},
		Egress:  []Rule{{Proto: ProtoAll, Prefix: anywhere}},
	}
	// newGroup: no ingress, all egress.
	newGroup = Policy{Egress: []Rule{{Proto: ProtoAll, Prefix: anywhere}}}
)

func tcp(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, flags TCPFlags) *Packet {
	return &Packet{Proto: ProtoTCP, Src: src, Dst: dst, SrcPort: sport, DstPort: dport, TCPFlags: flags, Len: 60}
}

func udp(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) *Packet {
	return &Packet{Proto: ProtoUDP, Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Len: 100}
}

func icmp(src, dst netip.Addr, typ, code uint8, id uint16) *Packet {
	return &Packet{Proto: ProtoICMP, Src: src, Dst: dst, ICMPType: typ, ICMPCode: code, ICMPID: id, Len: 84}
}

// icmpErr is an ICMP error from src to dst quoting q.
func icmpErr(src, dst netip.Addr, typ, code uint8, q *Packet) *Packet {
	p := icmp(src, dst, typ, code, 0)
	p.Embedded = Embedded{Proto: q.Proto, Src: q.Src, Dst: q.Dst, SrcPort: q.SrcPort, DstPort: q.DstPort, ICMPType: q.ICMPType, ICMPID: q.ICMPID}
	return p
}

func proto(n Proto, src, dst netip.Addr) *Packet {
	return &Packet{Proto: n, Src: src, Dst: dst, Len: 100}
}

const (
	syn    = FlagSYN
	synack = FlagSYN | FlagACK
	ack    = FlagACK
	finack = FlagFIN | FlagACK
	rst    = FlagRST
	rstack = FlagRST | FlagACK
)

func mustNew(t testing.TB, cfg Config, p Policy) *Filter {
	t.Helper()
	f, err := New(cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// state returns the TCP state of the flow p belongs to going in d, or
// false if it is not in the table.
func (f *Filter) state(d Dir, p *Packet) (tcpState, bool) {
	k, _ := keyFor(d, p.Proto, be32(p.Src.As4()), be32(p.Dst.As4()), p.SrcPort, p.DstPort, p.ICMPType, p.ICMPID)
	h := f.t.hash(&k)
	s := f.t.shardOf(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, j := s.findLocked(&k, uint32(h))
	if j < 0 {
		return 0, false
	}
	return s.entries[j].state, true
}
