package blk

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/cards/seccomp"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/proc"
	"github.com/azote/azote/internal/vhostuser"
	"github.com/azote/azote/internal/xts"
)

// Main is `azote-card blk`: it takes its configuration and key from the
// private channel, the backing file from an inherited descriptor, and
// serves the vhost-user socket until it is told to stop.
func Main(args []string) int {
	fs := flag.NewFlagSet("azote-card blk", flag.ContinueOnError)
	sock := fs.String("socket", "", "vhost-user socket to listen on")
	backingFD := fs.Int("backing-fd", 3, "inherited descriptor of the backing file")
	channelFD := fs.Int("channel-fd", 4, "inherited descriptor of the private channel")
	metricsSock := fs.String("metrics-socket", "", "unix socket answering with the metrics (JSON)")
	listenFD := fs.Int("listen-fd", -1, "inherited listening vhost-user socket (then --socket only names it)")
	metricsFD := fs.Int("metrics-fd", -1, "inherited listening metrics socket")
	uid := fs.Int("uid", -1, "user (and group) id to drop to once every descriptor is held")
	keyFD := fs.Int("key-fd", -1, "inherited listening socket on which the card hands its key back to root (instance-store volumes, for an azoted that restarted)")
	logRoom := fs.Int64("log-room", DefaultLogRoom, "bytes the card's log (stderr) may reach; no file the card writes may grow past the larger of this and its volume's size")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("card", "blk")
	if err := run(*sock, *backingFD, *channelFD, *metricsSock, *listenFD, *metricsFD, *keyFD, *uid, *logRoom, log); err != nil {
		log.Error("card failed", "err", err)
		return 1
	}
	return 0
}

// DefaultLogRoom is the default --log-room.
const DefaultLogRoom = 64 << 20

func run(sock string, backingFD, channelFD int, metricsSock string, listenFD, metricsFD, keyFD, uid int, logRoom int64, log *slog.Logger) error {
	if sock == "" {
		return fmt.Errorf("--socket is required")
	}
	ch := os.NewFile(uintptr(channelFD), "channel")
	if ch == nil {
		return fmt.Errorf("no channel on fd %d", channelFD)
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
		if keyFD >= 0 && key != nil {
			if escrowSecret == nil {
				key.Free()
				return fmt.Errorf("an instance-store key without an escrow secret")
			}
			escrow = key
			defer escrow.Free()
		} else {
			defer key.Free()
		}
		mem, err := keymem.New(keymem.SizeOf[xts.Cipher]())
		if err != nil {
			return err
		}
		defer mem.Free()
		if cipher, err = keymem.Place[xts.Cipher](mem); err == nil {
			err = xts.Init(cipher, key.Bytes())
		}
		if escrow == nil {
			key.Free()
		}
		if errors.Is(err, xts.ErrNoAESNI) {
			// Never the table-based AES beside other tenants.
			return fmt.Errorf("encrypted volume %s refused: %w", cfg.VolumeID, err)
		}
		if err != nil {
			return fmt.Errorf("volume key: %w", err)
		}
		defer cipher.Wipe()
	} else if key != nil {
		key.Free()
		return fmt.Errorf("a key was sent for a plaintext volume")
	}
	f := os.NewFile(uintptr(backingFD), "backing")
	if f == nil {
		return fmt.Errorf("no backing file on fd %d", backingFD)
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
	l, err := listener(sock, listenFD)
	if err != nil {
		return err
	}
	if metricsSock != "" || metricsFD >= 0 {
		ml, err := listener(metricsSock, metricsFD)
		if err != nil {
			return err
		}
		go serveMetrics(ml, d)
	}
	if keyFD >= 0 && escrow != nil {
		kl, err := listener("key", keyFD)
		if err != nil {
			return err
		}
		go serveKey(kl, escrow.Bytes(), escrowSecret.Bytes(), log)
	}
	b := vhostuser.NewBackend(d, log)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	// From here on the card only serves what it holds: it gives up root,
	// then opens no new sockets or files and starts no processes.
	if uid >= 0 {
		if err := dropPrivileges(uid); err != nil {
			return err
		}
	}
	if err := limitFileSize(f, logRoom); err != nil {
		return err
	}
	if err := seccomp.Install(backingFD); err != nil {
		return err
	}
	go func() {
		<-sigs
		l.Close()
	}()
	log.Info("serving", "volume", cfg.VolumeID, "sectors", d.Capacity(), "queues", cfg.Queues,
		"read_only", cfg.ReadOnly, "encrypted", cfg.Encrypted, "io", d.IOPath())
	return Serve(b, l, log)
}

// limitFileSize keeps every file the card writes (its backing file, its
// log) from growing past the larger of the backing file's size and
// logRoom: a compromised card writing past the end of its volume gets
// EFBIG (SIGXFSZ is ignored), so the volume holds no more than the quota
// counted. Only the hard limit binds: the card cannot raise it once it
// gave up root, and the seccomp filter lets it set no limit at all.
func limitFileSize(backing *os.File, logRoom int64) error {
	st, err := backing.Stat()
	if err != nil {
		return fmt.Errorf("backing fd: %w", err)
	}
	signal.Ignore(syscall.SIGXFSZ)
	lim := uint64(max(st.Size(), logRoom, 0))
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: lim, Max: lim}); err != nil {
		return fmt.Errorf("file size limit: %w", err)
	}
	return nil
}

