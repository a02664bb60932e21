package filter

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestTCPStates walks connections through the state machine and checks
// the state and the idle timeout after every packet.
func TestTCPStates(t *testing.T) {
	to := DefaultTimeouts()
	type pk struct {
		d     Dir
		flags TCPFlags
		state tcpState
		idle  time.Duration
	}
	// The guest opens to outside:80 (origin Egress) unless the first
	// packet is ingress.
	cases := []struct {
		name  string
		steps []pk
	}{
		{"open and close, guest closes first", []pk{
			{Egress, syn, tcpSynSent, to.TCPTransitory},
			{Egress, syn, tcpSynSent, to.TCPTransitory}, // retransmit
			{Ingress, synack, tcpSynRecv, to.TCPTransitory},
			{Egress, ack, tcpEstablished, to.TCPEstablished},
			{Ingress, ack | FlagPSH, tcpEstablished, to.TCPEstablished},
			{Egress, finack, tcpFinWait, to.TCPTransitory},
			{Ingress, ack, tcpFinWait, to.TCPTransitory},
			{Ingress, ack | FlagPSH, tcpFinWait, to.TCPTransitory}, // half-closed, still sending
			{Ingress, finack, tcpTimeWait, to.TCPClosed},
			{Egress, ack, tcpTimeWait, to.TCPClosed},
		}},
		{"peer closes first", []pk{
			{Egress, syn, tcpSynSent, to.TCPTransitory},
			{Ingress, synack, tcpSynRecv, to.TCPTransitory},
			{Egress, ack, tcpEstablished, to.TCPEstablished},
			{Ingress, finack, tcpCloseWait, to.TCPTransitory},
			{Egress, ack, tcpCloseWait, to.TCPTransitory},
			{Egress, finack, tcpTimeWait, to.TCPClosed},
		}},
		{"refused with RST", []pk{
			{Egress, syn, tcpSynSent, to.TCPTransitory},
			{Ingress, rstack, tcpClosed, to.TCPClosed},
		}},
		{"reset when established", []pk{
			{Egress, syn, tcpSynSent, to.TCPTransitory},
			{Ingress, synack, tcpSynRecv, to.TCPTransitory},
			{Egress, ack, tcpEstablished, to.TCPEstablished},
			{Egress, rst, tcpClosed, to.TCPClosed},
			{Ingress, ack, tcpClosed, to.TCPClosed},
		}},
		{"simultaneous open", []pk{
			{Egress, syn, tcpSynSent, to.TCPTransitory},
			{Ingress, syn, tcpSynRecv, to.TCPTransitory},
			{Egress, synack, tcpSynRecv, to.TCPTransitory},
			{Ingress, synack, tcpSynRecv, to.TCPTransitory},
			{Egress, ack, tcpEstablished, to.TCPEstablished},
		}},
		{"picked up mid-stream", []pk{
			{Egress, ack, tcpEstablished, to.TCPEstablished},
			{Ingress, ack, tcpEstablished, to.TCPEstablished},
			{Ingress, finack, tcpCloseWait, to.TCPTransitory},
		}},
		{"picked up at the SYN-ACK", []pk{
			{Egress, synack, tcpSynRecv, to.TCPTransitory},
			{Ingress, ack, tcpEstablished, to.TCPEstablished},
		}},
		{"picked up at a FIN", []pk{
			{Egress, finack, tcpFinWait, to.TCPTransitory},
			{Ingress, finack, tcpTimeWait, to.TCPClosed},
		}},
		{"reopened after TIME_WAIT", []pk{
			{Egress, syn, tcpSynSent, to.TCPTransitory},
			{Ingress, synack, tcpSynRecv, to.TCPTransitory},
			{Egress, ack, tcpEstablished, to.TCPEstablished},
			{Egress, finack, tcpFinWait, to.TCPTransitory},
			{Ingress, finack, tcpTimeWait, to.TCPClosed},
			{Egress, syn, tcpSynSent, to.TCPTransitory},
			{Ingress, synack, tcpSynRecv, to.TCPTransitory},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := mustNew(t, Config{}, Policy{Egress: []Rule{{Proto: ProtoTCP, FromPort: 80, ToPort: 80, Prefix: anywhere}}})
			now := int64(1000) * sec
			for i, s := range c.steps {
				p := tcp(guest, 40000, outside, 80, s.flags)
				if s.d == Ingress {
					p = tcp(outside, 80, guest, 40000, s.flags)
				}
				now += sec
				if v := f.Check(s.d, p, now); !v.Allow {
					t.Fatalf("step %d: dropped: %s", i, v.Reason)
				}
				k, _ := keyFor(s.d, p.Proto, be32(p.Src.As4()), be32(p.Dst.As4()), p.SrcPort, p.DstPort, 0, 0)
				h := f.t.hash(&k)
				sh := f.t.shardOf(h)
				_, j := sh.findLocked(&k, uint32(h))
				if j < 0 {
					t.Fatalf("step %d: flow not tracked", i)
				}
				e := sh.entries[j]
				if e.state != s.state {
					t.Fatalf("step %d: state %s, want %s", i, e.state, s.state)
				}
				// TIME_WAIT and CLOSED are not refreshed by strays.
				if got := time.Duration(e.expires - now); got != s.idle && !(e.state.closing() && got < s.idle) {
					t.Fatalf("step %d: idle timeout %v, want %v", i, got, s.idle)
				}
			}
		})
	}
}

