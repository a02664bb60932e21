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
	for i, name := range d.names {
		cmd.Args = append(cmd.Args, cardproto.FDArg(name, 3+len(cmd.ExtraFiles)+i))
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, d.files...)
}
