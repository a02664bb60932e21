// Command azote-agent is the init process of azote guest images and, in
// a distribution image, its systemd service and sshd's
// AuthorizedKeysCommand.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/azote/azote/internal/agent"
)

const usage = `usage: azote-agent                       (as PID 1: the initramfs init)
       azote-agent serve                 (as azote-agent.service under systemd)
       azote-agent authorized-keys USER  (sshd's AuthorizedKeysCommand)`

func main() {
	var err error
	switch {
	case os.Getpid() == 1:
		err = agent.Run()
	case len(os.Args) == 2 && os.Args[1] == "serve":
		err = agent.Serve()
	case len(os.Args) == 3 && os.Args[1] == "authorized-keys":
		// sshd waits for this on every login: fail fast when the
		// metadata service does not answer.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c := agent.NewIMDS(agent.IMDSEndpoint, 2*time.Second)
		err = agent.AuthorizedKeys(ctx, c, os.Args[2], agent.ConfiguredSSHUser(agent.SSHUserPath), os.Stdout)
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "azote-agent: %v\n", err)
		os.Exit(1)
	}
}
