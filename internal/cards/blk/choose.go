package blk

import "math/bits"

// On the page cache a transfer can go two ways (see io.go): through the
// mapped file, or through pread/pwrite. Which is faster depends on the
// host, and on the volume's working set, so the device measures it:
//
//   - On most hosts the mapping wins once its pages are mapped: no system
//     call, and an encrypted transfer is one pass of the cipher between the
//     file's pages and guest memory.
//   - On a paravirtualised host whose guest page tables are shadowed (PVM),
//     an access through the mapping costs a page fault whenever the
//     hypervisor's shadow of that page is gone, and it keeps only so many:
//     on the machine this was found on, 1 MiB copies out of a 64 MiB mapped
//     region ran at 19–21 GB/s from the second pass on, out of a 1 GiB one
//     at 1–2 GB/s on every pass, where pread ran at 21–25 GB/s for both.
//     A start-up calibration on a small region would see the first case and
//     pick the mapping; the guest's working set decides.
//
// So each queue keeps, for each class of transfer (read or write, and its
// size within a factor of four), the running cost per byte of both paths,
// takes the cheaper, and now and then sends a short burst of transfers the
// other way to keep that estimate current (rarely when the other way is
// far behind, so exploring a path ten times slower costs well under 1 %).
//
// Except for writes of up to 4 KiB, which always take the mapping (where
// their pages are in the page cache: resident). A burst of exploration
// measures a path in the wake of the other, and for small random writes
// that is not what the path costs when it serves every write: in the card
// on the PVM host, 4 KiB random writes over a 1 GiB file cost 2.0–2.4 ns a
// byte through the mapping and 5.4–6.8 through pwrite, each serving all of
// them, but a mapped write explored between pwrites measured 13–37 ns a
// byte (and a pwrite explored between mapped writes 17), so the chooser
// kept whichever path it tried first, pwrite as often as not, and served
// 40–60 % fewer writes than the mapping alone. The mapping is also the
// faster way for small writes where no shadow page tables get in the way
// (no system call), so nothing is lost by not measuring them. Large writes
// and reads differ by up to 10x between the paths, far beyond that bias.

// path is where a page-cache transfer goes.
type path uint8

const (
	pathMapped  path = iota // the mapped file: a copy or one cipher pass
	pathSyscall             // preadv/pwritev (encrypted: a cipher pass in guest memory or the bounce buffer)
	numPaths
)

var pathNames = [numPaths]string{"mapped", "pread"}

// sizeClasses: up to 4 KiB, 16 KiB, 64 KiB, 256 KiB, and larger.
const sizeClasses = 5

// newChoosers returns a queue's choosers: each starts on the mapping, and
// writes of the smallest class stay there (see above).
func newChoosers() (c [2][sizeClasses]chooser) {
	c[1][0] = chooser{best: pathMapped, fixed: true}
	return c
}

// sizeClass returns the class of an n-byte transfer.
func sizeClass(n uint64) int {
	if n <= 4096 {
		return 0
	}
	return min((bits.Len64((n-1)>>12)+1)/2, sizeClasses-1)
}

const (
	// exploreBurst transfers in a row go the other way: the first of a
	// burst may pay for mapping pages the other path left unmapped.
	exploreBurst = 4
	// explorePeriod is the number of transfers between bursts when both
	// paths cost about the same; it grows with the square of the ratio
	// of their costs, up to exploreMaxPeriod.
	explorePeriod    = 256
	exploreMaxPeriod = 1 << 14
	// warmupPeriod: until the other path has a few samples, explore
	// after this many transfers.
	warmupPeriod = 32
	// switchRatio: the other path must cost less than this fraction of
	// the current one to take over, so that noise does not flip the
	// choice back and forth.
	switchRatio = 0.85
	// ewmaShift weighs each sample 1/8 in the running cost.
	ewmaShift = 3
	// coldSamples: a path's first samples weigh 1/2, so that the cost of
	// its first transfers, which often pay for mapping pages (of the file
	// or of guest memory) for the first time, is soon forgotten. With 1/8
	// from the start, a first burst of pread at 1.5-4.6 ms per MiB (then
	// 40-150 us) kept a PVM host's 1 MiB reads on the mapping, at a
	// tenth of pread's speed, for 700-1,500 transfers.
	coldSamples = 2 * exploreBurst
)

// chooser picks the path for one class of transfers. It is owned by the
// goroutine serving its queue (no locking). A chooser starts on the
// mapping, the path that wins where shadow page tables do not get in the
// way.
type chooser struct {
	cost    [numPaths]float64 // running ns per byte; 0 before any sample
	samples [numPaths]uint32  // saturating
	best    path
	fixed   bool   // always best: no exploration, no switch (small writes)
	since   uint32 // transfers since the last burst ended
	burst   uint32 // transfers left in the current exploration burst
}

// pick returns the path for the next transfer.
func (c *chooser) pick() path {
	if c.fixed {
		return c.best
	}
	other := 1 - c.best
	if c.burst > 0 {
		c.burst--
		return other
	}
	c.since++
	if c.since >= c.period() {
		c.since = 0
		c.burst = exploreBurst - 1
		return other
	}
	return c.best
}

// period is how many transfers go the best way between two bursts.
func (c *chooser) period() uint32 {
	other := 1 - c.best
	if c.samples[other] < 2*exploreBurst || c.cost[c.best] <= 0 {
		return warmupPeriod
	}
	r := c.cost[other] / c.cost[c.best]
	if r <= 1 {
		return explorePeriod
	}
	p := explorePeriod * r * r
	if p >= exploreMaxPeriod {
		return exploreMaxPeriod
	}
	return uint32(p)
}

// observe records that a transfer of n bytes took ns nanoseconds on path
// p, and switches paths when the other has become clearly cheaper.
func (c *chooser) observe(p path, n uint64, ns int64) {
	if n == 0 || ns <= 0 {
		return
	}
	x := float64(ns) / float64(n)
	switch {
	case c.samples[p] == 0:
		c.cost[p] = x
	case c.samples[p] < coldSamples:
		c.cost[p] += (x - c.cost[p]) / 2
	default:
		c.cost[p] += (x - c.cost[p]) / (1 << ewmaShift)
	}
	if c.samples[p] < ^uint32(0) {
		c.samples[p]++
	}
	other := 1 - c.best
	if !c.fixed && c.samples[other] >= exploreBurst && c.samples[c.best] >= exploreBurst &&
		c.cost[other] < switchRatio*c.cost[c.best] {
		c.best = other
		c.since, c.burst = 0, 0
	}
}
