package filter

import (
	"net/netip"
	"testing"
	"time"
)

// fuzzAddrs are the addresses a fuzzed packet may carry, including some
// that are not IPv4.
var fuzzAddrs = [8]netip.Addr{
	guest, member, neighbor, outside, other, router,
	netip.MustParseAddr("2001:db8::1"), {},
}

// fuzzPolicies are the policies a fuzzed sequence may switch to; the
// fuzzer also builds one rule from its bytes.
var fuzzPolicies = [...]Policy{
	{}, defaultGroup, newGroup,
	{Ingress: []Rule{{Proto: ProtoTCP, FromPort: 20, ToPort: 30, Prefix: pfx("10.0.0.0/24")}, {Proto: ProtoICMP, FromPort: 8, ToPort: -1, Group: "sg-default"}}},
	{Ingress: []Rule{{Proto: ProtoAll, Prefix: anywhere}}, Egress: []Rule{{Proto: ProtoUDP, FromPort: 53, ToPort: 53, Group: "sg-default"}}},
}

// FuzzFilter drives one filter with a sequence of operations the fuzzer
// writes: packets either way with fuzzed fields, clock steps, policy,
// limit, timeout and membership changes, sweeps. It checks that nothing
// panics, that verdicts are consistent, that the table never holds more
// than MaxFlows and stays consistent (every entry found by its key, the
// count right), and that a filter whose policy never allowed anything
// never lets a packet pass.
//
// cfg: byte 0 picks MaxFlows (1-64, or thousands for several shards),
// byte 1 bit 0 keeps the policy empty throughout. ops: 10 bytes each.
func FuzzFilter(f *testing.F) {
	op := func(b ...byte) []byte { return append(b, make([]byte, 10-len(b)%10)...)[:10*((len(b)+9)/10)] }
	cat := func(ops ...[]byte) []byte {
		var b []byte
		for _, o := range ops {
			b = append(b, o...)
		}
		return b
	}
	// An outbound TCP handshake and close, with replies.
	f.Add([]byte{4, 0}, cat(
		op(0, 0x01, 0, 3, 0x10, 0x20, byte(syn), 0, 0, 80),
		op(0, 0x00, 3, 0, 0x20, 0x10, byte(synack), 0, 80, 0),
		op(0, 0x01, 0, 3, 0x10, 0x20, byte(ack), 0, 0, 80),
		op(0, 0x01, 0, 3, 0x10, 0x20, byte(finack), 0, 0, 80),
		op(0, 0x00, 3, 0, 0x20, 0x10, byte(finack), 0, 80, 0),
		op(1, 200, 0, 0, 0, 0, 0, 0, 0, 0),
		op(0, 0x01, 0, 3, 0x10, 0x20, byte(syn), 0, 0, 80),
	))
	// UDP, ICMP echo and an ICMP error, a policy change and a full table.
	f.Add([]byte{2, 0}, cat(
		op(0, 0x11, 0, 4, 1, 53, 0, 0, 0, 53),
		op(0, 0x10, 4, 0, 53, 1, 0, 0, 53, 0),
		op(0, 0x21, 0, 3, 8, 0, 0, 7, 0, 0),
		op(0, 0x20, 3, 0, 0, 0, 0, 7, 0, 0),
		op(0, 0x20, 5, 0, 3, 3, 0x11, 0, 0, 53),
		op(2, 3, 0, 0, 0, 0, 0, 0, 0, 0),
		op(0, 0x11, 0, 4, 2, 54, 0, 0, 0, 54),
		op(0, 0x11, 0, 4, 3, 55, 0, 0, 0, 55),
	))
	// Limits, timeouts, membership, sweeps, a fuzzed rule, many shards.
	f.Add([]byte{200, 0}, cat(
		op(3, 1, 2, 3, 4, 5, 6, 7, 8, 9),
		op(4, 1, 0, 0, 0, 0, 0, 0, 0, 0),
		op(5, 1, 1, 0, 0, 0, 0, 0, 0, 0),
		op(6, 6, 20, 30, 0, 8, 1, 0, 0, 0),
		op(0, 0x31, 0, 1, 0, 0, 0, 0, 0, 0),
		op(7, 0, 0, 0, 0, 0, 0, 0, 0, 0),
	))
	// Empty policy throughout.
	f.Add([]byte{8, 1}, cat(op(0, 0x01, 0, 3, 0x10, 0x20, byte(syn), 0, 0, 80), op(0, 0x00, 3, 0, 0x20, 0x10, byte(synack), 0, 80, 0)))

	protos := [...]Proto{ProtoTCP, ProtoUDP, ProtoICMP, 47, ProtoAll, 132, ProtoTCP, ProtoUDP}
	icmpTypes := [...]uint8{icmpEcho, icmpEchoReply, icmpTimestamp, icmpTimestampReply, icmpUnreachable, icmpTimeExceeded, 9, 200}
	f.Fuzz(func(t *testing.T, cfg, ops []byte) {
		if len(cfg) < 2 || len(ops) > 10*2000 {
			return
		}
		maxFlows := 1 + int(cfg[0]%64)
		if cfg[0] >= 192 {
			maxFlows = 1024 * int(cfg[0]-190)
		}
		empty := cfg[1]&1 != 0
		g := newGroups("sg-default", guest, member)
		fl, err := New(Config{MaxFlows: maxFlows, Members: g, Timeouts: Timeouts{TCPEstablished: time.Hour}}, Policy{})
		if err != nil {
			t.Fatal(err)
		}
		now := int64(0)
		for ; len(ops) >= 10; ops = ops[10:] {
			o := ops[:10]
			switch o[0] % 8 {
			case 0, 7: // a packet
				d := Dir(o[1] & 1)
				p := &Packet{
					Proto:    protos[o[1]>>4&7],
					Src:      fuzzAddrs[o[2]&7],
					Dst:      fuzzAddrs[o[3]&7],
					SrcPort:  uint16(o[4]) | uint16(o[8])<<8,
					DstPort:  uint16(o[5]) | uint16(o[9])<<8,
					TCPFlags: TCPFlags(o[6]),
					ICMPID:   uint16(o[7]),
					Len:      int(o[8]) * 16,
				}
				if p.Proto == ProtoICMP {
					p.ICMPType, p.ICMPCode = icmpTypes[o[4]&7], o[5]
					if isICMPError(p.ICMPType) {
						p.Embedded = Embedded{Proto: protos[o[6]>>4&7], Src: fuzzAddrs[o[2]>>4&7], Dst: fuzzAddrs[o[3]>>4&7], SrcPort: uint16(o[8]), DstPort: uint16(o[9]), ICMPType: icmpTypes[o[6]&7], ICMPID: uint16(o[7])}
					}
				}
				v := fl.Check(d, p, now)
				if v.Allow != (v.Reason < DropSecurityGroup) || v.Reason >= numReasons {
					t.Fatalf("inconsistent verdict %+v", v)
				}
				if v.Allow && empty {
					t.Fatalf("an empty policy let %+v pass: %s", p, v.Reason)
				}
			case 1: // the clock moves, by up to about 4 minutes
				now += int64(o[1]) * int64(o[2]+1) * int64(o[3]+1) * int64(time.Millisecond) / 16
			case 2:
				if !empty {
					if err := fl.SetPolicy(fuzzPolicies[int(o[1])%len(fuzzPolicies)]); err != nil {
						t.Fatal(err)
					}
				}
			case 3:
				fl.SetLimits(
					Limits{PacketsPerSec: uint64(o[1]) * 100, BitsPerSec: uint64(o[2]) * 1e5, BurstPackets: uint64(o[3])},
					Limits{PacketsPerSec: uint64(o[4]) * 100, BitsPerSec: uint64(o[5]) * 1e5, BurstBytes: uint64(o[6]) * 100})
			case 4:
				s := time.Duration(o[1]) * time.Second
				if err := fl.SetTimeouts(Timeouts{TCPEstablished: s, TCPTransitory: s / 2, TCPClosed: s / 4, UDP: s, ICMP: s, Other: s}); err != nil {
					t.Fatal(err)
				}
			case 5:
				a := fuzzAddrs[o[2]&7]
				if o[1]&1 != 0 {
					g.add("sg-default", a)
				} else {
					g.remove("sg-default", a)
				}
			case 6: // a policy of one fuzzed rule
				if !empty {
					r := Rule{Proto: protos[o[1]&7], FromPort: int(int8(o[2])), ToPort: int(int8(o[3]))}
					if o[5]&1 == 0 {
						r.Prefix = netip.PrefixFrom(fuzzAddrs[o[4]&7], int(o[6])%40)
					} else {
						r.Group = "sg-default"
					}
					p := Policy{Ingress: []Rule{r}}
					if o[5]&2 != 0 {
						p = Policy{Egress: []Rule{r}}
					}
					_ = fl.SetPolicy(p) // may be invalid: the old rules stay
				}
			}
			if o[0]%8 == 7 {
				fl.Expire(now)
			}
			if c := fl.Counters(); c.Entries > uint64(maxFlows) {
				t.Fatalf("%d entries > MaxFlows %d", c.Entries, maxFlows)
			}
		}
		checkTable(t, fl.t)
	})
}

