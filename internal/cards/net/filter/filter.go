package filter

import (
	"fmt"
	"sync/atomic"
)

// DefaultMaxFlows is the size of an interface's connection table when the
// Config does not say: 65536 flows. The table grows with the flows it
// holds, to at most about 80 bytes per flow of MaxFlows (5 MiB here).
const DefaultMaxFlows = 65536

// Config configures a Filter.
type Config struct {
	// MaxFlows bounds the connection table; 0 means DefaultMaxFlows.
	MaxFlows int
	// Timeouts are the idle timeouts; zero fields take the defaults.
	Timeouts Timeouts
	// Members answers group rules; nil matches none.
	Members Members
	// IngressLimits and EgressLimits are the rate limits of each
	// direction; zero values are unlimited.
	IngressLimits, EgressLimits Limits
}

// Filter is the security-group filter of one network interface. Its
// methods are safe for concurrent use: the card calls Check from every
// queue goroutine and the setters from its control goroutine.
type Filter struct {
	t        *table
	pol      atomic.Pointer[policy]
	timeouts atomic.Pointer[timeouts]
	members  Members
	lim      [2]Limiter // by Dir
}

// New returns a Filter enforcing p.
func New(cfg Config, p Policy) (*Filter, error) {
	if cfg.MaxFlows < 0 {
		return nil, fmt.Errorf("%w: MaxFlows %d", ErrInvalidConfig, cfg.MaxFlows)
	}
	if cfg.MaxFlows == 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	f := &Filter{t: newTable(cfg.MaxFlows), members: cfg.Members}
	if err := f.SetTimeouts(cfg.Timeouts); err != nil {
		return nil, err
	}
	if err := f.SetPolicy(p); err != nil {
		return nil, err
	}
	f.SetLimits(cfg.IngressLimits, cfg.EgressLimits)
	return f, nil
}

// SetPolicy replaces the rules. Packets of new flows are judged by p from
// now on; flows already tracked carry on until they close or idle out. On
// error the old rules stay.
func (f *Filter) SetPolicy(p Policy) error {
	c, err := compile(p)
	if err != nil {
		return err
	}
	f.pol.Store(c)
	return nil
}

// SetTimeouts replaces the idle timeouts; zero fields take the defaults.
// A flow's packets move its expiry by the new values from now on.
func (f *Filter) SetTimeouts(t Timeouts) error {
	c, err := t.compile()
	if err != nil {
		return fmt.Errorf("%w: negative timeout", err)
	}
	f.timeouts.Store(c)
	return nil
}

// SetLimits replaces the rate limits of each direction.
func (f *Filter) SetLimits(ingress, egress Limits) {
	f.lim[Ingress].SetLimits(ingress)
	f.lim[Egress].SetLimits(egress)
}

// Expire reclaims every flow idle past its timeout at now and returns how
// many. The filter reclaims lazily without it; calling it from a timer
// keeps Counters' Entries close to the flows alive.
func (f *Filter) Expire(now int64) int {
	return f.t.reclaim(now)
}

// kind sorts packets by what the tracker does with them.
type kind uint8

const (
	kindFlow      kind = iota // tracked: TCP, UDP, ICMP queries, other protocols
	kindReply                 // ICMP query reply: its query's flow, else the rules alone
	kindError                 // ICMP error: the quoted flow's, else the rules alone
	kindStateless             // any other ICMP: the rules alone
)

// keyFor returns the flow key of a packet going in direction d, and its
// kind.
func keyFor(d Dir, proto Proto, src, dst uint32, sport, dport uint16, icmpType uint8, icmpID uint16) (flowKey, kind) {
	k := flowKey{local: src, remote: dst, lport: sport, rport: dport, proto: uint8(proto)}
	if d == Ingress {
		k.local, k.remote, k.lport, k.rport = dst, src, dport, sport
	}
	switch proto {
	case ProtoTCP, ProtoUDP:
		return k, kindFlow
	case ProtoICMP:
	default:
		k.lport, k.rport = 0, 0
		return k, kindFlow
	}
	// ICMP queries: lport is the identifier; rport is the query type
	// (0 echo, 2 timestamp) plus 1 when the peer asked.
	var q uint16
	kd := kindFlow
	asker := d // direction of the query
	switch icmpType {
	case icmpEcho:
	case icmpTimestamp:
		q = 2
	case icmpEchoReply:
		kd, asker = kindReply, d^1
	case icmpTimestampReply:
		kd, asker, q = kindReply, d^1, 2
	default:
		if isICMPError(icmpType) {
			return k, kindError
		}
		return k, kindStateless
	}
	if asker == Ingress {
		q |= 1
	}
	k.lport, k.rport = icmpID, q
	return k, kd
}

