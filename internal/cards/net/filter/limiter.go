package filter

import (
	"math"
	"math/bits"
	"sync/atomic"
)

// Limits configure a Limiter. A zero rate leaves that bucket unlimited.
type Limits struct {
	PacketsPerSec uint64
	BitsPerSec    uint64
	// BurstPackets and BurstBytes are the depths of the buckets: how much
	// may pass at once after a quiet spell. Zero means 10 ms at the rate,
	// at least 1 packet and at least 64 KiB. A packet larger than the byte
	// burst passes when the bucket is full, and leaves it in debt.
	BurstPackets uint64
	BurstBytes   uint64
}

// Limiter is a packet bucket and a bit bucket, for one direction of one
// interface, used by every queue goroutine of the interface at once. The
// zero value is an unlimited Limiter.
//
// Each bucket is kept as one number, GCRA's theoretical arrival time (the
// time at which the bucket would be full again), moved forward by a
// compare-and-swap per packet: no lock, and no clock but the one the caller
// passes. Times are held in ticks of 1/64 ns so that the cost of a small
// packet at a high bit rate keeps its fraction of a nanosecond; they wrap
// around about every 9 years and are compared modulo 2^64.
type Limiter struct {
	params atomic.Pointer[limiterParams]
	pkt    atomic.Uint64 // arrival time of the packet bucket, in ticks
	bit    atomic.Uint64 // arrival time of the bit bucket, in ticks
}

type limiterParams struct {
	pktCost uint64 // ticks per packet; 0: no packet limit
	pktTol  uint64 // burst, in ticks
	bps     uint64 // 0: no bit limit
	bitTol  uint64 // burst, in ticks
}

const (
	tickShift    = 6                   // 64 ticks per nanosecond
	ticksPerSec  = 1e9 << tickShift    // 6.4e10
	maxCharge    = 1 << 24             // bytes charged for one packet at most
	defaultBurst = 100                 // bursts default to 1/100 s of the rate
	minBurst     = 64 << 10            // bytes
	bitTicks     = 8 * ticksPerSec     // ticks per bit per (bit/s)
	maxTicks     = math.MaxUint64 >> 2 // bursts saturate here
	staleTicks   = ticksPerSec         // see take
)

// NewLimiter returns a Limiter enforcing l.
func NewLimiter(l Limits) *Limiter {
	var lim Limiter
	lim.SetLimits(l)
	return &lim
}

// SetLimits changes the limits; packets in flight use the old or the new
// ones. The buckets keep their level.
func (l *Limiter) SetLimits(lim Limits) {
	if lim.PacketsPerSec == 0 && lim.BitsPerSec == 0 {
		l.params.Store(nil)
		return
	}
	p := &limiterParams{bps: lim.BitsPerSec}
	if r := lim.PacketsPerSec; r > 0 {
		p.pktCost = max(ticksPerSec/r, 1)
		burst := lim.BurstPackets
		if burst == 0 {
			burst = max(r/defaultBurst, 1)
		}
		p.pktTol = mulSat(burst, p.pktCost)
	}
	if r := lim.BitsPerSec; r > 0 {
		burst := lim.BurstBytes
		if burst == 0 {
			burst = max(r/8/defaultBurst, minBurst)
		}
		p.bitTol = mulDivSat(burst, bitTicks, r)
	}
	l.params.Store(p)
}

// Allow charges one packet of the given size at now (monotonic
// nanoseconds) and reports whether both buckets had room for it. A refused
// packet is not charged.
func (l *Limiter) Allow(bytes int, now int64) bool {
	p := l.params.Load()
	if p == nil {
		return true
	}
	t := uint64(now) << tickShift
	if p.pktCost != 0 && !take(&l.pkt, t, p.pktCost, p.pktTol) {
		return false
	}
	if p.bps != 0 {
		b := uint64(min(max(bytes, 0), maxCharge))
		cost := max(b*bitTicks/p.bps, 1)
		if !take(&l.bit, t, cost, p.bitTol) {
			if p.pktCost != 0 {
				l.pkt.Add(-p.pktCost) // give back the packet's token
			}
			return false
		}
	}
	return true
}

// take moves the bucket's arrival time forward by cost if that leaves it at
// most tol ahead of now (or if the bucket is full, for a packet larger
// than the burst).
func take(tat *atomic.Uint64, now, cost, tol uint64) bool {
	limit := max(tol, cost)
	for {
		old := tat.Load()
		base := old
		// Behind now, the bucket is full. More than a second further
		// ahead than any charge can put it (queues read the clock at
		// slightly different times, so a little is normal), the stored
		// time is stale: the clock wrapped or went backwards. Start from
		// a full bucket rather than refuse forever. Zero is a bucket
		// never used.
		if ahead := int64(old - now); ahead < 0 || uint64(ahead) > limit+staleTicks || old == 0 {
			base = now
		}
		next := base + cost
		if next-now > limit {
			return false
		}
		if tat.CompareAndSwap(old, next) {
			return true
		}
	}
}

func mulSat(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi != 0 || lo > maxTicks {
		return maxTicks
	}
	return lo
}

func mulDivSat(a, b, c uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi >= c {
		return maxTicks
	}
	q, _ := bits.Div64(hi, lo, c)
	return min(q, maxTicks)
}
