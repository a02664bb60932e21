package filter

import (
	"sync"
	"sync/atomic"
	"testing"
)

const ms = sec / 1000

func TestLimiter(t *testing.T) {
	type try struct {
		at    int64 // ns
		bytes int
		n     int // packets tried at once
		want  int // how many pass
	}
	cases := []struct {
		name  string
		lim   Limits
		tries []try
	}{
		{"zero limits: unlimited", Limits{}, []try{{0, 1 << 30, 100000, 100000}}},
		{"packets: default burst is 10 ms", Limits{PacketsPerSec: 1000}, []try{
			{0, 100, 15, 10},
			{ms / 2, 100, 1, 0},
			{ms, 100, 2, 1},
			{11 * ms, 100, 20, 10},
			{1011 * ms, 100, 2000, 10},
		}},
		{"packets: burst of one", Limits{PacketsPerSec: 2, BurstPackets: 1}, []try{
			{0, 1, 3, 1},
			{sec / 2, 1, 3, 1},
			{sec/2 + sec/4, 1, 1, 0},
			{sec, 1, 1, 1},
		}},
		{"bits: default burst is at least 64 KiB", Limits{BitsPerSec: 8e6}, []try{
			{0, 1500, 50, 43},    // 43 × 1500 ≤ 65536
			{ms / 4, 1500, 1, 0}, // 1036 left + 250 refilled
			{1 * ms, 1500, 2, 1}, // 1036 + 1000
			{3 * ms, 1500, 2, 1}, // 536 + 2000
			{sec, 1500, 100, 43},
		}},
		{"bits: a packet larger than the burst passes when full, then leaves debt", Limits{BitsPerSec: 8e6, BurstBytes: 1000}, []try{
			{0, 5000, 1, 1},
			{4 * ms, 1, 1, 0},
			{5 * ms, 1, 1, 1},
			{5 * ms, 1000, 1, 0},
			{6 * ms, 1000, 1, 1},
		}},
		{"bits: negative and huge sizes are clamped", Limits{BitsPerSec: 8e9, BurstBytes: 1 << 20}, []try{
			{0, -5, 1, 1},
			{0, 1 << 40, 1, 0}, // charged 16 MiB: more than the burst, bucket not full
			{sec, 1 << 40, 1, 1},
		}},
		{"both: the tighter wins", Limits{PacketsPerSec: 100, BurstPackets: 5, BitsPerSec: 8e6, BurstBytes: 3000}, []try{
			{0, 1000, 10, 3},  // bits run out first
			{sec, 100, 10, 5}, // packets run out first
		}},
		{"a slow clock in one queue is tolerated", Limits{PacketsPerSec: 1000, BurstPackets: 1}, []try{
			{10 * ms, 1, 1, 1},
			{9 * ms, 1, 1, 0}, // a queue that read the clock earlier: bucket not full
			{11 * ms, 1, 1, 1},
		}},
		{"a clock far in the past does not lock the bucket up", Limits{PacketsPerSec: 1000, BurstPackets: 1}, []try{
			{100 * sec, 1, 1, 1},
			{1 * sec, 1, 1, 1},
			{1 * sec, 1, 1, 0},
		}},
		{"huge rates and bursts saturate", Limits{PacketsPerSec: 1 << 62, BitsPerSec: 1 << 63, BurstPackets: 1 << 63, BurstBytes: 1 << 63}, []try{
			{0, 65536, 1000, 1000},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := NewLimiter(c.lim)
			for i, tr := range c.tries {
				got := 0
				for range tr.n {
					if l.Allow(tr.bytes, tr.at) {
						got++
					}
				}
				if got != tr.want {
					t.Fatalf("try %d at %v ms: %d of %d passed, want %d", i, float64(tr.at)/float64(ms), got, tr.n, tr.want)
				}
			}
		})
	}
}

