// Command azote-card runs one device card (`azote-card blk …`) or the
// one-shot root filesystem builder azoted starts unprivileged
// (`azote-card rootfs …`).
package main

import (
	"fmt"
	"os"

	"github.com/azote/azote/internal/cards/blk"
	"github.com/azote/azote/internal/cards/rootfs"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: azote-card blk|rootfs [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "blk":
		os.Exit(blk.Main(os.Args[2:]))
	case "rootfs":
		os.Exit(rootfs.Main(os.Args[2:]))
	default:
		fmt.Fprintf(os.Stderr, "azote-card: unknown card %q\n", os.Args[1])
		os.Exit(2)
	}
}
