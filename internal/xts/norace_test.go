//go:build !race

package xts

const raceEnabled = false