// TestLimiterRefusedNotCharged: a packet the bit bucket refuses gives its
// packet token back.
func TestLimiterRefusedNotCharged(t *testing.T) {
	l := NewLimiter(Limits{PacketsPerSec: 1000, BurstPackets: 2, BitsPerSec: 8000, BurstBytes: 100})
	if !l.Allow(100, 0) {
		t.Fatal("first packet refused")
	}
	for range 10 {
		if l.Allow(100, 0) {
			t.Fatal("bit bucket should be empty")
		}
	}
	// The packet bucket still has its second token: a tiny packet passes
	// once the bit bucket holds a few bits.
	if !l.Allow(1, 2*ms) {
		t.Fatal("packet bucket was charged for refused packets")
	}
}

// TestLimiterConcurrent shares a limiter between four queues and a clock
// they all advance: the number passed is the burst plus the rate over the
// elapsed time, within a tiny margin.
func TestLimiterConcurrent(t *testing.T) {
	const (
		pps   = 10000
		burst = 100
		per   = 50000
		step  = int64(1000) // ns per attempt
	)
	l := NewLimiter(Limits{PacketsPerSec: pps, BurstPackets: burst})
	var clock atomic.Int64
	var passed atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				if l.Allow(64, clock.Add(step)) {
					passed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := 4 * per * step
	want := burst + elapsed*pps/sec
	if got := passed.Load(); got < want-want/100 || got > want+want/100 {
		t.Fatalf("passed %d, want %d ± 1%%", got, want)
	}
}

// TestFilterRateLimits: the limits apply per direction to every packet
// the security groups allow, and to nothing they drop; a packet refused
// for the rate starts no flow and moves no state.
func TestFilterRateLimits(t *testing.T) {
	f := mustNew(t, Config{
		IngressLimits: Limits{PacketsPerSec: 10, BurstPackets: 2},
		EgressLimits:  Limits{PacketsPerSec: 10, BurstPackets: 3},
	}, Policy{Ingress: []Rule{{Proto: ProtoTCP, FromPort: 22, ToPort: 22, Prefix: anywhere}}, Egress: newGroup.Egress})

	// Denied packets do not use the ingress budget.
	for range 10 {
		step{d: Ingress, p: udp(outside, 1, guest, 53), want: DropSecurityGroup}.run(t, 0, f)
	}
	steps := []step{
		{d: Ingress, p: tcp(outside, 9, guest, 22, syn), want: AllowNew},
		{d: Egress, p: tcp(guest, 22, outside, 9, synack), want: AllowTracked},
		{d: Ingress, p: tcp(outside, 9, guest, 22, ack), want: AllowTracked},
		{d: Ingress, p: tcp(outside, 9, guest, 22, rst), want: DropRateLimit},
		{d: Ingress, p: tcp(outside, 10, guest, 22, syn), want: DropRateLimit},
		{d: Egress, p: udp(guest, 1, outside, 53), want: AllowNew},
		{d: Egress, p: udp(guest, 2, outside, 53), want: AllowNew},
		{d: Egress, p: udp(guest, 3, outside, 53), want: DropRateLimit},
		{d: Egress, p: tcp(guest, 22, outside, 9, ack), want: DropRateLimit},
	}
	for i, s := range steps {
		s.run(t, i, f)
	}
	// The refused RST did not close the flow; the refused SYN started none.
	if st, ok := f.state(Ingress, tcp(outside, 9, guest, 22, ack)); !ok || st != tcpEstablished {
		t.Fatalf("flow after a refused RST: %s %v", st, ok)
	}
	if _, ok := f.state(Ingress, tcp(outside, 10, guest, 22, syn)); ok {
		t.Fatal("a refused SYN started a flow")
	}
	if _, ok := f.state(Egress, udp(guest, 3, outside, 53)); ok {
		t.Fatal("a refused datagram started a flow")
	}
	c := f.Counters()
	if c.DropRateLimit != 4 || c.DropSecurityGroup != 10 || c.Entries != 3 {
		t.Fatalf("counters %+v", c)
	}
	// A second later the buckets are full again.
	step{at: 1, d: Ingress, p: tcp(outside, 9, guest, 22, ack), want: AllowTracked}.run(t, 0, f)
	// Lifting the limits.
	f.SetLimits(Limits{}, Limits{})
	for range 100 {
		step{at: 1, d: Egress, p: tcp(guest, 22, outside, 9, ack), want: AllowTracked}.run(t, 0, f)
	}
}
