package cardproto

import (
	"fmt"
	"strconv"
	"strings"
)

// Kinds of card: the first argument of azote-card.
const (
	KindBlk    = "blk"    // serves one virtio-blk device over vhost-user
	KindRootfs = "rootfs" // one-shot: fills a new root volume from an image
	KindFill   = "fill"   // one-shot: fills an imported volume from a stream
)

// A card inherits its descriptors by name, never by number: the host
// side (internal/cardhost) donates each one under a name and writes the
// flag that says where it landed (FDFlag, once per descriptor:
// `--fd channel=4`); the card side (internal/cards/runtime) looks it up by
// that name. No fd number is written down twice, so nothing is kept in
// sync by hand (gVisor's runsc/donation is the model).
const FDFlag = "fd"

// Names of the descriptors a card may inherit.
const (
	FDChannel = "channel"    // the private channel (socketpair end)
	FDBacking = "backing"    // a blk card's volume file
	FDListen  = "vhost-user" // a blk card's listening vhost-user socket
	FDMetrics = "metrics"    // a listening socket answering with metrics
	FDKey     = "key"        // a listening socket handing an instance-store key back to azoted
	FDArchive = "archive"    // a rootfs card's gzip'd initramfs
	FDOut     = "out"        // a rootfs card's destination volume file
	FDWork    = "work"       // a rootfs card's empty work directory
	FDBinary  = "binary"     // the card's own executable (a rootfs card re-execs through it)
	FDIn      = "in"         // a fill card's input: the read end of a pipe carrying the disk
)

// FDs is the set of named descriptors given on the command line; it is a
// flag.Value for FDFlag.
type FDs map[string]int

func (f FDs) String() string {
	var b strings.Builder
	for name, fd := range f {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", name, fd)
	}
	return b.String()
}

// Set parses one NAME=FD.
func (f FDs) Set(s string) error {
	name, num, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("want NAME=FD, not %q", s)
	}
	fd, err := strconv.Atoi(num)
	if err != nil || fd < 3 {
		return fmt.Errorf("descriptor %q: want a number from 3", num)
	}
	if _, dup := f[name]; dup {
		return fmt.Errorf("descriptor %q given twice", name)
	}
	f[name] = fd
	return nil
}

// FDArg is the argument that names descriptor fd.
func FDArg(name string, fd int) string { return "--" + FDFlag + "=" + name + "=" + strconv.Itoa(fd) }