// checkTable verifies the table's invariants.
func checkTable(t *testing.T, tb *table) {
	t.Helper()
	total := 0
	for i := range tb.shards {
		s := &tb.shards[i]
		s.mu.Lock()
		used := 0
		for _, v := range s.index {
			if v != 0 {
				used++
			}
		}
		if used != len(s.entries) || len(s.entries) > s.cap || 2*len(s.entries) > len(s.index) {
			t.Fatalf("shard %d: %d slots used, %d entries, cap %d, %d slots", i, used, len(s.entries), s.cap, len(s.index))
		}
		for j := range s.entries {
			e := &s.entries[j]
			if h := tb.hash(&e.key); uint32(h) != e.h32 || tb.shardOf(h) != s {
				t.Fatalf("shard %d entry %d: wrong hash or shard", i, j)
			}
			if _, k := s.findLocked(&e.key, e.h32); k != j {
				t.Fatalf("shard %d entry %d found at %d", i, j, k)
			}
			if e.expires < s.minExp.Load() {
				t.Fatalf("shard %d entry %d expires before the shard's bound", i, j)
			}
		}
		total += len(s.entries)
		s.mu.Unlock()
	}
	if int64(total) != tb.count.Load() || tb.count.Load() > tb.max {
		t.Fatalf("%d entries, count %d, max %d", total, tb.count.Load(), tb.max)
	}
}

