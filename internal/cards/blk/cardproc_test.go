package blk

import (
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cardhost"
	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/testutil"
)

// TestMain ends the cards the tests left running (testutil.Main).
func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }

// The tests that run the real azote-card binary share these helpers.

// buildCard builds the azote-card binary and returns its path; in -short
// it skips the test instead.
func buildCard(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the card binary; skipped in -short")
	}
	return testutil.CardBinary(t)
}

// logBuffer collects a card's log while the card writes it.
type logBuffer struct{ testutil.LogBuffer }

// waitFor waits up to d for s to appear in the log, which reaches the
// buffer through a pipe and a copying goroutine, and says whether it did.
func (l *logBuffer) waitFor(s string, d time.Duration) bool {
	for deadline := time.Now().Add(d); !strings.Contains(l.String(), s); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// cardOpts say how startCardProcess runs a card. The zero value opens the
// backing file O_RDWR, serves it as the encrypted volume vol-restart,
// sends the card's log to stderr and waits until the card listens.
type cardOpts struct {
	flags    int       // open flags of the backing file besides O_RDWR
	log      io.Writer // gets the card's log, besides stderr
	env      []string  // added to the card's environment
	volumeID string    // the volume's id, vol-restart if empty
	noWait   bool      // return once the card has its configuration, listening or not
}

// startCardProcess runs the real azote-card binary on a backing file, with
// a copy of key sent over a socketpair, as azoted does.
func startCardProcess(t *testing.T, bin, sock, backing string, key []byte, o cardOpts) *exec.Cmd {
	t.Helper()
	f, err := os.OpenFile(backing, os.O_RDWR|o.flags, 0)
	if err != nil && o.flags != 0 {
		t.Skipf("cannot open %s with flags %#x: %v", backing, o.flags, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
	defer ours.Close()
	os.Remove(sock)
	cmd := exec.Command(bin, "blk", "--socket", sock)
	if o.env != nil {
		cmd.Env = append(os.Environ(), o.env...)
	}
	var d cardhost.Donation
	d.Donate(cardproto.FDBacking, f)
	d.Donate(cardproto.FDChannel, theirs)
	d.Apply(cmd)
	cmd.Stderr = os.Stderr
	if o.log != nil {
		cmd.Stderr = io.MultiWriter(os.Stderr, o.log)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	cfg := cardproto.BlkConfig{VolumeID: o.volumeID, Queues: 1, Encrypted: true}
	if cfg.VolumeID == "" {
		cfg.VolumeID = "vol-restart"
	}
	if err := cardproto.SendBlk(ours, cfg, append([]byte(nil), key...), nil); err != nil {
		t.Fatal(err)
	}
	if o.noWait {
		return cmd
	}
	for i := 0; i < 500; i++ {
		if listening(sock) {
			return cmd
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("card did not open its socket")
	return nil
}

// listening reports whether a unix socket bound at path listens: the
// socket file appears at bind, before listen, and a dial between the two
// is refused. /proc/net/unix marks a listening socket with the
// __SO_ACCEPTCON flag (0x10000); asking it leaves the card undisturbed.
func listening(path string) bool {
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 8 && f[7] == path {
			flags, err := strconv.ParseUint(f[3], 16, 32)
			if err == nil && flags&0x10000 != 0 {
				return true
			}
		}
	}
	return false
}
