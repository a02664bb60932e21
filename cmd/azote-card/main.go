// Command azote-card runs one device card, `azote-card blk …` or
// `azote-card net …`; the
// one-shot root filesystem builder azoted starts unprivileged,
// `azote-card rootfs …`; the one-shot fill card that writes an imported
// disk into a new volume, `azote-card fill …`; or starts another program confined to a uid of
// its own, `azote-card exec --uid N -- PROGRAM ARGS…` (how azoted starts
// QEMU).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/azote/azote/internal/cards/blk"
	"github.com/azote/azote/internal/cards/fill"
	netcard "github.com/azote/azote/internal/cards/net"
	"github.com/azote/azote/internal/cards/rootfs"
	"github.com/azote/azote/internal/sandbox"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: azote-card blk [flags] | azote-card net [flags] | azote-card rootfs [flags] | azote-card fill [flags] | azote-card exec --uid N [--group G] -- PROGRAM [ARGS]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "blk":
		os.Exit(blk.Main(os.Args[2:]))
	case "net":
		os.Exit(netcard.Main(os.Args[2:]))
	case "rootfs":
		os.Exit(rootfs.Main(os.Args[2:]))
	case "fill":
		os.Exit(fill.Main(os.Args[2:]))
	case "exec":
		os.Exit(execMain(os.Args[2:]))
	default:
		fmt.Fprintf(os.Stderr, "azote-card: unknown card %q\n", os.Args[1])
		os.Exit(2)
	}
}

type ints []int

func (v *ints) String() string { return fmt.Sprint(*v) }
func (v *ints) Set(s string) error {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		return err
	}
	*v = append(*v, n)
	return nil
}

func execMain(args []string) int {
	fs := flag.NewFlagSet("azote-card exec", flag.ContinueOnError)
	uid := fs.Int("uid", -1, "user (and group) id to run the program as")
	var groups ints
	fs.Var(&groups, "group", "supplementary group (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "azote-card exec: no program")
		return 2
	}
	err := sandbox.Exec(*uid, groups, fs.Args(), os.Environ())
	fmt.Fprintf(os.Stderr, "azote-card exec: %v\n", err)
	return 1
}
