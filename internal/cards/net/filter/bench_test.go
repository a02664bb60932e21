package filter

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// established returns a filter with an established outbound TCP flow and
// its next data packet each way.
func established(tb testing.TB, cfg Config) (f *Filter, out, in *Packet) {
	f = mustNew(tb, cfg, defaultGroup)
	out = tcp(guest, 40000, outside, 443, ack|FlagPSH)
	in = tcp(outside, 443, guest, 40000, ack)
	for _, s := range []step{
		{d: Egress, p: tcp(guest, 40000, outside, 443, syn)},
		{d: Ingress, p: tcp(outside, 443, guest, 40000, synack)},
		{d: Egress, p: out},
	} {
		if v := f.Check(s.d, s.p, 0); !v.Allow {
			tb.Fatalf("handshake: %s", v.Reason)
		}
	}
	return f, out, in
}

// TestNoAllocs: nothing on the per-packet path allocates once a flow is
// tracked, nor does a drop, nor (once the table has grown to its steady
// size) a new flow.
func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	f, out, in := established(t, Config{EgressLimits: Limits{PacketsPerSec: 1e9, BitsPerSec: 1e12}})
	ping := icmp(guest, outside, icmpEcho, 0, 1)
	pong := icmp(outside, guest, icmpEchoReply, 0, 1)
	f.Check(Egress, ping, 0)
	related := icmpErr(router, guest, icmpUnreachable, 4, tcp(guest, 40000, outside, 443, ack))
	denied := udp(outside, 1, guest, 2)
	malformed := tcp(outside, 1, guest, 2, 0)
	now := int64(0)
	for name, fn := range map[string]func(){
		"tracked egress":  func() { f.Check(Egress, out, now) },
		"tracked ingress": func() { f.Check(Ingress, in, now) },
		"echo reply":      func() { f.Check(Ingress, pong, now) },
		"icmp error":      func() { f.Check(Ingress, related, now) },
		"denied":          func() { f.Check(Ingress, denied, now) },
		"malformed":       func() { f.Check(Ingress, malformed, now) },
		"counters":        func() { f.Counters() },
	} {
		if n := testing.AllocsPerRun(1000, fn); n != 0 {
			t.Errorf("%s: %v allocations per packet", name, n)
		}
	}

	// New flows, 1 µs apart, idle out after 2 ms: the table turns over
	// and, once grown, allocates no more.
	f = mustNew(t, Config{MaxFlows: 8192, Timeouts: Timeouts{UDP: 2 * time.Millisecond}}, newGroup)
	p := udp(guest, 0, outside, 53)
	i := 0
	next := func() {
		i++
		now += 1000
		p.SrcPort = uint16(i)
		p.Dst = netip.AddrFrom4([4]byte{192, 0, 2, byte(i >> 16)})
		if v := f.Check(Egress, p, now); !v.Allow {
			t.Fatalf("new flow %d: %s", i, v.Reason)
		}
	}
	for range 50000 {
		next()
	}
	if n := testing.AllocsPerRun(10000, next); n != 0 {
		t.Errorf("new flow: %v allocations per packet", n)
	}
}

// BenchmarkTracked is the cost of one packet of an established flow.
func BenchmarkTracked(b *testing.B) {
	f, out, in := established(b, Config{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i&1 == 0 {
			f.Check(Egress, out, int64(i))
		} else {
			f.Check(Ingress, in, int64(i))
		}
	}
}

// BenchmarkTrackedLimited adds both token buckets.
func BenchmarkTrackedLimited(b *testing.B) {
	f, out, _ := established(b, Config{EgressLimits: Limits{PacketsPerSec: 1e12, BitsPerSec: 1e15}})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if !f.Check(Egress, out, int64(i)).Allow {
			b.Fatal("limited")
		}
	}
}

// BenchmarkTrackedParallel runs one established flow per goroutine
// against a shared filter, as the queues of an interface do.
func BenchmarkTrackedParallel(b *testing.B) {
	f := mustNew(b, Config{}, newGroup)
	var port atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		p := tcp(guest, uint16(port.Add(1)), outside, 443, syn)
		f.Check(Egress, p, 0)
		p.TCPFlags = ack
		for i := int64(0); pb.Next(); i++ {
			f.Check(Egress, p, i)
		}
	})
}

// BenchmarkNewFlow is the cost of the first packet of a flow, judged by a
// CIDR rule and a group rule, in a table turning over: flows 1 µs apart
// idle out after 2 ms and are reclaimed lazily.
func BenchmarkNewFlow(b *testing.B) {
	g := newGroups("sg-db", member)
	f := mustNew(b, Config{Members: g, Timeouts: Timeouts{UDP: 2 * time.Millisecond}}, Policy{Egress: []Rule{
		{Proto: ProtoTCP, FromPort: 5432, ToPort: 5432, Group: "sg-db"},
		{Proto: ProtoUDP, FromPort: 53, ToPort: 53, Prefix: pfx("192.0.0.0/8")},
	}})
	p := udp(guest, 0, outside, 53)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.SrcPort = uint16(i)
		p.Dst = netip.AddrFrom4([4]byte{192, 0, byte(i >> 24), byte(i >> 16)})
		if !f.Check(Egress, p, int64(i)*1000).Allow {
			b.Fatal("refused")
		}
	}
}

// BenchmarkDenied is the cost of a packet no rule allows (a scan, a flood).
func BenchmarkDenied(b *testing.B) {
	f := mustNew(b, Config{Members: newGroups("sg-default", member)}, defaultGroup)
	p := tcp(outside, 1, guest, 22, syn)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.SrcPort = uint16(i)
		f.Check(Ingress, p, int64(i))
	}
}

// BenchmarkLimiter is one Allow on a limiter with both buckets.
func BenchmarkLimiter(b *testing.B) {
	l := NewLimiter(Limits{PacketsPerSec: 1e12, BitsPerSec: 1e15})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		l.Allow(1500, int64(i))
	}
}
