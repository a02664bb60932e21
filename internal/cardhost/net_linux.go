package cardhost

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/proc"
)

// Net is one net card to run: the interface it serves and how to reach
// it. azoted binds the underlay socket once and keeps it, so a restarted
// card receives on the same address its peers know.
type Net struct {
	Config cardproto.NetConfig
	// State gives the VPC's state and keys (in the order the state names
	// them) at each start; the card host frees the keys.
	State func() (cardproto.NetState, []*keymem.Buf, error)
	// Underlay gives the bound UDP socket to donate at each start, which
	// the caller keeps open.
	Underlay func() (*os.File, error)
	// Socket is the vhost-user socket (group EngineGID may connect);
	// ControlSocket where azoted pushes new states (PushNet).
	Socket        string
	EngineGID     int
	MetricsSocket string
	ControlSocket string
	OpenLog       func() (*os.File, error)
	LogRoom       int64
	// Tap, when set, gives the tap device the card serves in place of a
	// guest (the host gateway's interface); there is no vhost-user
	// socket then.
	Tap func() (*os.File, error)
	// AllowPlaintext lets the card take a Config with Plaintext set
	// (--allow-plaintext): bench/net's baseline and tests only; azoted
	// never sets it.
	AllowPlaintext bool
}

// StartNet starts a net card with a uid of its own and returns once it
// has its configuration and keys.
func (h *Host) StartNet(spec Net) (*Card, error) { return h.start(&spec) }

// AdoptNet re-attaches to a net card a previous azoted started (AdoptBlk).
func (h *Host) AdoptNet(spec Net, hd Handle, recorded bool) *Card {
	return h.adopt(&spec, hd, recorded, nil)
}

// NetMarker is the marker of the net card serving interface id.
func NetMarker(id string) string { return "--interface " + id }

// Marker implements spec.
func (s *Net) Marker() string { return NetMarker(s.Config.InterfaceID) }

func (s *Net) name() string               { return s.Config.InterfaceID }
func (s *Net) openLog() (*os.File, error) { return s.OpenLog() }

// setup implements spec: the underlay, the vhost-user, metrics and
// control sockets, and the current state with its keys.
func (s *Net) setup(d *Donation, uid int, restart bool) (args []string, send func(io.Writer) error, done func(), err error) {
	var cl closers
	defer func() {
		if err != nil {
			cl.close()
		}
	}()
	if s.Tap != nil {
		mf, err := proc.ListenFile(s.MetricsSocket)
		if err != nil {
			return nil, nil, nil, err
		}
		cl.add(mf)
		d.Donate(cardproto.FDMetrics, mf)
		t, err := s.Tap()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("interface %s: tap: %w", s.Config.InterfaceID, err)
		}
		cl.add(t)
		d.Donate(cardproto.FDTap, t)
	} else if err := listenCard(d, &cl, s.Socket, s.EngineGID, s.MetricsSocket); err != nil {
		return nil, nil, nil, err
	}
	cf, err := proc.ListenFile(s.ControlSocket)
	if err != nil {
		return nil, nil, nil, err
	}
	cl.add(cf)
	u, err := s.Underlay()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("interface %s: underlay: %w", s.Config.InterfaceID, err)
	}
	d.Donate(cardproto.FDUnderlay, u)
	d.Donate(cardproto.FDControl, cf)
	st, keys, err := s.State()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("interface %s: %w", s.Config.InterfaceID, err)
	}
	for _, k := range keys {
		cl.add(freer{k})
	}
	cfg := s.Config
	cfg.State = st
	args = []string{cardproto.KindNet, "--interface", s.Config.InterfaceID,
		"--uid", strconv.Itoa(uid), "--log-room", strconv.FormatInt(s.LogRoom, 10)}
	if s.AllowPlaintext {
		args = append(args, "--allow-plaintext")
	}
	return args, func(w io.Writer) error { return cardproto.SendNet(w, cfg, keyBytes(keys)) }, cl.close, nil
}

func keyBytes(keys []*keymem.Buf) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = k.Bytes()
	}
	return out
}

// PushNet sends a running net card the VPC's new state and keys over its
// control socket and waits for its answer: nil once the card applied it.
func PushNet(controlSocket string, st cardproto.NetState, keys []*keymem.Buf) error {
	c, err := net.DialTimeout("unix", controlSocket, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := cardproto.SendNet(c, st, keyBytes(keys)); err != nil {
		return err
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fmt.Errorf("no answer from the card: %w", err)
	}
	if b[0] != 0 {
		return fmt.Errorf("the card refused the state (see its log)")
	}
	return nil
}
