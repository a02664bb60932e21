// Package stats holds the arithmetic the benchmarks share.
package stats

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Median is the median of v (0 when v is empty); v is left as it is.
func Median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Counts parses a flag's comma-separated list of positive counts
// ("8,64": the concurrencies or pairs a benchmark runs).
func Counts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
