package filter

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// step is one packet through the filter, or a policy change when policy
// is set, at second at of a fake clock.
type step struct {
	at     int64
	d      Dir
	p      *Packet
	want   Reason
	policy *Policy
}

func (s step) run(t *testing.T, i int, f *Filter) {
	t.Helper()
	if s.policy != nil {
		if err := f.SetPolicy(*s.policy); err != nil {
			t.Fatalf("step %d: SetPolicy: %v", i, err)
		}
		return
	}
	v := f.Check(s.d, s.p, s.at*sec)
	wantAllow := s.want < DropSecurityGroup
	if v.Allow != wantAllow || v.Reason != s.want {
		t.Fatalf("step %d (%s %v %v:%d→%v:%d flags %#x icmp %d/%d): got %+v (%s), want %s",
			i, s.d, s.p.Proto, s.p.Src, s.p.SrcPort, s.p.Dst, s.p.DstPort, s.p.TCPFlags, s.p.ICMPType, s.p.ICMPCode, v, v.Reason, s.want)
	}
}

// TestEC2Semantics is the table of EC2 security-group cases: each runs a
// sequence of packets through a fresh filter.
func TestEC2Semantics(t *testing.T) {
	in, out := Ingress, Egress
	tcp80 := Policy{Ingress: []Rule{{Proto: ProtoTCP, FromPort: 80, ToPort: 80, Prefix: anywhere}}}
	cases := []struct {
		name    string
		policy  Policy
		members []netip.Addr // of sg-default
		steps   []step
	}{
		{"default group: ingress from members only", defaultGroup, []netip.Addr{guest, member}, []step{
			{d: in, p: tcp(member, 40000, guest, 22, syn), want: AllowNew},
			{d: in, p: udp(member, 5000, guest, 53), want: AllowNew},
			{d: in, p: icmp(member, guest, icmpEcho, 0, 7), want: AllowNew},
			{d: in, p: proto(47, member, guest), want: AllowNew},
			{d: in, p: tcp(neighbor, 40000, guest, 22, syn), want: DropSecurityGroup},
			{d: in, p: tcp(outside, 40000, guest, 22, syn), want: DropSecurityGroup},
			{d: in, p: icmp(outside, guest, icmpEcho, 0, 7), want: DropSecurityGroup},
		}},
		{"default group: all egress", defaultGroup, []netip.Addr{guest}, []step{
			{d: out, p: tcp(guest, 40000, outside, 443, syn), want: AllowNew},
			{d: out, p: udp(guest, 40000, other, 123), want: AllowNew},
			{d: out, p: icmp(guest, outside, icmpEcho, 0, 1), want: AllowNew},
			{d: out, p: proto(50, guest, outside), want: AllowNew},
		}},
		{"new group: no ingress, all egress", newGroup, nil, []step{
			{d: in, p: tcp(member, 40000, guest, 22, syn), want: DropSecurityGroup},
			{d: in, p: udp(outside, 53, guest, 53), want: DropSecurityGroup},
			{d: in, p: icmp(outside, guest, icmpEcho, 0, 1), want: DropSecurityGroup},
			{d: out, p: tcp(guest, 40000, outside, 80, syn), want: AllowNew},
			{d: in, p: tcp(outside, 80, guest, 40000, synack), want: AllowTracked},
		}},
		{"empty policy: nothing either way", Policy{}, nil, []step{
			{d: out, p: tcp(guest, 40000, outside, 80, syn), want: DropSecurityGroup},
			{d: in, p: tcp(outside, 40000, guest, 80, syn), want: DropSecurityGroup},
		}},
		{"tcp port range", Policy{Ingress: []Rule{{Proto: ProtoTCP, FromPort: 8000, ToPort: 8080, Prefix: anywhere}}}, nil, []step{
			{d: in, p: tcp(outside, 1000, guest, 7999, syn), want: DropSecurityGroup},
			{d: in, p: tcp(outside, 1001, guest, 8000, syn), want: AllowNew},
			{d: in, p: tcp(outside, 1002, guest, 8080, syn), want: AllowNew},
			{d: in, p: tcp(outside, 1003, guest, 8081, syn), want: DropSecurityGroup},
			{d: in, p: udp(outside, 1004, guest, 8000), want: DropSecurityGroup},
			{d: in, p: icmp(outside, guest, icmpEcho, 0, 1), want: DropSecurityGroup},
		}},
		{"tcp all ports", Policy{Ingress: []Rule{{Proto: ProtoTCP, FromPort: -1, ToPort: -1, Prefix: anywhere}}}, nil, []step{
			{d: in, p: tcp(outside, 1, guest, 0, syn), want: AllowNew},
			{d: in, p: tcp(outside, 1, guest, 65535, syn), want: AllowNew},
			{d: in, p: udp(outside, 1, guest, 1), want: DropSecurityGroup},
		}},
		{"udp single port", Policy{Ingress: []Rule{{Proto: ProtoUDP, FromPort: 53, ToPort: 53, Prefix: pfx("10.0.0.0/16")}}}, nil, []step{
			{d: in, p: udp(member, 3000, guest, 53), want: AllowNew},
			{d: in, p: udp(member, 3000, guest, 54), want: DropSecurityGroup},
			{d: in, p: udp(outside, 3000, guest, 53), want: DropSecurityGroup},
			{d: in, p: tcp(member, 3000, guest, 53, syn), want: DropSecurityGroup},
		}},
		{"icmp echo only, any code", Policy{Ingress: []Rule{{Proto: ProtoICMP, FromPort: 8, ToPort: -1, Prefix: anywhere}}}, nil, []step{
			{d: in, p: icmp(outside, guest, icmpEcho, 0, 9), want: AllowNew},
			{d: out, p: icmp(guest, outside, icmpEchoReply, 0, 9), want: AllowTracked},
			{d: in, p: icmp(outside, guest, icmpTimestamp, 0, 9), want: DropSecurityGroup},
			{d: in, p: icmp(outside, guest, icmpUnreachable, 3, 0), want: DropSecurityGroup},
		}},
		{"icmp type and code", Policy{Ingress: []Rule{{Proto: ProtoICMP, FromPort: 3, ToPort: 4, Prefix: anywhere}}}, nil, []step{
			{d: in, p: icmp(router, guest, icmpUnreachable, 4, 0), want: AllowRule},
			{d: in, p: icmp(router, guest, icmpUnreachable, 3, 0), want: DropSecurityGroup},
			{d: in, p: icmp(router, guest, icmpTimeExceeded, 4, 0), want: DropSecurityGroup},
		}},
		{"icmp all", Policy{Ingress: []Rule{{Proto: ProtoICMP, FromPort: -1, ToPort: -1, Prefix: anywhere}}}, nil, []step{
			{d: in, p: icmp(outside, guest, icmpEcho, 0, 1), want: AllowNew},
			{d: in, p: icmp(outside, guest, icmpTimestamp, 0, 1), want: AllowNew},
			{d: in, p: icmp(router, guest, icmpTimeExceeded, 0, 0), want: AllowRule},
			{d: in, p: icmp(router, guest, 9, 0, 0), want: AllowRule}, // router advertisement: stateless
			{d: in, p: tcp(outside, 1, guest, 1, syn), want: DropSecurityGroup},
		}},
		{"all protocols from a CIDR", Policy{Ingress: []Rule{{Proto: ProtoAll, FromPort: 22, ToPort: 22, Prefix: pfx("192.0.2.0/24")}}}, nil, []step{
			{d: in, p: tcp(outside, 1, guest, 9999, syn), want: AllowNew}, // ports ignored for all
			{d: in, p: udp(outside, 1, guest, 9999), want: AllowNew},
			{d: in, p: proto(47, outside, guest), want: AllowNew},
			{d: in, p: tcp(other, 1, guest, 22, syn), want: DropSecurityGroup},
		}},
		{"other protocol by number", Policy{Ingress: []Rule{{Proto: 47, FromPort: 5, ToPort: 1, Prefix: anywhere}}}, nil, []step{
			{d: in, p: proto(47, outside, guest), want: AllowNew},
			{d: in, p: proto(50, outside, guest), want: DropSecurityGroup},
			{d: out, p: proto(47, guest, outside), want: AllowTracked},
		}},
		{"a host prefix", Policy{Ingress: []Rule{{Proto: ProtoTCP, FromPort: 22, ToPort: 22, Prefix: pfx("192.0.2.7/32")}}}, nil, []step{
			{d: in, p: tcp(outside, 1, guest, 22, syn), want: AllowNew},
			{d: in, p: tcp(netip.MustParseAddr("192.0.2.8"), 1, guest, 22, syn), want: DropSecurityGroup},
		}},
		{"an unmasked prefix is masked", Policy{Ingress: []Rule{{Proto: ProtoTCP, FromPort: 22, ToPort: 22, Prefix: pfx("192.0.2.99/24")}}}, nil, []step{
			{d: in, p: tcp(outside, 1, guest, 22, syn), want: AllowNew},
		}},
		{"CIDR and group sources together", Policy{Ingress: []Rule{
			{Proto: ProtoTCP, FromPort: 22, ToPort: 22, Prefix: pfx("192.0.2.0/24")},
			{Proto: ProtoTCP, FromPort: 5432, ToPort: 5432, Group: "sg-default"},
		}}, []netip.Addr{member}, []step{
			{d: in, p: tcp(outside, 1, guest, 22, syn), want: AllowNew},
			{d: in, p: tcp(outside, 1, guest, 5432, syn), want: DropSecurityGroup},
			{d: in, p: tcp(member, 1, guest, 5432, syn), want: AllowNew},
			{d: in, p: tcp(member, 1, guest, 22, syn), want: DropSecurityGroup},
			{d: in, p: tcp(neighbor, 1, guest, 5432, syn), want: DropSecurityGroup},
		}},
		{"an IPv6 prefix matches no IPv4 peer", Policy{Ingress: []Rule{{Proto: ProtoAll, Prefix: pfx("::/0")}}}, nil, []step{
			{d: in, p: tcp(outside, 1, guest, 22, syn), want: DropSecurityGroup},
		}},
		{"egress restricted by port and group", Policy{Egress: []Rule{
			{Proto: ProtoTCP, FromPort: 443, ToPort: 443, Prefix: anywhere},
			{Proto: ProtoUDP, FromPort: 53, ToPort: 53, Group: "sg-default"},
		}}, []netip.Addr{member}, []step{
			{d: out, p: tcp(guest, 40000, outside, 80, syn), want: DropSecurityGroup},
			{d: out, p: tcp(guest, 40001, outside, 443, syn), want: AllowNew},
			{d: out, p: udp(guest, 40000, member, 53), want: AllowNew},
			{d: out, p: udp(guest, 40000, outside, 53), want: DropSecurityGroup},
			{d: out, p: icmp(guest, outside, icmpEcho, 0, 1), want: DropSecurityGroup},
		}},
		{"replies to an allowed inbound flow pass without egress rules", Policy{Ingress: tcp80.Ingress}, nil, []step{
			{d: in, p: tcp(outside, 50000, guest, 80, syn), want: AllowNew},
			{d: out, p: tcp(guest, 80, outside, 50000, synack), want: AllowTracked},
			{d: in, p: tcp(outside, 50000, guest, 80, ack), want: AllowTracked},
			{d: out, p: tcp(guest, 80, outside, 50000, ack|FlagPSH), want: AllowTracked},
			// The guest cannot use the flow to open others.
			{d: out, p: tcp(guest, 80, outside, 50001, syn), want: DropSecurityGroup},
			{d: out, p: tcp(guest, 81, outside, 50000, synack), want: DropSecurityGroup},
		}},
		{"replies to an allowed outbound flow pass without ingress rules", newGroup, nil, []step{
			{d: out, p: udp(guest, 40000, outside, 53), want: AllowNew},
			{d: in, p: udp(outside, 53, guest, 40000), want: AllowTracked},
			{d: out, p: icmp(guest, outside, icmpEcho, 0, 77), want: AllowNew},
			{d: in, p: icmp(outside, guest, icmpEchoReply, 0, 77), want: AllowTracked},
			{d: out, p: icmp(guest, outside, icmpTimestamp, 0, 78), want: AllowNew},
			{d: in, p: icmp(outside, guest, icmpTimestampReply, 0, 78), want: AllowTracked},
			{d: out, p: proto(47, guest, outside), want: AllowNew},
			{d: in, p: proto(47, outside, guest), want: AllowTracked},
		}},
		{"unsolicited inbound is denied", newGroup, nil, []step{
			{d: out, p: udp(guest, 40000, outside, 53), want: AllowNew},
			{d: in, p: udp(outside, 54, guest, 40000), want: DropSecurityGroup},      // other peer port
			{d: in, p: udp(other, 53, guest, 40000), want: DropSecurityGroup},        // other peer
			{d: in, p: udp(outside, 53, guest, 40001), want: DropSecurityGroup},      // other local port
			{d: in, p: tcp(outside, 53, guest, 40000, ack), want: DropSecurityGroup}, // other protocol
			{d: out, p: icmp(guest, outside, icmpEcho, 0, 77), want: AllowNew},
			{d: in, p: icmp(outside, guest, icmpEchoReply, 0, 78), want: DropSecurityGroup}, // other id
			{d: in, p: icmp(other, guest, icmpEchoReply, 0, 77), want: DropSecurityGroup},   // other peer
			// A request from the peer with the guest's id is not a reply.
			{d: in, p: icmp(outside, guest, icmpEcho, 0, 77), want: DropSecurityGroup},
			{d: in, p: proto(47, outside, guest), want: DropSecurityGroup},
		}},
		{"rule removed: new flows denied, the tracked one continues", tcp80, nil, []step{
			{d: in, p: tcp(outside, 50000, guest, 80, syn), want: AllowNew},
			{d: out, p: tcp(guest, 80, outside, 50000, synack), want: AllowTracked},
			{d: in, p: tcp(outside, 50000, guest, 80, ack), want: AllowTracked},
			{policy: &newGroup},
			{at: 100, d: in, p: tcp(outside, 50000, guest, 80, ack|FlagPSH), want: AllowTracked},
			{at: 100, d: out, p: tcp(guest, 80, outside, 50000, ack), want: AllowTracked},
			{at: 100, d: in, p: tcp(outside, 50001, guest, 80, syn), want: DropSecurityGroup},
			{at: 100, d: in, p: tcp(other, 50000, guest, 80, syn), want: DropSecurityGroup},
			{policy: &tcp80},
			{at: 100, d: in, p: tcp(outside, 50001, guest, 80, syn), want: AllowNew},
		}},
		{"rule added: allows at once", newGroup, nil, []step{
			{d: in, p: tcp(outside, 50000, guest, 80, syn), want: DropSecurityGroup},
			{policy: &tcp80},
			{d: in, p: tcp(outside, 50000, guest, 80, syn), want: AllowNew},
		}},
		{"TCP close, then a new SYN is judged again", tcp80, nil, []step{
			{d: in, p: tcp(outside, 50000, guest, 80, syn), want: AllowNew},
			{d: out, p: tcp(guest, 80, outside, 50000, synack), want: AllowTracked},
			{d: in, p: tcp(outside, 50000, guest, 80, ack), want: AllowTracked},
			{d: in, p: tcp(outside, 50000, guest, 80, finack), want: AllowTracked},
			{d: out, p: tcp(guest, 80, outside, 50000, finack), want: AllowTracked},
			{d: in, p: tcp(outside, 50000, guest, 80, ack), want: AllowTracked},
			{at: 1, d: in, p: tcp(outside, 50000, guest, 80, syn), want: AllowNew},
			{at: 1, d: out, p: tcp(guest, 80, outside, 50000, rstack), want: AllowTracked},
			{policy: &newGroup},
			{at: 2, d: in, p: tcp(outside, 50000, guest, 80, syn), want: DropSecurityGroup},
			// Strays of the closed connection still pass until it expires.
			{at: 2, d: in, p: tcp(outside, 50000, guest, 80, ack), want: AllowTracked},
			{at: 12, d: in, p: tcp(outside, 50000, guest, 80, ack), want: DropSecurityGroup},
		}},
		{"a SYN on an established flow does not reset it", tcp80, nil, []step{
			{d: in, p: tcp(outside, 50000, guest, 80, syn), want: AllowNew},
			{d: out, p: tcp(guest, 80, outside, 50000, synack), want: AllowTracked},
			{d: in, p: tcp(outside, 50000, guest, 80, ack), want: AllowTracked},
			{policy: &newGroup},
			{d: in, p: tcp(outside, 50000, guest, 80, syn), want: AllowTracked},
		}},
		{"RST of an unknown flow: the rules judge it, nothing is tracked", tcp80, nil, []step{
			{d: in, p: tcp(outside, 50000, guest, 80, rst), want: AllowRule},
			{d: out, p: tcp(guest, 80, outside, 50000, rstack), want: DropSecurityGroup},
			{d: in, p: tcp(outside, 50000, guest, 81, rst), want: DropSecurityGroup},
		}},
		{"mid-stream segment of an unknown flow is picked up if the rules allow", tcp80, nil, []step{
			{d: in, p: tcp(outside, 50000, guest, 80, ack|FlagPSH), want: AllowNew},
			{d: out, p: tcp(guest, 80, outside, 50000, ack), want: AllowTracked},
			{d: in, p: tcp(outside, 50001, guest, 81, ack), want: DropSecurityGroup},
			// Picked up from the side the rules allow.
			{d: in, p: tcp(outside, 22, guest, 40000, ack), want: DropSecurityGroup},
		}},
		{"malformed TCP flags", Policy{Ingress: []Rule{{Proto: ProtoAll, Prefix: anywhere}}}, nil, []step{
			{d: in, p: tcp(outside, 1, guest, 80, 0), want: DropMalformed},
			{d: in, p: tcp(outside, 1, guest, 80, FlagFIN), want: DropMalformed},
			{d: in, p: tcp(outside, 1, guest, 80, FlagSYN|FlagFIN), want: DropMalformed},
			{d: in, p: tcp(outside, 1, guest, 80, FlagSYN|FlagRST), want: DropMalformed},
			{d: in, p: tcp(outside, 1, guest, 80, FlagFIN|FlagPSH|0x20), want: DropMalformed}, // Xmas
		}},
		{"not IPv4", defaultGroup, nil, []step{
			{d: out, p: udp(guest, 1, netip.MustParseAddr("2001:db8::1"), 53), want: DropMalformed},
			{d: out, p: udp(netip.Addr{}, 1, outside, 53), want: DropMalformed},
			{d: out, p: udp(netip.MustParseAddr("::ffff:10.0.0.5"), 1, outside, 53), want: DropMalformed},
		}},
		{"ICMP errors about a tracked flow pass", newGroup, nil, []step{
			{d: out, p: udp(guest, 40000, outside, 33434), want: AllowNew},
			{d: in, p: icmpErr(router, guest, icmpTimeExceeded, 0, udp(guest, 40000, outside, 33434)), want: AllowRelated},
			{d: in, p: icmpErr(outside, guest, icmpUnreachable, 3, udp(guest, 40000, outside, 33434)), want: AllowRelated},
			// Not about a tracked flow, or not to its sender.
			{d: in, p: icmpErr(router, guest, icmpUnreachable, 3, udp(guest, 40001, outside, 33434)), want: DropSecurityGroup},
			{d: in, p: icmpErr(router, guest, icmpUnreachable, 3, udp(member, 40000, outside, 33434)), want: DropSecurityGroup},
			{d: in, p: icmp(router, guest, icmpUnreachable, 3, 0), want: DropSecurityGroup},
			// About a tracked ping and a tracked TCP connection.
			{d: out, p: icmp(guest, outside, icmpEcho, 0, 5), want: AllowNew},
			{d: in, p: icmpErr(router, guest, icmpUnreachable, 1, icmp(guest, outside, icmpEcho, 0, 5)), want: AllowRelated},
			{d: out, p: tcp(guest, 40000, outside, 80, syn), want: AllowNew},
			{d: in, p: icmpErr(router, guest, icmpUnreachable, 4, tcp(guest, 40000, outside, 80, syn)), want: AllowRelated},
		}},
		{"the guest's ICMP errors about an inbound flow pass", tcp80, nil, []step{
			{d: in, p: udp(outside, 53, guest, 9999), want: DropSecurityGroup},
			{policy: &Policy{Ingress: []Rule{{Proto: ProtoUDP, FromPort: 9999, ToPort: 9999, Prefix: anywhere}}}},
			{d: in, p: udp(outside, 53, guest, 9999), want: AllowNew},
			{d: out, p: icmpErr(guest, outside, icmpUnreachable, 3, udp(outside, 53, guest, 9999)), want: AllowRelated},
			{d: out, p: icmpErr(guest, other, icmpUnreachable, 3, udp(outside, 53, guest, 9999)), want: DropSecurityGroup},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := mustNew(t, Config{Members: newGroups("sg-default", c.members...)}, c.policy)
			for i, s := range c.steps {
				s.run(t, i, f)
			}
		})
	}
}

