package cardhost

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/proc"
	"github.com/azote/azote/internal/sandbox"
)

// Restart budget and stop grace: a card that dies more than MaxRestarts
// times within RestartWindow is left dead; a card told to stop gets
// StopGrace to go before it is killed.
const (
	MaxRestarts   = 5
	RestartWindow = time.Minute
	StopGrace     = 3 * time.Second
	// ReadyTimeout bounds how long a new card may take to read its
	// channel.
	ReadyTimeout = 10 * time.Second
)

// Host starts and watches azoted's long-running cards.
type Host struct {
	Binary string             // azote-card
	UIDs   *sandbox.Allocator // gives each card a uid of its own
	Log    *slog.Logger
	// now is the clock of the restart budget (tests move it).
	now func() time.Time
}

// Handle is what the store keeps to re-adopt a card.
type Handle struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
	UID       int    `json:"uid,omitempty"` // its own, from the uid range
}

// Blk is one blk card to run: what it serves and how to reach it, by
// path and by key, not the records behind them.
type Blk struct {
	Config  cardproto.BlkConfig
	Backing string // the volume file
	// DirectIO opens the volume file O_DIRECT.
	DirectIO bool
	// Socket is the vhost-user socket, which azoted binds (0600, root's)
	// and donates; EngineGID, when not 0, is the group allowed to
	// connect (0660): the engine of the instance, alone.
	Socket        string
	EngineGID     int
	MetricsSocket string
	// KeySocket, for an encrypted instance-store volume, is where the
	// card hands its key back to a restarted azoted (escrow). Escrow
	// gives the secret azoted proves itself with.
	KeySocket string
	Escrow    func() (*keymem.Buf, error)
	// Key gives the key of a start (restart: a start after the card
	// died), in locked memory the card host frees; nil for plaintext.
	Key func(restart bool) (*keymem.Buf, error)
	// OpenLog opens the card's log (its stdout and stderr); LogRoom is
	// what it may grow to (the card's --log-room).
	OpenLog func() (*os.File, error)
	LogRoom int64
}

// Marker is what a blk card's command line holds that names it alone:
// how a card is told from a recycled pid, and found when no record names
// it.
func (b *Blk) Marker() string { return BlkMarker(b.Socket) }

// BlkMarker is the marker of the blk card serving socket.
func BlkMarker(socket string) string { return "--socket " + socket }

// spec is what the host needs of a long-running card of any kind.
type spec interface {
	// name names the card in logs: its volume or interface.
	name() string
	// Marker is what the card's command line holds that names it alone.
	Marker() string
	// setup opens and donates what one start of the card needs; it
	// returns the card's arguments (after its kind), what to send on its
	// channel once it runs, and what to close once it has read it.
	setup(d *Donation, uid int, restart bool) (args []string, send func(io.Writer) error, done func(), err error)
	openLog() (*os.File, error)
}

// Card is one running card.
type Card struct {
	spec spec

	mu       sync.Mutex
	pid      int
	start    uint64
	uid      int           // its own uid and gid, kept across restarts
	done     chan struct{} // closed when the process is gone
	restarts []time.Time
}

// Handle is what to record to adopt c again.
func (c *Card) Handle() Handle {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Handle{PID: c.pid, StartTime: c.start, UID: c.uid}
}

// Done is closed when the card's current process is gone.
func (c *Card) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

func (h *Host) clock() time.Time {
	if h.now != nil {
		return h.now()
	}
	return time.Now()
}

// StartBlk starts a blk card with a uid of its own and returns once it
// has its configuration and key. A failed start leaves no process and
// gives the uid back.
func (h *Host) StartBlk(spec Blk) (*Card, error) { return h.start(&spec) }

func (h *Host) start(sp spec) (*Card, error) {
	c := &Card{spec: sp}
	if err := h.spawn(c, false); err != nil {
		if c.uid != 0 {
			h.UIDs.Release(c.uid)
		}
		return nil, err
	}
	return c, nil
}

// AdoptBlk re-attaches to the card a previous azoted started and
// recorded as hd. A card that is not the recorded one (a crash between
// starting a card and recording it can leave one running that no record
// names) would serve on, holding its key, after its instance ends: it is
// killed, after recoverKey (when not nil) had the chance to take an
// instance-store key back from it, which the replacement needs. A card
// that is gone is returned done: Supervise restarts it if it can.
func (h *Host) AdoptBlk(spec Blk, hd Handle, recorded bool, recoverKey func() error) *Card {
	return h.adopt(&spec, hd, recorded, recoverKey)
}

