package filter

// Reason says why a packet passed or was dropped.
type Reason uint8

// The reasons of a Verdict. The Drop reasons are counted in Counters.
const (
	// AllowNew: a rule allowed the first packet of a flow, now tracked.
	AllowNew Reason = iota
	// AllowTracked: the packet belongs to a tracked flow, either way.
	AllowTracked
	// AllowRelated: an ICMP error about a tracked flow.
	AllowRelated
	// AllowRule: a rule allowed a packet that starts nothing to track (an
	// ICMP error or reply, a TCP RST).
	AllowRule
	// DropSecurityGroup: no rule allows the packet and it belongs to no
	// tracked flow.
	DropSecurityGroup
	// DropConntrackFull: a new flow found the table full
	// (conntrack_allowance_exceeded).
	DropConntrackFull
	// DropRateLimit: the direction's packet or bit bucket was empty.
	DropRateLimit
	// DropMalformed: not an IPv4 packet, or TCP flags no stack sends.
	DropMalformed
	numReasons
)

var reasonNames = [numReasons]string{
	AllowNew:          "allow_new",
	AllowTracked:      "allow_tracked",
	AllowRelated:      "allow_related",
	AllowRule:         "allow_rule",
	DropSecurityGroup: "security_group",
	DropConntrackFull: "conntrack_full",
	DropRateLimit:     "rate_limit",
	DropMalformed:     "malformed",
}

// String returns a name fit for a metric label: "security_group",
// "conntrack_full", "rate_limit", "malformed", or "allow_…".
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Verdict is the filter's answer for one packet.
type Verdict struct {
	Allow  bool
	Reason Reason
}

// Counters is a snapshot of a Filter's counters. Entries and Available
// are gauges; every other field only grows.
type Counters struct {
	// Entries is the number of flows in the table (some may have expired
	// and not yet been reclaimed; Expire reclaims them).
	Entries uint64
	// Available is MaxFlows minus Entries, ENA's
	// conntrack_allowance_available.
	Available uint64
	// NewFlows counts flows started (or TCP connections reopened).
	NewFlows uint64
	// Expired counts flows reclaimed after their idle timeout.
	Expired uint64
	// AllowanceExceeded counts packets of new flows refused because the
	// table was full, ENA's conntrack_allowance_exceeded.
	AllowanceExceeded uint64
	// DropSecurityGroup, DropRateLimit and DropMalformed count packets
	// dropped for those reasons.
	DropSecurityGroup uint64
	DropRateLimit     uint64
	DropMalformed     uint64
}

// Counters returns a snapshot of the counters.
func (f *Filter) Counters() Counters {
	var c Counters
	for i := range f.t.shards {
		s := &f.t.shards[i]
		c.NewFlows += s.newFlows.Load()
		c.Expired += s.expired.Load()
		c.AllowanceExceeded += s.drops[DropConntrackFull].Load()
		c.DropSecurityGroup += s.drops[DropSecurityGroup].Load()
		c.DropRateLimit += s.drops[DropRateLimit].Load()
		c.DropMalformed += s.drops[DropMalformed].Load()
	}
	n := max(f.t.count.Load(), 0)
	c.Entries = uint64(n)
	c.Available = uint64(max(f.t.max-n, 0))
	return c
}
