//go:build race

package encap

// The race detector slows everything and instruments sync operations.
const raceEnabled = true
