// Package cli is the azote command: `azote <noun> <verb>` over the
// controller API. Human tables by default, -o json for scripts, progress on
// stderr for long work, one line and a non-zero exit on error.
package cli