// Check judges one packet going in direction d at now (monotonic
// nanoseconds, the caller's clock) and updates the flow's tracking. It
// does not allocate once the flow is tracked.
func (f *Filter) Check(d Dir, p *Packet, now int64) Verdict {
	t := f.t
	if d > Egress || !p.Src.Is4() || !p.Dst.Is4() ||
		(p.Proto == ProtoTCP && !validTCPFlags(p.TCPFlags)) {
		return f.drop(&t.shards[0], DropMalformed)
	}
	k, kd := keyFor(d, p.Proto, be32(p.Src.As4()), be32(p.Dst.As4()), p.SrcPort, p.DstPort, p.ICMPType, p.ICMPID)
	h := t.hash(&k)
	s, h32 := t.shardOf(h), uint32(h)
	switch kd {
	case kindStateless:
		return f.stateless(s, d, p, now)
	case kindError:
		return f.related(s, d, p, now)
	}

	s.mu.Lock()
	if e := s.lookupLocked(t, &k, h32, now); e != nil {
		if v, done := f.trackedLocked(s, e, d, p, now); done {
			s.mu.Unlock()
			return v
		}
	}
	s.mu.Unlock()

	// Not tracked (or a closed TCP connection reopened): the rules decide,
	// judged with no lock held.
	if kd == kindReply || (p.Proto == ProtoTCP && p.TCPFlags&FlagRST != 0) {
		return f.stateless(s, d, p, now)
	}
	if !f.rulesAllow(d, p) {
		return f.drop(s, DropSecurityGroup)
	}
	for retried := false; ; retried = true {
		s.mu.Lock()
		// Look again: another queue may have started the flow meanwhile.
		if e := s.lookupLocked(t, &k, h32, now); e != nil {
			if v, done := f.trackedLocked(s, e, d, p, now); done {
				s.mu.Unlock()
				return v
			}
			if !f.lim[d].Allow(p.Len, now) {
				s.mu.Unlock()
				return f.drop(s, DropRateLimit)
			}
			f.startLocked(s, e, d, p, now)
			s.mu.Unlock()
			return Verdict{Allow: true, Reason: AllowNew}
		}
		if e := s.insertLocked(t, &k, h32, now); e != nil {
			if !f.lim[d].Allow(p.Len, now) {
				slot, j := s.findLocked(&k, h32)
				s.removeLocked(t, slot, j)
				s.mu.Unlock()
				return f.drop(s, DropRateLimit)
			}
			f.startLocked(s, e, d, p, now)
			s.mu.Unlock()
			return Verdict{Allow: true, Reason: AllowNew}
		}
		s.mu.Unlock()
		// Full: reclaim across the table, then try once more.
		if retried || t.reclaim(now) == 0 {
			return f.drop(s, DropConntrackFull)
		}
	}
}

// trackedLocked handles a packet of the tracked flow e. done is false when
// the packet is a SYN opening a new connection on a closed one, which the
// rules must judge; e is then left as it was.
func (f *Filter) trackedLocked(s *shard, e *entry, d Dir, p *Packet, now int64) (v Verdict, done bool) {
	st, turns, last := e.state, e.turns, e.last
	if p.Proto == ProtoTCP {
		var reopen bool
		if st, reopen = tcpNext(e.state, e.origin, d, p.TCPFlags); reopen {
			return v, false
		}
	} else if d != last {
		last = d
		if turns < udpStreamTurns {
			turns++
		}
	}
	if !f.lim[d].Allow(p.Len, now) {
		return f.drop(s, DropRateLimit), true
	}
	refresh := !st.closing() || st != e.state
	e.state, e.turns, e.last = st, turns, last
	if refresh {
		s.setExpiry(e, now+f.timeouts.Load().timeout(e))
	}
	return Verdict{Allow: true, Reason: AllowTracked}, true
}

// startLocked makes e the flow p starts.
func (f *Filter) startLocked(s *shard, e *entry, d Dir, p *Packet, now int64) {
	e.state, e.origin = tcpNone, d
	if p.Proto == ProtoTCP {
		e.state, e.origin = tcpFirst(d, p.TCPFlags)
	}
	e.last, e.turns = d, 0
	s.setExpiry(e, now+f.timeouts.Load().timeout(e))
	s.newFlows.Add(1)
}

// related judges an ICMP error: it passes if it goes to the sender of a
// packet of a tracked flow and quotes that packet, else the rules judge it.
// It never refreshes the flow.
func (f *Filter) related(s *shard, d Dir, p *Packet, now int64) Verdict {
	q := &p.Embedded
	if q.Src.Is4() && q.Dst.Is4() && q.Src == p.Dst {
		// The quoted packet went the other way.
		k, kd := keyFor(d^1, q.Proto, be32(q.Src.As4()), be32(q.Dst.As4()), q.SrcPort, q.DstPort, q.ICMPType, q.ICMPID)
		if kd == kindFlow || kd == kindReply {
			h := f.t.hash(&k)
			qs := f.t.shardOf(h)
			qs.mu.Lock()
			e := qs.lookupLocked(f.t, &k, uint32(h), now)
			qs.mu.Unlock()
			if e != nil {
				if !f.lim[d].Allow(p.Len, now) {
					return f.drop(s, DropRateLimit)
				}
				return Verdict{Allow: true, Reason: AllowRelated}
			}
		}
	}
	return f.stateless(s, d, p, now)
}

// stateless judges a packet by the rules alone and tracks nothing.
func (f *Filter) stateless(s *shard, d Dir, p *Packet, now int64) Verdict {
	if !f.rulesAllow(d, p) {
		return f.drop(s, DropSecurityGroup)
	}
	if !f.lim[d].Allow(p.Len, now) {
		return f.drop(s, DropRateLimit)
	}
	return Verdict{Allow: true, Reason: AllowRule}
}

// rulesAllow reports whether a rule of direction d allows p.
func (f *Filter) rulesAllow(d Dir, p *Packet) bool {
	peerAddr := p.Src
	if d == Egress {
		peerAddr = p.Dst
	}
	peer := be32(peerAddr.As4())
	rules := f.pol.Load().rules[d]
	for i := range rules {
		if rules[i].matches(p, peer, peerAddr, f.members) {
			return true
		}
	}
	return false
}

func (f *Filter) drop(s *shard, r Reason) Verdict {
	s.drops[r].Add(1)
	return Verdict{Reason: r}
}
