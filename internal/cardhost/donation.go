package cardhost

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/azote/azote/internal/cards/cardproto"
)

// Donation is the set of descriptors a card inherits, by name. The host
// side gives each file a name; Apply puts the files in the command's
// ExtraFiles and writes, for each, the flag that tells the card where it
// landed (cardproto.FDArg). No descriptor number is written anywhere else
// (the card looks its files up by name: internal/cards/runtime), so
// adding or dropping one cannot put two lists out of step. gVisor's
// runsc/donation is the model.
type Donation struct {
	names []string
	files []*os.File
	fds   map[string]int // where each landed, once applied
}

// Donate adds f under name. The caller keeps f and closes it after the
// child started (the child has its own copy).
func (d *Donation) Donate(name string, f *os.File) {
	for _, n := range d.names {
		if n == name {
			panic(fmt.Sprintf("cardhost: descriptor %q donated twice", name))
		}
	}
	d.names = append(d.names, name)
	d.files = append(d.files, f)
}

// Apply adds the donated files to cmd after any ExtraFiles it already
// has, and their flags to its arguments.
func (d *Donation) Apply(cmd *exec.Cmd) {
	d.fds = map[string]int{}
	for i, name := range d.names {
		fd := 3 + len(cmd.ExtraFiles) + i
		d.fds[name] = fd
		cmd.Args = append(cmd.Args, cardproto.FDArg(name, fd))
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, d.files...)
}

// ProcPath is the path under which the child reaches the file donated as
// name (/proc/self/fd/N), once Apply has run: how a child is executed
// through a descriptor of its binary.
func (d *Donation) ProcPath(name string) string {
	fd, ok := d.fds[name]
	if !ok {
		panic(fmt.Sprintf("cardhost: descriptor %q not donated or not applied", name))
	}
	return fmt.Sprintf("/proc/self/fd/%d", fd)
}