func (h *Host) adopt(spec spec, hd Handle, recorded bool, recoverKey func() error) *Card {
	c := &Card{spec: spec, pid: hd.PID, start: hd.StartTime, uid: hd.UID, done: make(chan struct{})}
	if !h.UIDs.Range().Contains(c.uid) {
		c.uid = 0 // started as nobody by an older azoted, or outside today's range: a restart takes one
	}
	h.UIDs.Hold(c.uid)
	done := c.done
	switch {
	case !recorded || !proc.Same(hd.PID, hd.StartTime, spec.Marker()):
		if recoverKey != nil {
			recoverKey()
		}
		if n := proc.KillMarked(spec.Marker()); n > 0 {
			h.Log.Warn("killed a card no record named; starting a new one", "card", spec.name())
		}
		close(done)
	default:
		if _, err := proc.WatchPID(hd.PID, func() { close(done) }); err != nil {
			close(done)
		} else if recoverKey != nil {
			if err := recoverKey(); err != nil {
				h.Log.Warn("could not recover the instance-store key from its card; it cannot be restarted if it dies", "card", spec.name(), "err", err)
			}
		}
	}
	return c
}

// Supervise restarts c each time it dies, while the restart budget
// allows, until stop is closed or stopping says the card is being
// stopped on purpose. restarted runs after each restart (to record the
// new handle). The engine reconnects to the new card on its own; requests
// the dead card had not completed are fetched again from the ring.
func (h *Host) Supervise(c *Card, stop <-chan struct{}, stopping func() bool, restarted func()) {
	name := c.spec.name()
	for {
		select {
		case <-c.Done():
		case <-stop:
			return
		}
		if stopping() {
			return
		}
		if !c.allowRestart(h.clock()) {
			h.Log.Error("card keeps dying; not restarting it", "card", name)
			h.releaseUID(c)
			return
		}
		if err := h.spawn(c, true); err != nil {
			h.Log.Error("restarting card failed", "card", name, "err", err)
			h.releaseUID(c)
			return
		}
		h.Log.Warn("card died and was restarted", "card", name, "pid", c.Handle().PID)
		if restarted != nil {
			restarted()
		}
	}
}

// allowRestart counts a restart at now against the budget: at most
// MaxRestarts within RestartWindow.
func (c *Card) allowRestart(now time.Time) bool {
	recent := c.restarts[:0]
	for _, t := range c.restarts {
		if now.Sub(t) < RestartWindow {
			recent = append(recent, t)
		}
	}
	c.restarts = append(recent, now)
	return len(c.restarts) <= MaxRestarts
}

// Stop ends every card: SIGTERM to all, then, for each, SIGKILL if it
// is not gone within StopGrace. Their uids go back to the allocator.
func (h *Host) Stop(cards []*Card) {
	for _, c := range cards {
		hd := c.Handle()
		if proc.Same(hd.PID, hd.StartTime, c.spec.Marker()) {
			syscall.Kill(hd.PID, syscall.SIGTERM)
		}
	}
	for _, c := range cards {
		select {
		case <-c.Done():
		case <-time.After(StopGrace):
			hd := c.Handle()
			if proc.Same(hd.PID, hd.StartTime, c.spec.Marker()) {
				syscall.Kill(hd.PID, syscall.SIGKILL)
			}
			select {
			case <-c.Done():
			case <-time.After(2 * time.Second):
			}
		}
		h.releaseUID(c)
	}
}

// releaseUID gives back the uid of a card that is gone for good. One
// that still runs keeps it (the allocator would see it in /proc anyway).
func (h *Host) releaseUID(c *Card) {
	select {
	case <-c.Done():
	default:
		return
	}
	c.mu.Lock()
	uid := c.uid
	c.mu.Unlock()
	if uid != 0 {
		h.UIDs.Release(uid)
	}
}

// spawn starts c's process and hands it its configuration (and key) over
// a fresh socketpair; it returns once the card has read them. The card
// runs as a uid of its own, taken at its first start and kept until it
// is stopped for good.
func (h *Host) spawn(c *Card, restart bool) error {
	c.mu.Lock()
	uid := c.uid
	c.mu.Unlock()
	if uid == 0 {
		var err error
		if uid, err = h.UIDs.Take(); err != nil {
			return err
		}
		c.mu.Lock()
		c.uid = uid
		c.mu.Unlock()
	}
	ours, theirs, err := socketpair()
	if err != nil {
		return err
	}
	defer ours.Close()
	defer theirs.Close()
	log, err := c.spec.openLog()
	if err != nil {
		return err
	}
	defer log.Close()
	var d Donation
	d.Donate(cardproto.FDChannel, theirs)
	args, send, closeAll, err := c.spec.setup(&d, uid, restart)
	if err != nil {
		return err
	}
	defer closeAll()
	cmd := exec.Command(h.Binary, args...)
	d.Apply(cmd)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		return fmt.Errorf("start %s: %w", h.Binary, err)
	}
	done := make(chan struct{})
	start, _ := proc.StartTime(cmd.Process.Pid)
	c.mu.Lock()
	c.pid, c.start, c.done = cmd.Process.Pid, start, done
	c.mu.Unlock()
	go func() { cmd.Wait(); close(done) }()
	if err := send(ours); err != nil {
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("private channel: %w", err)
	}
	return waitReady(ours, done, cmd.Process, log.Name())
}