func TestGroupMembershipChangesApplyToNewFlows(t *testing.T) {
	g := newGroups("sg-default", guest)
	f := mustNew(t, Config{Members: g}, defaultGroup)
	steps := []step{
		{d: Ingress, p: udp(member, 1, guest, 2), want: DropSecurityGroup},
	}
	for i, s := range steps {
		s.run(t, i, f)
	}
	g.add("sg-default", member)
	step{d: Ingress, p: udp(member, 1, guest, 2), want: AllowNew}.run(t, 1, f)
	g.remove("sg-default", member)
	step{d: Ingress, p: udp(member, 1, guest, 2), want: AllowTracked}.run(t, 2, f)
	step{d: Ingress, p: udp(member, 3, guest, 2), want: DropSecurityGroup}.run(t, 3, f)

	// Without Members, group rules match nothing.
	f = mustNew(t, Config{}, defaultGroup)
	step{d: Ingress, p: udp(member, 1, guest, 2), want: DropSecurityGroup}.run(t, 4, f)
}

func TestPolicyValidation(t *testing.T) {
	bad := []Rule{
		{Proto: ProtoTCP, FromPort: 80, ToPort: 80},
		{Proto: ProtoTCP, FromPort: 80, ToPort: 80, Prefix: anywhere, Group: "sg-1"},
		{Proto: ProtoTCP, FromPort: 81, ToPort: 80, Prefix: anywhere},
		{Proto: ProtoTCP, FromPort: -1, ToPort: 80, Prefix: anywhere},
		{Proto: ProtoUDP, FromPort: 0, ToPort: 65536, Prefix: anywhere},
		{Proto: ProtoICMP, FromPort: -1, ToPort: 3, Prefix: anywhere},
		{Proto: ProtoICMP, FromPort: 256, ToPort: -1, Prefix: anywhere},
		{Proto: ProtoICMP, FromPort: 3, ToPort: -2, Prefix: anywhere},
		{Proto: ProtoAll, Prefix: pfx("::ffff:10.0.0.0/104")},
	}
	for _, r := range bad {
		for _, p := range []Policy{{Ingress: []Rule{r}}, {Egress: []Rule{r}}} {
			if _, err := New(Config{}, p); !errors.Is(err, ErrInvalidRule) {
				t.Errorf("New(%+v) = %v, want ErrInvalidRule", p, err)
			}
		}
	}
	f := mustNew(t, Config{}, newGroup)
	if err := f.SetPolicy(Policy{Ingress: bad[:1]}); !errors.Is(err, ErrInvalidRule) {
		t.Fatalf("SetPolicy = %v", err)
	}
	// The old rules stay.
	step{d: Egress, p: udp(guest, 1, outside, 2), want: AllowNew}.run(t, 0, f)

	good := []Rule{
		{Proto: ProtoTCP, FromPort: 0, ToPort: 65535, Prefix: anywhere},
		{Proto: ProtoTCP, FromPort: -1, ToPort: -1, Group: "sg-1"},
		{Proto: ProtoICMP, FromPort: -1, ToPort: -1, Prefix: anywhere},
		{Proto: ProtoICMP, FromPort: 255, ToPort: 255, Prefix: anywhere},
		{Proto: ProtoAll, FromPort: 12345, ToPort: -7, Prefix: anywhere},
		{Proto: 132, Prefix: pfx("2001:db8::/32")},
	}
	if _, err := New(Config{}, Policy{Ingress: good, Egress: good}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{MaxFlows: -1}, Policy{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("MaxFlows -1: %v", err)
	}
	if _, err := New(Config{Timeouts: Timeouts{UDP: -time.Second}}, Policy{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("negative timeout: %v", err)
	}
}
