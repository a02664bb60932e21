package sandbox

import (
	"errors"
	"os"
	"testing"
)

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Range
		ok   bool
	}{
		{DefaultRange, Range{1879048192, 65536}, true},
		{"100000:10", Range{100000, 10}, true},
		{"0:10", Range{}, false},           // root
		{"65530:10", Range{}, false},       // nobody
		{"2147483600:100", Range{}, false}, // past 2^31
		{"100000", Range{}, false},
		{"100000:0", Range{}, false},
		{"-5:10", Range{}, false},
		{"a:b", Range{}, false},
	} {
		got, err := ParseRange(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRange(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestAllocatorDistinct: no two holders get the same id, ids that live
// processes use are skipped, and a released id comes back last.
func TestAllocatorDistinct(t *testing.T) {
	busy := map[int]bool{1003: true}
	a := &Allocator{r: Range{1000, 6}, inUse: func(Range) map[int]bool { return busy }, taken: map[int]bool{}}
	a.Hold(1001) // a card a previous azoted started
	a.Hold(5)    // outside the range: ignored
	var got []int
	for {
		id, err := a.Take()
		if errors.Is(err, ErrExhausted) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
	}
	if want := []int{1000, 1002, 1004, 1005}; !equal(got, want) {
		t.Fatalf("took %v, want %v", got, want)
	}
	a.Release(1002)
	a.Release(1000)
	if id, _ := a.Take(); id != 1000 {
		t.Fatalf("after releasing 1002 then 1000, took %d, want 1000 (round robin from the last taken)", id)
	}
	if id, _ := a.Take(); id != 1002 {
		t.Fatalf("took %d, want 1002", id)
	}
}

// TestProcIDs finds this test's own ids when the range covers them.
func TestProcIDs(t *testing.T) {
	if u := os.Getuid(); !procIDs(Range{u, 1})[u] {
		t.Fatal("procIDs did not find the uid this test runs under")
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
