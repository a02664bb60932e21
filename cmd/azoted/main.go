// Command azoted is the azote host controller.
package main

import (
	"os"

	"github.com/azote/azote/internal/controller"
)

func main() { os.Exit(controller.Main(os.Args[1:])) }
