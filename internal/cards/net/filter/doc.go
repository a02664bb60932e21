// Package filter decides, for every frame the net card moves, whether one
// network interface's security groups let it pass: EC2's stateful,
// allow-only security groups, with connection tracking and per-interface
// packet and bit rate limits. The card parses each frame and hands the
// facts to a Filter (one per interface) as a Packet; the Filter answers
// with a Verdict and counts what it drops.
//
// Semantics, as EC2 documents them for security groups:
//
//   - A Policy is the union of the rules of every group on the interface,
//     per direction. Rules only allow; traffic no rule allows is dropped.
//     A rule names its peer by CIDR or by security group: a group rule
//     matches when the peer's address is a member of that group, which
//     the card answers through Members (kept current by azoted).
//   - Tracking makes the groups stateful. A packet leaving the guest
//     (Egress) passes when an egress rule allows it, which starts
//     tracking its flow, or when it belongs to a flow already tracked:
//     the reply of an allowed inbound flow passes whatever the egress
//     rules say. Ingress is the mirror image.
//   - SetPolicy judges new flows by the new rules at once; tracked flows
//     go on until they close or idle out, as in EC2, where removing a rule
//     does not cut tracked connections.
//
// Connection tracking (conntrack.go, state.go):
//
//   - TCP follows its handshake and teardown: SYN_SENT, SYN_RECV,
//     ESTABLISHED, FIN_WAIT or CLOSE_WAIT (one side sent FIN), TIME_WAIT
//     (both did) and CLOSED (RST). Sequence numbers and windows are not
//     tracked: the guest's own stack checks those. A SYN on a flow in
//     TIME_WAIT or CLOSED opens a new connection and is judged by the
//     rules again.
//   - A TCP packet without SYN of a flow that is not tracked (a mid-stream
//     segment after the card restarted and lost its table) is judged by
//     the rules of its direction like a SYN; if they allow it the flow is
//     picked up as established. This lets streams survive a card restart
//     and opens nothing the rules do not already open. An RST of an
//     unknown flow is judged by the rules and never tracked. Flag
//     combinations no TCP stack sends (none of SYN, ACK, RST; SYN with FIN
//     or RST) are dropped as malformed.
//   - UDP is tracked by its 5-tuple; a flow that has seen more than one
//     request-response exchange is a stream and idles out later.
//   - ICMP echo and timestamp requests are tracked by their identifier, so
//     the matching replies pass. ICMP errors (destination unreachable,
//     source quench, redirect, time exceeded, parameter problem) pass when
//     the header they quote (Packet.Embedded, see ParseEmbedded) is that
//     of a tracked flow and they go to its sender; otherwise they, and
//     every other ICMP message, are judged by the rules alone and never
//     tracked.
//   - Other IP protocols are tracked by protocol and addresses only.
//   - Idle timeouts follow EC2's defaults (DefaultTimeouts) and are
//     configurable per interface.
//   - Every flow a rule admits is tracked. EC2 leaves untracked the flows
//     that rules open to everyone both ways; this filter does not, so
//     such flows count against MaxFlows here.
//
// The table is bounded by MaxFlows whatever a guest or a peer sends.
// Expired flows are reclaimed lazily, when a lookup meets one and when a
// new flow finds the table full; when nothing can be reclaimed the new
// flow is refused and counted as conntrack_allowance_exceeded (ENA's
// name), while tracked flows keep working. Rules are judged without any
// lock held; the table is split in shards chosen by a keyed hash of the
// flow, each with its own short mutex.
//
// Limiter is a pair of token buckets (packets and bits per second), one
// per direction of an interface. It takes the caller's monotonic clock:
// nothing in this package reads the time.
//
// The package never allocates per packet once a flow is tracked, never
// reads the clock, never logs, never holds a lock while it calls Members,
// and never grows the table past MaxFlows. It handles IPv4 only: a packet
// with another address family is dropped as malformed.
package filter