// FuzzParseEmbedded checks that any ICMP error body parses without panic
// and that what it returns is what the bytes say.
func FuzzParseEmbedded(f *testing.F) {
	f.Add(quoted(5, 17, 0, guest, outside, 0x9c, 0x40, 0, 53, 0, 8, 0, 0))
	f.Add(quoted(6, 6, 0, guest, outside, 1, 2, 3, 4, 5, 6, 7, 8))
	f.Add(quoted(5, 1, 0, guest, outside, 8, 0, 0, 0, 0x12, 0x34, 0, 1))
	f.Add(quoted(5, 47, 0x2000, guest, outside))
	f.Add([]byte{0x45})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, ok := ParseEmbedded(b)
		if !ok {
			return
		}
		if !e.Src.Is4() || !e.Dst.Is4() || e.Proto != Proto(b[9]) ||
			e.Src != netip.AddrFrom4([4]byte(b[12:16])) || e.Dst != netip.AddrFrom4([4]byte(b[16:20])) {
			t.Fatalf("ParseEmbedded(%x) = %+v", b, e)
		}
		ihl := int(b[0]&15) * 4
		switch e.Proto {
		case ProtoTCP, ProtoUDP:
			if e.SrcPort != uint16(b[ihl])<<8|uint16(b[ihl+1]) || e.DstPort != uint16(b[ihl+2])<<8|uint16(b[ihl+3]) {
				t.Fatalf("ports of %x: %+v", b, e)
			}
		case ProtoICMP:
			if e.ICMPType != b[ihl] {
				t.Fatalf("type of %x: %+v", b, e)
			}
		}
	})
}