// TestIdleTimeouts expires flows on a fake clock: each flow passes just
// before its timeout and is forgotten at it, after which a reply is
// unsolicited.
func TestIdleTimeouts(t *testing.T) {
	to := DefaultTimeouts()
	cases := []struct {
		name  string
		open  []step // at seconds from 0; the last packet sets the idle time
		reply *Packet
		idle  func(Timeouts) time.Duration
	}{
		{"udp one way", []step{{d: Egress, p: udp(guest, 1, outside, 53)}}, udp(outside, 53, guest, 1), func(t Timeouts) time.Duration { return t.UDP }},
		{"udp one exchange", []step{
			{d: Egress, p: udp(guest, 1, outside, 53)},
			{d: Ingress, p: udp(outside, 53, guest, 1)},
		}, udp(outside, 53, guest, 1), func(t Timeouts) time.Duration { return t.UDP }},
		{"udp stream", []step{
			{d: Egress, p: udp(guest, 1, outside, 53)},
			{d: Ingress, p: udp(outside, 53, guest, 1)},
			{d: Egress, p: udp(guest, 1, outside, 53)},
			{d: Ingress, p: udp(outside, 53, guest, 1)},
		}, udp(outside, 53, guest, 1), func(t Timeouts) time.Duration { return t.UDPStream }},
		{"icmp echo", []step{{d: Egress, p: icmp(guest, outside, icmpEcho, 0, 3)}}, icmp(outside, guest, icmpEchoReply, 0, 3), func(t Timeouts) time.Duration { return t.ICMP }},
		{"other protocol", []step{{d: Egress, p: proto(47, guest, outside)}}, proto(47, outside, guest), func(t Timeouts) time.Duration { return t.Other }},
		{"tcp syn sent", []step{{d: Egress, p: tcp(guest, 1, outside, 80, syn)}}, tcp(outside, 80, guest, 1, synack), func(t Timeouts) time.Duration { return t.TCPTransitory }},
		{"tcp established", []step{
			{d: Egress, p: tcp(guest, 1, outside, 80, syn)},
			{d: Ingress, p: tcp(outside, 80, guest, 1, synack)},
			{d: Egress, p: tcp(guest, 1, outside, 80, ack)},
		}, tcp(outside, 80, guest, 1, ack), func(t Timeouts) time.Duration { return t.TCPEstablished }},
	}
	for _, custom := range []bool{false, true} {
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/custom=%v", c.name, custom), func(t *testing.T) {
				cfg := Config{}
				idle := c.idle(to)
				if custom {
					// Other than the defaults, as EC2 allows per interface.
					cfg.Timeouts = Timeouts{TCPEstablished: 60 * time.Second, UDP: 40 * time.Second, UDPStream: 60 * time.Second, ICMP: 5 * time.Second, Other: 7 * time.Second, TCPTransitory: 9 * time.Second}
					idle = c.idle(cfg.Timeouts)
				}
				// Two filters: one sees the reply just before the timeout,
				// the other at it.
				for _, late := range []bool{false, true} {
					f := mustNew(t, cfg, newGroup)
					var last int64
					for i, s := range c.open {
						last = int64(i) * sec
						if v := f.Check(s.d, s.p, last); !v.Allow {
							t.Fatalf("open %d: %s", i, v.Reason)
						}
					}
					at, want := last+int64(idle)-1, AllowTracked
					if late {
						at, want = last+int64(idle), DropSecurityGroup
					}
					if v := f.Check(Ingress, c.reply, at); v.Reason != want {
						t.Fatalf("reply at idle%+dns: %s, want %s", at-last-int64(idle), v.Reason, want)
					}
					if late {
						if c := f.Counters(); c.Expired != 1 || c.Entries != 0 {
							t.Fatalf("after expiry: %+v", c)
						}
					}
				}
			})
		}
	}
}

