package encap

import (
	"errors"
	"testing"
)

func TestWindowAtLeast2048(t *testing.T) {
	if WindowSize < 2048 {
		t.Fatalf("WindowSize %d < 2048", WindowSize)
	}
}

// TestWindowEdges walks a window through a sequence of counters; each step
// says what update must answer.
func TestWindowEdges(t *testing.T) {
	const W = WindowSize
	type step struct {
		c    uint64
		want error
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"zero is never valid", []step{{0, ErrTooOld}, {1, nil}, {0, ErrTooOld}}},
		{"in order, then each again", []step{{1, nil}, {2, nil}, {3, nil}, {1, ErrReplay}, {2, ErrReplay}, {3, ErrReplay}}},
		{"reordered within the window", []step{{10, nil}, {7, nil}, {9, nil}, {8, nil}, {7, ErrReplay}, {11, nil}, {10, ErrReplay}}},
		{"exactly the window", []step{{W + 100, nil}, {101, nil}, {100, ErrTooOld}, {101, ErrReplay}}},
		{"window edge on a word boundary", []step{{W + 64, nil}, {65, nil}, {64, ErrTooOld}, {127, nil}, {128, nil}}},
		{"oldest and newest share a ring slot", []step{{W + 63, nil}, {64, nil}, {63, ErrTooOld}, {W + 63, ErrReplay}, {64, ErrReplay}}},
		{"a far jump forgets everything behind it", []step{{1, nil}, {2, nil}, {1 << 40, nil}, {2, ErrTooOld}, {1<<40 - 1, nil}, {1 << 40, ErrReplay}, {1<<40 - W, ErrTooOld}, {1<<40 - W + 1, nil}}},
		{"a jump of exactly one ring clears stale bits", []step{{5, nil}, {5 + windowBits, nil}, {5 + windowBits - 1, nil}, {5 + windowBits, ErrReplay}}},
		{"jumps of less than a ring keep recent bits", []step{{100, nil}, {100 + 64*10, nil}, {100, ErrReplay}, {101, nil}, {100 + 64*10 + 1, nil}, {101, ErrReplay}}},
		{"top of the counter space", []step{{^uint64(0), nil}, {^uint64(0), ErrReplay}, {^uint64(0) - 1, nil}, {^uint64(0) - W, ErrTooOld}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var w window
			for i, s := range c.steps {
				pre := w.check(s.c)
				got := w.update(s.c)
				if !errors.Is(got, s.want) || !errors.Is(pre, s.want) {
					t.Fatalf("step %d: counter %d: check %v, update %v, want %v", i, s.c, pre, got, s.want)
				}
			}
		})
	}
}

// TestWindowEveryCounterOnce feeds a long shuffled stream with duplicates,
// within the window, and checks each counter is accepted exactly once and
// nothing within the window is wrongly refused.
func TestWindowEveryCounterOnce(t *testing.T) {
	var w window
	seen := map[uint64]bool{}
	next := uint64(1)
	x := uint64(88172645463325252)
	for range 200000 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		var c uint64
		if x%3 == 0 || next < 2 {
			c = next
			next++
		} else {
			// Anything up to the window behind the newest.
			back := x % uint64(min(uint64(WindowSize)-1, next-1))
			c = next - 1 - back
		}
		err := w.update(c)
		if seen[c] {
			if !errors.Is(err, ErrReplay) {
				t.Fatalf("counter %d accepted twice (top %d): %v", c, w.top, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("fresh counter %d refused (top %d): %v", c, w.top, err)
		}
		seen[c] = true
	}
}

func TestWindowResetSeen(t *testing.T) {
	for _, top := range []uint64{0, 1, 63, 64, 65, 1000, WindowSize * 3} {
		var w window
		w.resetSeen(top)
		for c := uint64(1); c <= top && c+WindowSize > top; c++ {
			if err := w.check(c); !errors.Is(err, ErrReplay) {
				t.Fatalf("top %d: counter %d: %v, want ErrReplay", top, c, err)
			}
		}
		if top >= WindowSize {
			if err := w.check(top - WindowSize); !errors.Is(err, ErrTooOld) {
				t.Fatalf("top %d: below the window: %v", top, err)
			}
		}
		// Every counter after top is fresh, in any order.
		for _, c := range []uint64{top + 2, top + 1, top + 64, top + 63, top + 200, top + WindowSize} {
			if err := w.update(c); err != nil {
				t.Fatalf("top %d: fresh counter %d: %v", top, c, err)
			}
		}
	}
}
