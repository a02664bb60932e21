// Command azote is the command-line client of azoted.
package main

import (
	"os"

	"github.com/azote/azote/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