// TestExpire checks that Expire reclaims idle flows and keeps live ones.
func TestExpire(t *testing.T) {
	f := mustNew(t, Config{}, newGroup)
	for i := range 100 {
		f.Check(Egress, udp(guest, uint16(i), outside, 53), 0)
	}
	f.Check(Egress, tcp(guest, 1, outside, 80, syn), 0)
	if n := f.Expire(29 * sec); n != 0 {
		t.Fatalf("Expire before the timeout reclaimed %d", n)
	}
	if n := f.Expire(30 * sec); n != 100 {
		t.Fatalf("Expire reclaimed %d, want 100", n)
	}
	if c := f.Counters(); c.Entries != 1 || c.Expired != 100 || c.NewFlows != 101 {
		t.Fatalf("counters %+v", c)
	}
}

// TestTableFull fills a small table: the next new flow is refused and
// counted, tracked flows keep working both ways, and once flows expire or
// close new ones are admitted again.
func TestTableFull(t *testing.T) {
	const max = 4
	f := mustNew(t, Config{MaxFlows: max}, newGroup)
	for i := range max {
		if v := f.Check(Egress, tcp(guest, uint16(1000+i), outside, 80, syn), 0); v.Reason != AllowNew {
			t.Fatalf("flow %d: %s", i, v.Reason)
		}
	}
	for i := range 3 {
		if v := f.Check(Egress, udp(guest, uint16(i), outside, 53), sec); v.Reason != DropConntrackFull {
			t.Fatalf("extra flow: %s", v.Reason)
		}
	}
	if v := f.Check(Ingress, tcp(outside, 80, guest, 1000, synack), sec); v.Reason != AllowTracked {
		t.Fatalf("tracked reply: %s", v.Reason)
	}
	if v := f.Check(Egress, tcp(guest, 1000, outside, 80, ack), sec); v.Reason != AllowTracked {
		t.Fatalf("tracked: %s", v.Reason)
	}
	c := f.Counters()
	if c.Entries != max || c.Available != 0 || c.AllowanceExceeded != 3 {
		t.Fatalf("counters %+v", c)
	}
	// Closing a flow does not free its entry until TIME_WAIT ends, but a
	// SYN_SENT flow idle past its timeout makes room.
	f.Check(Egress, tcp(guest, 1001, outside, 80, rst), sec)
	if v := f.Check(Egress, udp(guest, 9, outside, 53), 2*sec); v.Reason != DropConntrackFull {
		t.Fatalf("while closing: %s", v.Reason)
	}
	if v := f.Check(Egress, udp(guest, 9, outside, 53), 11*sec); v.Reason != AllowNew {
		t.Fatalf("after the closed flow expired: %s", v.Reason)
	}
	if v := f.Check(Egress, udp(guest, 10, outside, 53), 121*sec); v.Reason != AllowNew {
		t.Fatalf("after the SYN_SENT flows expired: %s", v.Reason)
	}
	if c := f.Counters(); c.Entries > max || c.AllowanceExceeded != 4 {
		t.Fatalf("counters %+v", c)
	}
}

// TestTableBound sends far more distinct flows than the table holds, at
// one instant, through a table of several shards: it never holds more than
// MaxFlows, refuses the rest, and its memory stays within the bound.
func TestTableBound(t *testing.T) {
	const max = 20000
	f := mustNew(t, Config{MaxFlows: max}, Policy{Ingress: newGroup.Egress, Egress: newGroup.Egress})
	if len(f.t.shards) < 8 {
		t.Fatalf("%d shards", len(f.t.shards))
	}
	allowed := 0
	for i := range 5 * max {
		src := netip.AddrFrom4([4]byte{192, 0, byte(i >> 16), byte(i >> 8)})
		if f.Check(Ingress, udp(src, uint16(i), guest, 53), sec).Allow {
			allowed++
		}
	}
	c := f.Counters()
	if c.Entries > max || uint64(allowed) != c.Entries || c.AllowanceExceeded != uint64(5*max-allowed) {
		t.Fatalf("allowed %d, counters %+v", allowed, c)
	}
	// Uneven shards may refuse a little before the table is full.
	if allowed < max*9/10 {
		t.Fatalf("only %d of %d flows admitted", allowed, max)
	}
	entries, slots := 0, 0
	for i := range f.t.shards {
		s := &f.t.shards[i]
		entries += cap(s.entries)
		slots += len(s.index)
		if len(s.entries) > s.cap {
			t.Fatalf("shard %d holds %d > cap %d", i, len(s.entries), s.cap)
		}
	}
	if entries > max*3/2+16*len(f.t.shards) || slots > 4*entries+initialSlots*len(f.t.shards) {
		t.Fatalf("memory: %d entries, %d index slots for MaxFlows %d", entries, slots, max)
	}
	// All expire; the table fills again with new flows.
	for i := range max {
		src := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		if v := f.Check(Ingress, udp(src, 7, guest, 53), 40*sec); !v.Allow && v.Reason != DropConntrackFull {
			t.Fatalf("after expiry: %s", v.Reason)
		}
	}
	if c := f.Counters(); c.Entries > max || c.Entries < max*9/10 {
		t.Fatalf("after refill: %+v", c)
	}
}

