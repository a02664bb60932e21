package stats

import "testing"

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		in := append([]float64(nil), tc.in...)
		if got := Median(in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("Median reordered its input: %v", in)
			}
		}
	}
}

func TestCounts(t *testing.T) {
	got, err := Counts("8, 64")
	if err != nil || len(got) != 2 || got[0] != 8 || got[1] != 64 {
		t.Fatalf("Counts(8, 64) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "8,x", "-1"} {
		if _, err := Counts(bad); err == nil {
			t.Errorf("Counts(%q) accepted", bad)
		}
	}
}
