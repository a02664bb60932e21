// Command azote-agent is the init process of azote guest images.
package main

import (
	"fmt"
	"os"

	"github.com/azote/azote/internal/agent"
)

func main() {
	if err := agent.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "azote-agent: %v\n", err)
		os.Exit(1)
	}
}
