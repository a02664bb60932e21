package net

import (
	"sync/atomic"

	"github.com/azote/azote/internal/cards/cardproto"
)

// Drop is why a frame was dropped.
type Drop uint8

// Drop reasons, in the order of cardproto.NetDrops (which names them)
// after DropNone. The exported ones are what the guard and the tunnel
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

// The card counts exactly the reasons azoted renders: this does not
// compile when the two lists differ in length (a test checks the order).
var _ [len(cardproto.NetDrops)]struct{} = [numDrops - 1]struct{}{}

// String returns the reason's metric label (cardproto.NetDrops).
func (r Drop) String() string {
	if r == DropNone {
		return "none"
	}
	if r >= numDrops {
		return "unknown"
	}
	return cardproto.NetDrops[r-1]
}

// Metrics counts, without locks, what crossed the interface and what was
// dropped; azoted renders them (cardproto.NetMetrics).
type Metrics struct {
	txFrames, txBytes atomic.Uint64 // frames the guest sent
	sentFrames        atomic.Uint64 // of those, sealed onto the underlay
	rxFrames, rxBytes atomic.Uint64 // frames delivered to the guest
	arpAnswered       atomic.Uint64
	arpUnanswered     atomic.Uint64
	drops             [numDrops]atomic.Uint64
}

func (m *Metrics) drop(r Drop) { m.drops[r].Add(1) }

// Snapshot reads the counters; the connection table's gauges are the
// guard's (plane.metrics).
func (m *Metrics) Snapshot() cardproto.NetMetrics {
	s := cardproto.NetMetrics{
		TxPackets: m.txFrames.Load(), TxBytes: m.txBytes.Load(), TxSealed: m.sentFrames.Load(),
		RxPackets: m.rxFrames.Load(), RxBytes: m.rxBytes.Load(),
		ARPAnswered: m.arpAnswered.Load(), ARPUnanswered: m.arpUnanswered.Load(),
		Drops: make([]uint64, numDrops-1),
	}
	for r := DropSecurityGroup; r < numDrops; r++ {
		s.Drops[r-1] = m.drops[r].Load()
	}
	return s
}
