//go:build race

package filter

// The race detector allocates on its own account.
const raceEnabled = true
