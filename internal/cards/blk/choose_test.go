package blk

import (
	"math/rand/v2"
	"testing"
)

// runChooser feeds a chooser n transfers of size bytes whose cost on each
// path comes from cost (ns per transfer, with ±noise), and returns how
// many went each way and the chooser.
func runChooser(c *chooser, n int, size uint64, cost [numPaths]float64, noise float64, rng *rand.Rand) (took [numPaths]int) {
	for range n {
		p := c.pick()
		took[p]++
		x := cost[p] * (1 + noise*(2*rng.Float64()-1))
		c.observe(p, size, int64(x))
	}
	return took
}

// TestChooserPicksMeasuredFaster: the decision follows the injected
// timings, not the host it runs on: the mapping when it is faster (most
// hosts), pread when the mapping is ten times slower (a PVM host with a
// working set larger than its shadow page tables hold), and it follows a
// change of regime (the working set growing) within a few thousand
// transfers. Exploring a path that is far behind costs well under 1 %.
func TestChooserPicksMeasuredFaster(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name       string
		cost       [numPaths]float64 // mapped, pread: ns per 1 MiB
		want       path
		maxExplore float64 // fraction of transfers on the other path
	}{
		{"mapping 2x faster (most hosts)", [numPaths]float64{50e3, 100e3}, pathMapped, 0.02},
		{"mapping 10x slower (PVM, large working set)", [numPaths]float64{800e3, 80e3}, pathSyscall, 0.003},
		{"mapping 1.3x slower", [numPaths]float64{130e3, 100e3}, pathSyscall, 0.02},
		{"about even: stays on the mapping", [numPaths]float64{100e3, 95e3}, pathMapped, 0.02},
	} {
		var c chooser
		took := runChooser(&c, 100000, 1<<20, tc.cost, 0.1, rng)
		if c.best != tc.want {
			t.Errorf("%s: chose %s (costs %v)", tc.name, pathNames[c.best], c.cost)
		}
		if f := float64(took[1-tc.want]) / 100000; f > tc.maxExplore {
			t.Errorf("%s: %.2f%% of transfers on the slower path, want at most %.2f%%", tc.name, 100*f, 100*tc.maxExplore)
		}
	}

	// A regime change: the mapping is fast, then ten times slower, then
	// fast again.
	var c chooser
	runChooser(&c, 20000, 1<<20, [numPaths]float64{50e3, 80e3}, 0.1, rng)
	if c.best != pathMapped {
		t.Fatalf("phase 1: chose %s", pathNames[c.best])
	}
	runChooser(&c, 2000, 1<<20, [numPaths]float64{800e3, 80e3}, 0.1, rng)
	if c.best != pathSyscall {
		t.Fatalf("phase 2: chose %s after 2000 slow transfers on the mapping", pathNames[c.best])
	}
	// Back to fast: found again at the next bursts (the period is long
	// while the mapping is far behind; it shrinks as it catches up).
	runChooser(&c, 40000, 1<<20, [numPaths]float64{50e3, 80e3}, 0.1, rng)
	if c.best != pathMapped {
		t.Fatalf("phase 3: chose %s", pathNames[c.best])
	}
}

// TestChooserStartsMapped: the first transfers of a class go through the
// mapping, the path that wins where shadow page tables do not get in the
// way (and which the tests of the mapping rely on).
func TestChooserStartsMapped(t *testing.T) {
	var c chooser
	for i := range warmupPeriod - 1 {
		if p := c.pick(); p != pathMapped {
			t.Fatalf("transfer %d took %s", i, pathNames[p])
		}
		c.observe(pathMapped, 4096, 1000)
	}
}

func TestSizeClass(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		want int
	}{{512, 0}, {4096, 0}, {4097, 1}, {16384, 1}, {16385, 2}, {65536, 2}, {65537, 3}, {256 << 10, 3}, {256<<10 + 512, 4}, {1 << 20, 4}, {64 << 20, 4}} {
		if got := sizeClass(tc.n); got != tc.want {
			t.Errorf("sizeClass(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

// TestSmallWritesStayMapped: a queue's writes of up to 4 KiB take the
// mapping whatever their samples say (exploring them measures the other
// path's wake, not its cost); reads and larger writes still follow the
// measurements.
func TestSmallWritesStayMapped(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	choice := newChoosers()
	cheapPread := [numPaths]float64{800e3, 80e3}
	small := &choice[1][0]
	if took := runChooser(small, 10000, 4096, cheapPread, 0.1, rng); took[pathSyscall] != 0 || small.best != pathMapped {
		t.Fatalf("small writes: %d of 10000 took pread, best %s", took[pathSyscall], pathNames[small.best])
	}
	for _, c := range []*chooser{&choice[0][0], &choice[1][1], &choice[1][sizeClasses-1]} {
		runChooser(c, 10000, 1<<20, cheapPread, 0.1, rng)
		if c.best != pathSyscall {
			t.Errorf("a measured class stayed on %s although pread was ten times cheaper", pathNames[c.best])
		}
	}
}

// TestChooserForgetsColdStart: a path whose first burst is slow (its first
// transfers map pages for the first time) but which is then ten times
// cheaper than the mapping takes over at its second burst, not after
// hundreds of transfers on the slow way.
func TestChooserForgetsColdStart(t *testing.T) {
	var c chooser
	const mib = 1 << 20
	for i := 0; i < 2000 && c.best == pathMapped; i++ {
		p := c.pick()
		ns := int64(500e3) // the mapping: 0.5 ms per MiB
		if p == pathSyscall {
			ns = 50e3 // pread: 50 us per MiB ...
			if c.samples[pathSyscall] < exploreBurst {
				ns = 2e6 // ... after a first burst at 2 ms
			}
		}
		c.observe(p, mib, ns)
		if i > 3*warmupPeriod && c.best == pathMapped {
			t.Fatalf("still on the mapping after %d transfers: costs %v, samples %v", i, c.cost, c.samples)
		}
	}
	if c.best != pathSyscall {
		t.Fatalf("chose %s", pathNames[c.best])
	}
}
