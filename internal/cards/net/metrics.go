package net

import "sync/atomic"

// Drop is why a frame was dropped.
type Drop uint8

// Drop reasons. The exported ones are what the guard and the tunnel
// return; the others the card finds itself.
const (
	DropNone           Drop = iota
	DropSecurityGroup       // no security group rule allows the flow
	DropConntrackFull       // the connection table is full (ENA's conntrack_allowance_exceeded)
	DropRateLimit           // over the interface's packets or bits per second
	DropSpoof               // a source MAC or IP the interface does not own
	DropDecrypt             // a datagram that does not authenticate
	DropReplay              // a datagram seen before, or too old
	DropWrongVPC            // a datagram for a VPC or interface this card does not serve
	dropMalformedChain      // a descriptor chain the driver got wrong
	dropMalformedFrame      // a frame that does not parse, or bad offload metadata
	dropOversize            // a chain longer than the largest frame
	dropIPv6                // IPv6 is not routed yet
	dropUnsupported         // an EtherType other than ARP and IPv4
	dropNoRoute             // no interface of the VPC holds the destination
	dropTTL                 // the TTL ran out at the router
	dropSeal                // the frame could not be sealed
	dropUnderlay            // the underlay refused the datagram
	dropUnknownPeer         // a sealed datagram from an index the VPC does not have
	dropNoBuffer            // the guest had no receive buffer for it
	numDrops
)

// DropNames are the metric labels of the reasons, by Drop.
var DropNames = [numDrops]string{
	DropNone: "none", DropSecurityGroup: "security_group", DropConntrackFull: "conntrack_allowance_exceeded",
	DropRateLimit: "rate_limit", DropSpoof: "spoof", DropDecrypt: "decrypt", DropReplay: "replay",
	DropWrongVPC: "wrong_vpc", dropMalformedChain: "malformed_chain", dropMalformedFrame: "malformed",
	dropOversize: "oversize", dropIPv6: "ipv6", dropUnsupported: "unsupported", dropNoRoute: "no_route",
	dropTTL: "ttl", dropSeal: "seal", dropUnderlay: "underlay", dropUnknownPeer: "unknown_peer",
	dropNoBuffer: "no_buffer",
}

// Metrics counts, without locks, what crossed the interface and what was
// dropped; azoted renders them (cardproto's schema).
type Metrics struct {
	txFrames, txBytes atomic.Uint64 // frames the guest sent
	sentFrames        atomic.Uint64 // of those, sealed onto the underlay
	rxFrames, rxBytes atomic.Uint64 // frames delivered to the guest
	arpAnswered       atomic.Uint64
	arpUnanswered     atomic.Uint64
	drops             [numDrops]atomic.Uint64
}

func (m *Metrics) drop(r Drop) { m.drops[r].Add(1) }

// Snapshot is the counters at one moment.
type Snapshot struct {
	TxFrames, TxBytes, SentFrames, RxFrames, RxBytes uint64
	ARPAnswered, ARPUnanswered                       uint64
	Drops                                            map[string]uint64
}

// Snapshot reads the counters.
func (m *Metrics) Snapshot() Snapshot {
	s := Snapshot{
		TxFrames: m.txFrames.Load(), TxBytes: m.txBytes.Load(), SentFrames: m.sentFrames.Load(),
		RxFrames: m.rxFrames.Load(), RxBytes: m.rxBytes.Load(),
		ARPAnswered: m.arpAnswered.Load(), ARPUnanswered: m.arpUnanswered.Load(),
		Drops: map[string]uint64{},
	}
	for r := DropSecurityGroup; r < numDrops; r++ {
		s.Drops[DropNames[r]] = m.drops[r].Load()
	}
	return s
}
