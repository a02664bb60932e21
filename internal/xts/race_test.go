//go:build race

package xts

// The race detector slows the byte-wise reference code down about 50×.
const raceEnabled = true