// setup implements spec: the volume file, the vhost-user, metrics and
// (instance-store) key sockets, and the key.
func (s *Blk) setup(d *Donation, uid int, restart bool) (args []string, send func(io.Writer) error, done func(), err error) {
	var cl closers
	defer func() {
		if err != nil {
			cl.close()
		}
	}()
	os.Remove(s.Socket)
	flags := os.O_RDWR
	if s.Config.ReadOnly {
		flags = os.O_RDONLY
	}
	if s.DirectIO {
		flags |= unix.O_DIRECT
	}
	backing, err := os.OpenFile(s.Backing, flags, 0)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("opening the backing file of %s: %w", s.Config.VolumeID, err)
	}
	cl.add(backing)
	d.Donate(cardproto.FDBacking, backing)
	if err := listenCard(d, &cl, s.Socket, s.EngineGID, s.MetricsSocket); err != nil {
		return nil, nil, nil, err
	}
	var escrow *keymem.Buf
	if s.KeySocket != "" {
		if escrow, err = s.Escrow(); err != nil {
			return nil, nil, nil, err
		}
		cl.add(freer{escrow})
		// The instance-store key exists only in azoted and this card; the
		// card hands it back to a restarted azoted so that it can restart
		// the card if it dies later.
		kf, err := proc.ListenFile(s.KeySocket)
		if err != nil {
			return nil, nil, nil, err
		}
		cl.add(kf)
		d.Donate(cardproto.FDKey, kf)
	}
	key, err := s.Key(restart)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("volume %s key: %w", s.Config.VolumeID, err)
	}
	cl.add(freer{key})
	args = []string{cardproto.KindBlk, "--socket", s.Socket,
		"--uid", strconv.Itoa(uid), "--log-room", strconv.FormatInt(s.LogRoom, 10)}
	return args, func(w io.Writer) error { return cardproto.SendBlk(w, s.Config, key.Bytes(), escrow.Bytes()) }, cl.close, nil
}

func (s *Blk) name() string               { return s.Config.VolumeID }
func (s *Blk) openLog() (*os.File, error) { return s.OpenLog() }

// closers collects what one start of a card opens, closed once the card
// has read its channel (or at once when the start fails).
type closers []io.Closer

func (c *closers) add(x io.Closer) { *c = append(*c, x) }

func (c closers) close() {
	for _, x := range c {
		x.Close()
	}
}

// listenCard binds the two sockets every long-running card serves, its
// vhost-user socket and its metrics socket, and donates them. azoted
// binds every socket (0600, root's) and hands it over, so the card, which
// drops to an unprivileged user once it holds everything, needs no way
// into the directory they sit in. The engine alone may connect to the
// vhost-user one (group engineGID).
func listenCard(d *Donation, cl *closers, socket string, engineGID int, metrics string) error {
	lf, err := listenFor(socket, engineGID)
	if err != nil {
		return err
	}
	cl.add(lf)
	mf, err := proc.ListenFile(metrics)
	if err != nil {
		return err
	}
	cl.add(mf)
	d.Donate(cardproto.FDListen, lf)
	d.Donate(cardproto.FDMetrics, mf)
	return nil
}

// freer frees locked memory when a start is done with it.
type freer struct{ b *keymem.Buf }

func (f freer) Close() error { f.b.Free(); return nil }

// listenFor binds a listening socket at path for a card to serve; when
// gid is not 0, that group (an engine's) may connect too (0660).
func listenFor(path string, gid int) (*os.File, error) {
	lf, err := proc.ListenFile(path)
	if err == nil && gid != 0 {
		if err = os.Chown(path, 0, gid); err == nil {
			err = os.Chmod(path, 0o660)
		}
		if err != nil {
			lf.Close()
		}
	}
	return lf, err
}

// waitReady waits until the card has read its channel: a closed channel
// (EOF on our end) means it has its key; an early exit means it failed.
func waitReady(ours *os.File, done <-chan struct{}, p *os.Process, logPath string) error {
	ours.SetReadDeadline(time.Now().Add(ReadyTimeout))
	var b [1]byte
	_, rerr := ours.Read(b[:])
	select {
	case <-done:
		return fmt.Errorf("card exited at start-up: %s", lastLines(logPath, 400))
	default:
	}
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		p.Kill()
		<-done
		return fmt.Errorf("card did not take its configuration: %v", rerr)
	}
	return nil
}

// lastLines is the end of a card's log, for an error message.
func lastLines(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	b := make([]byte, st.Size()-off)
	f.ReadAt(b, off)
	return string(b)
}