// serveMetrics answers each connection with the counters, as JSON; azoted
// renders them.
func serveMetrics(l *net.UnixListener, d *Device) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return
		}
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		json.NewEncoder(c).Encode(d.Metrics.Snapshot())
		c.Close()
	}
}

// serveKey answers a connection with the volume key only when its peer is
// azoted: uid 0 (SO_PEERCRED) that first writes the escrow secret azoted
// gave this card at start and can derive again after a restart (from the
// host key). A pid cannot tell azoted: a restarted azoted has a new one,
// and the card, confined, cannot look at /proc to learn it. Any other
// peer, a root process included, gets nothing. The socket sits in the
// instance's directory, root's, bound by azoted.
func serveKey(l *net.UnixListener, key, secret []byte, log *slog.Logger) {
	var got [cardproto.EscrowSecretBytes]byte
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		uid, err := peerUID(c)
		switch {
		case err != nil || uid != 0:
			log.Warn("key request refused: peer is not root", "uid", uid, "err", err)
		case len(secret) != len(got):
			log.Warn("key request refused: no escrow secret")
		default:
			_, err := io.ReadFull(c, got[:])
			if err != nil || subtle.ConstantTimeCompare(got[:], secret) != 1 {
				log.Warn("key request refused: the peer did not prove it is azoted", "err", err)
			} else {
				c.Write(key)
			}
			clear(got[:])
		}
		c.Close()
	}
}

func peerUID(c *net.UnixConn) (uint32, error) {
	cred, err := proc.PeerCred(c)
	if err != nil {
		return 0, err
	}
	return cred.Uid, nil
}

// listener takes an inherited listening socket (azoted binds it, so the
// card needs no access to the directory) or binds path itself.
func listener(path string, fd int) (*net.UnixListener, error) {
	if fd < 0 {
		return Listen(path)
	}
	f := os.NewFile(uintptr(fd), path)
	if f == nil {
		return nil, fmt.Errorf("no listening socket on fd %d", fd)
	}
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return nil, err
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("fd %d is not a unix listening socket", fd)
	}
	return ul, nil
}

// dropPrivileges switches every thread to uid/gid with no supplementary
// groups, for good (real, effective and saved ids).
func dropPrivileges(id int) error {
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(id, id, id); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := syscall.Setresuid(id, id, id); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	if os.Geteuid() != id {
		return fmt.Errorf("still uid %d after dropping to %d", os.Geteuid(), id)
	}
	return nil
}