// TestShardIndex exercises insertion and backward-shift deletion against
// a map, with a tiny index so that probe runs wrap and interleave.
func TestShardIndex(t *testing.T) {
	tb := newTable(1 << 20)
	tb.shards = tb.shards[:1]
	tb.shift = 64
	s := &tb.shards[0]
	s.cap = 300
	rng := rand.New(rand.NewPCG(1, 2))
	ref := map[flowKey]int64{}
	keys := make([]flowKey, 400)
	for i := range keys {
		keys[i] = flowKey{local: rng.Uint32() & 0xff, remote: 1, proto: 17}
		keys[i].lport = uint16(i)
	}
	for op := range 20000 {
		k := keys[rng.IntN(len(keys))]
		h := tb.hash(&k)
		if _, ok := ref[k]; ok && rng.IntN(2) == 0 {
			slot, j := s.findLocked(&k, uint32(h))
			if j < 0 {
				t.Fatalf("op %d: %v lost", op, k)
			}
			s.removeLocked(tb, slot, j)
			delete(ref, k)
		} else if !ok {
			e := s.insertLocked(tb, &k, uint32(h), 0)
			if e == nil {
				if len(ref) < s.cap {
					t.Fatalf("op %d: refused with %d entries", op, len(ref))
				}
				continue
			}
			s.setExpiry(e, int64(op+1))
			ref[k] = int64(op + 1)
		}
		if len(s.entries) != len(ref) || int(tb.count.Load()) != len(ref) {
			t.Fatalf("op %d: %d entries, count %d, want %d", op, len(s.entries), tb.count.Load(), len(ref))
		}
		if op%97 == 0 {
			for k, exp := range ref {
				_, j := s.findLocked(&k, uint32(tb.hash(&k)))
				if j < 0 || s.entries[j].expires != exp {
					t.Fatalf("op %d: %v not found or wrong entry", op, k)
				}
			}
		}
	}
	// A sweep removes exactly the expired entries.
	n := s.sweepLocked(tb, 10000)
	want := 0
	for k, exp := range ref {
		if exp <= 10000 {
			want++
			delete(ref, k)
		}
	}
	if n != want || len(s.entries) != len(ref) {
		t.Fatalf("sweep removed %d, want %d", n, want)
	}
	for k := range ref {
		if _, j := s.findLocked(&k, uint32(tb.hash(&k))); j < 0 {
			t.Fatalf("%v lost by the sweep", k)
		}
	}
}

// TestConcurrent runs queue goroutines against one filter while the
// policy and limits change; with -race it checks the locking, and the
// table must stay within its bound throughout.
func TestConcurrent(t *testing.T) {
	const max = 3000
	g := newGroups("sg-default", guest, member)
	f := mustNew(t, Config{MaxFlows: max, Members: g}, defaultGroup)
	var queues, ctl sync.WaitGroup
	stop := make(chan struct{})
	for q := range 4 {
		queues.Add(1)
		go func() {
			defer queues.Done()
			rng := rand.New(rand.NewPCG(uint64(q), 9))
			now := int64(0)
			for i := range 20000 {
				now += int64(rng.IntN(int(sec / 100)))
				port := uint16(rng.IntN(2000))
				peer := [...]netip.Addr{member, outside, neighbor}[rng.IntN(3)]
				switch rng.IntN(4) {
				case 0:
					f.Check(Egress, tcp(guest, port, peer, 80, [...]TCPFlags{syn, ack, finack, rst}[i%4]), now)
				case 1:
					f.Check(Ingress, tcp(peer, 80, guest, port, [...]TCPFlags{synack, ack, finack, rstack}[i%4]), now)
				case 2:
					f.Check(Egress, udp(guest, port, peer, 53), now)
				default:
					f.Check(Ingress, icmpErr(router, guest, icmpUnreachable, 3, udp(guest, port, peer, 53)), now)
				}
				if i%1000 == 0 {
					f.Expire(now)
				}
			}
		}()
	}
	ctl.Add(1)
	go func() {
		defer ctl.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				_ = f.SetPolicy(newGroup)
				f.SetLimits(Limits{PacketsPerSec: 1000}, Limits{})
			} else {
				_ = f.SetPolicy(defaultGroup)
				f.SetLimits(Limits{}, Limits{BitsPerSec: 1e6})
			}
			if c := f.Counters(); c.Entries > max {
				t.Errorf("entries %d > %d", c.Entries, max)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	queues.Wait()
	close(stop)
	ctl.Wait()
	if c := f.Counters(); c.Entries > max || c.NewFlows == 0 {
		t.Fatalf("counters %+v", c)
	}
}
