package net

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	stdnet "net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cards/cardproto"
	cardrt "github.com/azote/azote/internal/cards/runtime"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/proc"
	"github.com/azote/azote/internal/vhostuser"
)

// The device serves the backend's driven-ring interface.
var (
	_ vhostuser.DrivenDevice   = (*Device)(nil)
	_ vhostuser.QueueNumDevice = (*Device)(nil)
	_ vhostuser.FeatureAcker   = (*Device)(nil)
)

// DefaultLogRoom is the default --log-room.
const DefaultLogRoom = 16 << 20

// Main is `azote-card net`: its configuration and VPC keys come from the
// private channel, its vhost-user listener, underlay socket, metrics and
// control listeners from the descriptors azoted donated by name; it opens
// nothing itself.
func Main(args []string) int {
	fs := flag.NewFlagSet("azote-card net", flag.ContinueOnError)
	card := cardrt.New(cardproto.KindNet, fs)
	uid := fs.Int("uid", -1, "user (and group) id to drop to once every descriptor is held")
	logRoom := fs.Int64("log-room", DefaultLogRoom, "bytes the card's log (stderr) may reach")
	fs.String("interface", "", "the network interface served (names the card's process)")
	allowPlaintext := fs.Bool("allow-plaintext", false, "accept a configuration that asks for plaintext encapsulation (benchmarks and tests only)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := run(card, *uid, *logRoom, *allowPlaintext); err != nil {
		card.Log.Error("card failed", "err", err)
		return 1
	}
	return 0
}

func run(card *cardrt.Card, uid int, logRoom int64, allowPlaintext bool) error {
	log := card.Log
	ch, err := card.File(cardproto.FDChannel)
	if err != nil {
		return err
	}
	var cfg cardproto.NetConfig
	keys, err := cardproto.ReceiveNet(ch, &cfg, func() *cardproto.NetState { return &cfg.State })
	ch.Close() // azoted: the configuration arrived
	if err != nil {
		return fmt.Errorf("reading the channel: %w", err)
	}
	if err := checkPlaintext(&cfg, allowPlaintext); err != nil {
		freeAll(keys)
		return err
	}
	if cfg.Plaintext {
		log.Warn("plaintext encapsulation: frames cross the underlay unencrypted (a benchmark's or a test's configuration)")
	}
	mac, err := ParseMAC(cfg.MAC)
	if err != nil {
		freeAll(keys)
		return err
	}
	ufd, err := card.FD(cardproto.FDUnderlay)
	if err != nil {
		freeAll(keys)
		return err
	}
	if t, err := unix.GetsockoptInt(ufd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || t != unix.SOCK_DGRAM {
		freeAll(keys)
		return fmt.Errorf("the underlay descriptor is not a datagram socket")
	}
	pl, err := newPlane(&cfg, keys, sendTo(ufd), log)
	freeAll(keys) // the plane keeps what it derived, in locked memory
	if err != nil {
		return err
	}
	defer pl.close()
	if card.Has(cardproto.FDTap) {
		return runTap(card, pl, ufd, uid, logRoom)
	}
	dev, err := New(Config{MAC: mac, Pairs: cfg.Pairs, MTU: uint16(cfg.MTU)}, pl.sw, ufd)
	if err != nil {
		return err
	}
	defer dev.Close()
	l, err := card.Listener(cardproto.FDListen)
	if err != nil {
		return err
	}
	if err := serveSide(card, pl); err != nil {
		return err
	}
	b := vhostuser.NewBackend(dev, log)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	if err := cardrt.Confine(uid, nil, logRoom); err != nil {
		return err
	}
	go func() {
		<-sigs
		l.Close()
	}()
	log.Info("serving", "interface", cfg.InterfaceID, "vpc", cfg.VPCID, "mac", cfg.MAC, "ip", cfg.State.Self.IP,
		"pairs", cfg.Pairs, "mtu", cfg.MTU, "peers", len(cfg.State.Peers))
	return cardrt.ServeVhostUser(b, l, log)
}

// runTap serves the host gateway's tap device in place of a guest until
// the card is told to stop.
func runTap(card *cardrt.Card, pl *plane, ufd, uid int, logRoom int64) error {
	fd, err := card.FD(cardproto.FDTap)
	if err != nil {
		return err
	}
	// Before confinement: the sandbox allows no fcntl of this kind.
	if err := unix.SetNonblock(fd, true); err != nil {
		return fmt.Errorf("the tap descriptor: %w", err)
	}
	t, err := NewTap(fd, pl.sw, ufd)
	if err != nil {
		return err
	}
	if err := serveSide(card, pl); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	if err := cardrt.Confine(uid, nil, logRoom); err != nil {
		return err
	}
	go t.Run()
	card.Log.Info("serving the host gateway", "interface", pl.cfg.InterfaceID, "vpc", pl.cfg.VPCID,
		"ip", pl.cfg.State.Self.IP, "peers", len(pl.cfg.State.Peers))
	select {
	case <-sigs:
		t.Stop()
		return nil
	case <-t.Done():
		return errors.New("the tap device failed")
	}
}

// serveSide serves the metrics and control sockets when azoted gave them.
func serveSide(card *cardrt.Card, pl *plane) error {
	log := card.Log
	if card.Has(cardproto.FDMetrics) {
		ml, err := card.Listener(cardproto.FDMetrics)
		if err != nil {
			return err
		}
		go cardrt.ServeMetrics(ml, func() any { return pl.metrics() })
	}
	if card.Has(cardproto.FDControl) {
		cl, err := card.Listener(cardproto.FDControl)
		if err != nil {
			return err
		}
		go serveControl(cl, pl, log)
	}
	return nil
}

func freeAll(keys []*keymem.Buf) {
	for _, k := range keys {
		k.Free()
	}
}

// sendTo writes a datagram to the underlay.
func sendTo(fd int) func(int, netip.AddrPort, []byte) error {
	return func(_ int, to netip.AddrPort, pkt []byte) error {
		sa := &unix.SockaddrInet4{Addr: to.Addr().As4(), Port: int(to.Port())}
		for {
			err := unix.Sendto(fd, pkt, unix.MSG_DONTWAIT, sa)
			if err != unix.EINTR {
				return err
			}
		}
	}
}

// serveControl takes a new state of the VPC from each connection whose
// peer is root (azoted; the socket sits in the instance's directory,
// root's): peers, rules and keys, applied at once, answered with one
// byte, 0 for applied. A state the card refuses leaves the old one.
func serveControl(l *stdnet.UnixListener, pl *plane, log *slog.Logger) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if !errors.Is(err, stdnet.ErrClosed) {
				log.Error("control socket", "err", err)
			}
			return
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if cred, err := proc.PeerCred(c); err != nil || cred.Uid != 0 {
			log.Warn("control connection refused: peer is not root")
			c.Close()
			continue
		}
		var st cardproto.NetState
		keys, err := cardproto.ReceiveNet(c, &st, func() *cardproto.NetState { return &st })
		if err == nil {
			err = pl.apply(&st, keys)
			freeAll(keys)
		}
		status := byte(0)
		if err != nil {
			status = 1
			log.Warn("VPC state refused", "err", err)
		} else {
			log.Info("VPC state applied", "peers", len(st.Peers), "key_epoch", st.KeyEpochs[0], "next_key_epoch", st.NextKeyEpoch)
		}
		c.Write([]byte{status})
		io.Copy(io.Discard, io.LimitReader(c, 1)) // wait for azoted to close
		c.Close()
	}
}
