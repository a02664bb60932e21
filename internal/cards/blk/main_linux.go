package blk

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cards/cardproto"
	cardrt "github.com/azote/azote/internal/cards/runtime"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/vhostuser"
	"github.com/azote/azote/internal/xts"
)

// Main is `azote-card blk`: it takes its configuration and key from the
// private channel, the backing file and its listening sockets from the
// descriptors azoted donated by name (internal/cards/runtime), and serves
// the vhost-user socket until it is told to stop.
func Main(args []string) int {
	fs := flag.NewFlagSet("azote-card blk", flag.ContinueOnError)
	card := cardrt.New(cardproto.KindBlk, fs)
	sock := fs.String("socket", "", "vhost-user socket (bound by the card unless a "+cardproto.FDListen+" descriptor is donated)")
	uid := fs.Int("uid", -1, "user (and group) id to drop to once every descriptor is held")
	logRoom := fs.Int64("log-room", DefaultLogRoom, "bytes the card's log (stderr) may reach; no file the card writes may grow past the larger of this and its volume's size")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := run(card, *sock, *uid, *logRoom); err != nil {
		card.Log.Error("card failed", "err", err)
		return 1
	}
	return 0
}

// DefaultLogRoom is the default --log-room.
const DefaultLogRoom = 64 << 20

func run(card *cardrt.Card, sock string, uid int, logRoom int64) error {
	log := card.Log
	if sock == "" {
		return fmt.Errorf("--socket is required")
	}
	ch, err := card.File(cardproto.FDChannel)
	if err != nil {
		return err
	}
	cfg, key, escrowSecret, err := cardproto.ReceiveBlk(ch)
	// Closing the channel tells azoted the configuration arrived.
	ch.Close()
	if err != nil {
		return fmt.Errorf("reading the channel: %w", err)
	}
	defer escrowSecret.Free()
	var cipher *xts.Cipher
	// escrow keeps the key of an instance-store volume for a restarted
	// azoted, which lost its copy (only azoted and this card ever hold it).
	// Every key the card holds (the key, its escrow copy, the round keys)
	// is in locked memory left out of core dumps.
	var escrow *keymem.Buf
	if cfg.Encrypted {
		if card.Has(cardproto.FDKey) && key != nil {
			if escrowSecret == nil {
				key.Free()
				return fmt.Errorf("an instance-store key without an escrow secret")
			}
			escrow = key
			defer escrow.Free()
		} else {
			defer key.Free()
		}
		c, release, err := cardrt.VolumeCipher(key.Bytes())
		if escrow == nil {
			key.Free()
		}
		if errors.Is(err, xts.ErrNoAESNI) {
			return fmt.Errorf("encrypted volume %s refused: %w", cfg.VolumeID, err)
		}
		if err != nil {
			return fmt.Errorf("volume key: %w", err)
		}
		defer release()
		cipher = c
	} else if key != nil {
		key.Free()
		return fmt.Errorf("a key was sent for a plaintext volume")
	}
	f, err := card.File(cardproto.FDBacking)
	if err != nil {
		return err
	}
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return fmt.Errorf("backing fd: %w", err)
	}
	if !cfg.ReadOnly && fl&unix.O_ACCMODE == unix.O_RDONLY {
		return fmt.Errorf("backing file is read-only but the volume is not")
	}
	id := cfg.VolumeID
	if len(id) > idLen {
		id = id[:idLen] // GET_ID answers at most 20 bytes
	}
	dcfg := Config{File: f, ReadOnly: cfg.ReadOnly, Queues: cfg.Queues, Cipher: cipher, ID: id}
	if cfg.IOPS > 0 || cfg.BytesPerS > 0 {
		dcfg.Limiter = NewTokenBucket(cfg.IOPS, cfg.BytesPerS)
	}
	d, err := New(dcfg)
	if err != nil {
		return err
	}
	defer d.Close()
	// A request on an O_DIRECT file blocks its goroutine's thread in the
	// kernel, and the Go runtime takes a blocked thread's processor back
	// only after a while; with as many processors as requests in flight,
	// the queue's slots never wait for each other.
	if n := d.Slots() * dcfg.Queues; n > 1 {
		runtime.GOMAXPROCS(max(runtime.NumCPU(), min(n+2, 256)))
	}
	var l *net.UnixListener
	if card.Has(cardproto.FDListen) {
		l, err = card.Listener(cardproto.FDListen)
	} else {
		l, err = cardrt.ListenVhostUser(sock)
	}
	if err != nil {
		return err
	}
	if card.Has(cardproto.FDMetrics) {
		ml, err := card.Listener(cardproto.FDMetrics)
		if err != nil {
			return err
		}
		go cardrt.ServeMetrics(ml, func() any { return d.Metrics.Snapshot() })
	}
	if card.Has(cardproto.FDKey) && escrow != nil {
		kl, err := card.Listener(cardproto.FDKey)
		if err != nil {
			return err
		}
		go cardrt.ServeKey(kl, escrow.Bytes(), escrowSecret.Bytes(), log)
	}
	b := vhostuser.NewBackend(d, log)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	if err := cardrt.Confine(uid, f, logRoom); err != nil {
		return err
	}
	go func() {
		<-sigs
		l.Close()
	}()
	log.Info("serving", append([]any{"volume", cfg.VolumeID, "sectors", d.Capacity(), "queues", cfg.Queues,
		"read_only", cfg.ReadOnly, "encrypted", cfg.Encrypted}, ioLogAttrs(d.IOPath())...)...)
	return cardrt.ServeVhostUser(b, l, log)
}

// ioLogAttrs says, for the start-up line, how the card reaches its file.
// On the page cache with the mapping, no path is fixed: each transfer
// takes the one its queue measures cheaper for its direction and size
// (choose.go), so the line names the choice and where it starts, and the
// metrics (paths) say what it chose since; nothing is logged per transfer.
func ioLogAttrs(ioPath string) []any {
	switch ioPath {
	case "direct":
		return []any{"io", "direct"}
	case "mapped":
		return []any{"io", "page-cache", "transfers", "mapped or pread/pwrite, whichever measures cheaper per queue, direction and size; starts mapped"}
	}
	return []any{"io", "page-cache", "transfers", "pread/pwrite (the file could not be mapped)"}
}
