// Command azote-card runs one device card: `azote-card blk …`.
package main

import (
	"fmt"
	"os"

	"github.com/azote/azote/internal/cards/blk"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: azote-card blk [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "blk":
		os.Exit(blk.Main(os.Args[2:]))
	default:
		fmt.Fprintf(os.Stderr, "azote-card: unknown card %q\n", os.Args[1])
		os.Exit(2)
	}
}
