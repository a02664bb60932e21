// Package stats holds the arithmetic the benchmarks share.
package stats

import "sort"

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
