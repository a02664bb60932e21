package controller

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/engine"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/proc"
	"github.com/azote/azote/internal/store"
)

// A card is the process that serves one volume of one instance. azoted
// starts it before the engine (the engine connects to its socket), keeps
// its data key in memory to restart it if it dies, and stops it after the
// engine has exited. Cards run in sessions of their own and are re-adopted
// like engines.

// cardHandle is what the store keeps to re-adopt a card.
type cardHandle struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
	UID       int    `json:"uid,omitempty"` // its own, from the uid range
}

type cardProc struct {
	vol      volumeRecord
	readOnly bool
	queues   int
	pid      int
	start    uint64
	uid      int           // its own uid and gid, kept across restarts
	done     chan struct{} // closed when the process is gone
	restarts []time.Time
}

// cardSet is the cards of one running instance.
type cardSet struct {
	mu       sync.Mutex
	cards    map[string]*cardProc // by volume id
	stopping bool
}

func (c *Controller) cardMarker(instID, volID string) string {
	return "--socket " + c.cardSocket(instID, volID)
}

func (c *Controller) cardSocket(instID, volID string) string {
	return filepath.Join(c.instanceDir(instID), volID+".sock")
}

func (c *Controller) cardMetricsSocket(instID, volID string) string {
	return filepath.Join(c.instanceDir(instID), volID+".metrics.sock")
}

// startCards starts one card per attached volume and returns the disks
// the engine must connect to. On error every card started is stopped.
func (c *Controller) startCards(rt *instanceRuntime, rec instanceRecord) ([]engine.Disk, error) {
	set := &cardSet{cards: map[string]*cardProc{}}
	rt.mu.Lock()
	rt.cards = set
	rt.mu.Unlock()
	var disks []engine.Disk
	for _, att := range rec.Volumes {
		var v volumeRecord
		if err := c.store.View(func(tx store.Tx) error { return tx.Get(tableVolumes, att.VolumeID, &v) }); err != nil {
			c.stopCards(rt)
			return nil, api.Errorf(api.CodeVolumeNotFound, "attached volume %s: %v", att.VolumeID, err)
		}
		if v.Kind == api.VolumeInstanceStore {
			// A new launch starts from zeros under a new key: a file a
			// crash left short (in the middle of a discard) is made whole.
			if fi, err := os.Stat(c.volumeFile(v.ID)); err == nil && fi.Size() != v.SizeBytes {
				if err := os.Truncate(c.volumeFile(v.ID), v.SizeBytes); err != nil {
					c.stopCards(rt)
					return nil, fmt.Errorf("volume %s: resizing its instance-store file: %w", v.ID, err)
				}
			}
		}
		key, err := c.launchKey(v, false)
		if err != nil {
			c.stopCards(rt)
			return nil, fmt.Errorf("volume %s key: %w", v.ID, err)
		}
		cp := &cardProc{vol: v, readOnly: att.ReadOnly, queues: rec.VCPUs}
		err = c.spawnCard(rt, cp, key)
		key.Free()
		if err != nil {
			if cp.uid != 0 {
				c.uids.Release(cp.uid) // a failed spawn leaves no process behind
			}
			c.stopCards(rt)
			return nil, api.Errorf(api.CodeEngineFailure, "volume %s card: %v", v.ID, err)
		}
		set.mu.Lock()
		set.cards[v.ID] = cp
		set.mu.Unlock()
		c.wg.Add(1)
		go c.superviseCard(rt, rec.ID, set, cp)
		disks = append(disks, engine.Disk{ID: v.ID, Socket: c.cardSocket(rec.ID, v.ID), Queues: rec.VCPUs})
	}
	return disks, nil
}

// launchKey returns the key a card needs now, in locked memory the caller
// frees (nil for a plaintext volume). An instance-store volume gets a
// fresh key at each launch, kept in azoted's memory only so that a dead
// card can be restarted; it is forgotten when the machine ends.
//
// A restart must get the key the volume was written with: an
// instance-store key that is no longer in memory (azoted restarted since
// the launch) is an error, never a fresh key, which would hand the guest
// noise for its data.
func (c *Controller) launchKey(v volumeRecord, restart bool) (*keymem.Buf, error) {
	if !v.Encrypted {
		return nil, nil
	}
	if v.Kind == api.VolumePersistent {
		k, err := c.volumeKey(v)
		if err == nil {
			c.event("VolumeKeyUse", "volume/"+v.ID, map[string]any{"kind": v.Kind, "purpose": "unwrapped for its card", "restart": restart})
		}
		return k, err
	}
	c.mu.Lock()
	if k, ok := c.ephemeralKeys[v.ID]; ok {
		c.mu.Unlock()
		return keymem.Copy(k.Bytes())
	}
	if restart {
		c.mu.Unlock()
		return nil, errEphemeralKeyGone
	}
	k, err := c.volumeKey(v)
	if err != nil {
		c.mu.Unlock()
		return nil, err
	}
	kept, err := keymem.Copy(k.Bytes())
	if err != nil {
		c.mu.Unlock()
		k.Free()
		return nil, err
	}
	c.ephemeralKeys[v.ID] = kept
	c.mu.Unlock()
	c.event("VolumeKeyUse", "volume/"+v.ID, map[string]any{"kind": v.Kind, "purpose": "instance-store key made for this launch"})
	return k, nil
}

func (c *Controller) forgetKey(volID string) {
	c.mu.Lock()
	if k, ok := c.ephemeralKeys[volID]; ok {
		k.Free()
		delete(c.ephemeralKeys, volID)
	}
	c.mu.Unlock()
}

// spawnCard starts the card process and hands it its configuration and
// key over a fresh socketpair; it returns once the vhost-user socket is up.
// The card runs as a uid of its own, taken at its first start and kept
// until it is stopped for good (releaseCardUID).
func (c *Controller) spawnCard(rt *instanceRuntime, cp *cardProc, key *keymem.Buf) error {
	instID := rt.id
	if cp.uid == 0 {
		uid, err := c.uids.Take()
		if err != nil {
			return err
		}
		cp.uid = uid
	}
	rt.mu.Lock()
	engineGID := rt.engineUID
	rt.mu.Unlock()
	sock := c.cardSocket(instID, cp.vol.ID)
	os.Remove(sock)
	flags := os.O_RDWR
	if cp.readOnly {
		flags = os.O_RDONLY
	}
	if cp.vol.DirectIO {
		flags |= unix.O_DIRECT
	}
	backing, err := os.OpenFile(c.volumeFile(cp.vol.ID), flags, 0)
	if err != nil {
		return fmt.Errorf("opening the backing file of %s: %w", cp.vol.ID, err)
	}
	defer backing.Close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "channel"), os.NewFile(uintptr(fds[1]), "channel")
	defer ours.Close()
	logPath := cardLogPath(c.instanceDir(instID), cp.vol.ID)
	logRoom := cardLogRoom(c.cfg.LogLimit)
	if err := boundLog(logPath, c.cfg.LogLimit); err != nil {
		c.log.Warn("bounding a card log", "instance", instID, "volume", cp.vol.ID, "err", err)
	}
	if err := renewLog(logPath, c.cfg.LogLimit, logRoom/2); err != nil {
		c.log.Warn("renewing a card log", "instance", instID, "volume", cp.vol.ID, "err", err)
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		theirs.Close()
		return err
	}
	defer log.Close()
	// azoted binds both sockets (0600, root's) and hands them over, so the
	// card, which drops to an unprivileged user once it holds everything,
	// needs no way into the instance directory. The engine of this
	// instance alone may connect to the vhost-user one (group engineGID).
	lf, err := proc.ListenFile(sock)
	if err == nil && engineGID != 0 {
		if err = os.Chown(sock, 0, engineGID); err == nil {
			err = os.Chmod(sock, 0o660)
		}
		if err != nil {
			lf.Close()
		}
	}
	if err != nil {
		theirs.Close()
		return err
	}
	defer lf.Close()
	mf, err := proc.ListenFile(c.cardMetricsSocket(instID, cp.vol.ID))
	if err != nil {
		theirs.Close()
		return err
	}
	defer mf.Close()
	args := []string{"blk", "--socket", sock, "--backing-fd", "3", "--channel-fd", "4",
		"--listen-fd", "5", "--metrics-fd", "6", "--uid", fmt.Sprint(cp.uid), "--log-room", fmt.Sprint(logRoom)}
	files := []*os.File{backing, theirs, lf, mf}
	var escrow *keymem.Buf
	if cp.vol.Encrypted && cp.vol.Kind == api.VolumeInstanceStore {
		if escrow, err = c.escrowSecret(instID, cp.vol.ID); err != nil {
			theirs.Close()
			return err
		}
		defer escrow.Free()
		// The instance-store key exists only in azoted and this card; the
		// card hands it back to a restarted azoted so that it can restart
		// the card if it dies later.
		kf, err := proc.ListenFile(c.cardKeySocket(instID, cp.vol.ID))
		if err != nil {
			theirs.Close()
			return err
		}
		defer kf.Close()
		args = append(args, "--key-fd", "7")
		files = append(files, kf)
	}
	cmd := exec.Command(c.cfg.CardBinary, args...)
	cmd.ExtraFiles = files
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		return fmt.Errorf("start %s: %w", c.cfg.CardBinary, err)
	}
	cp.pid = cmd.Process.Pid
	cp.start, _ = proc.StartTime(cp.pid)
	cp.done = make(chan struct{})
	go func() { cmd.Wait(); close(cp.done) }()
	cfg := cardproto.BlkConfig{VolumeID: cp.vol.ID, Queues: cp.queues, ReadOnly: cp.readOnly, Encrypted: cp.vol.Encrypted,
		IOPS: cp.vol.IOPS, BytesPerS: cp.vol.ThroughputMiB << 20}
	if err := cardproto.SendBlk(ours, cfg, key.Bytes(), escrow.Bytes()); err != nil {
		cmd.Process.Kill()
		<-cp.done
		return fmt.Errorf("private channel: %w", err)
	}
	// The card is ready once it has read its channel: a closed channel
	// (EOF on our end) means it has the key; an early exit means it failed.
	ours.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	_, rerr := ours.Read(b[:])
	select {
	case <-cp.done:
		return fmt.Errorf("card exited at start-up: %s", lastLines(log.Name()))
	default:
	}
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		cmd.Process.Kill()
		<-cp.done
		return fmt.Errorf("card did not take its configuration: %v", rerr)
	}
	return nil
}

var errEphemeralKeyGone = errors.New("the instance-store key of this launch is gone (azoted restarted since); the volume cannot be served again until the instance is stopped and started")

// superviseCard restarts a card that dies while its instance runs. The
// engine reconnects to the new card on its own (reconnect=1); requests the
// dead card had not completed are fetched again from the ring.
func (c *Controller) superviseCard(rt *instanceRuntime, instID string, set *cardSet, cp *cardProc) {
	defer c.wg.Done()
	for {
		select {
		case <-cp.done:
		case <-rt.release:
			return
		}
		set.mu.Lock()
		stopping := set.stopping
		set.mu.Unlock()
		if stopping {
			return
		}
		now := time.Now()
		recent := cp.restarts[:0]
		for _, t := range cp.restarts {
			if now.Sub(t) < time.Minute {
				recent = append(recent, t)
			}
		}
		cp.restarts = append(recent, now)
		if len(cp.restarts) > 5 {
			c.log.Error("card keeps dying; not restarting it", "instance", instID, "volume", cp.vol.ID)
			c.releaseCardUID(cp)
			return
		}
		key, err := c.launchKey(cp.vol, true)
		if err == nil {
			err = c.spawnCard(rt, cp, key)
		}
		key.Free()
		if err != nil {
			c.log.Error("restarting card failed", "instance", instID, "volume", cp.vol.ID, "err", err)
			c.releaseCardUID(cp)
			return
		}
		c.log.Warn("card died and was restarted", "instance", instID, "volume", cp.vol.ID, "pid", cp.pid)
		c.recordCards(instID, set)
	}
}

// cardKeySocket is where an instance-store card hands its key back.
func (c *Controller) cardKeySocket(instID, volID string) string {
	return filepath.Join(c.instanceDir(instID), volID+".key.sock")
}

// recoverKey asks a live instance-store card for the key of its launch,
// which a restarted azoted no longer holds. azoted proves itself to the
// card with the escrow secret of that volume, which it derives again from
// the host key.
func (c *Controller) recoverKey(instID string, v volumeRecord) error {
	secret, err := c.escrowSecret(instID, v.ID)
	if err != nil {
		return err
	}
	defer secret.Free()
	conn, err := net.DialTimeout("unix", c.cardKeySocket(instID, v.ID), 2*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write(secret.Bytes()); err != nil {
		return err
	}
	key, err := keymem.New(volumeKeyBytes)
	if err != nil {
		return err
	}
	if _, err := io.ReadFull(conn, key.Bytes()); err != nil {
		key.Free()
		return err
	}
	c.mu.Lock()
	if old, ok := c.ephemeralKeys[v.ID]; ok {
		old.Free()
	}
	c.ephemeralKeys[v.ID] = key
	c.mu.Unlock()
	c.event("VolumeKeyUse", "volume/"+v.ID, map[string]any{"kind": v.Kind, "purpose": "instance-store key recovered from its live card after an azoted restart"})
	return nil
}

// adoptCards re-attaches to cards a previous azoted started.
func (c *Controller) adoptCards(rt *instanceRuntime, rec instanceRecord) {
	set := &cardSet{cards: map[string]*cardProc{}}
	rt.mu.Lock()
	rt.cards = set
	rt.mu.Unlock()
	for _, att := range rec.Volumes {
		h, ok := rec.Cards[att.VolumeID]
		var v volumeRecord
		if err := c.store.View(func(tx store.Tx) error { return tx.Get(tableVolumes, att.VolumeID, &v) }); err != nil {
			continue
		}
		cp := &cardProc{vol: v, readOnly: att.ReadOnly, queues: rec.VCPUs, pid: h.PID, start: h.StartTime, uid: h.UID, done: make(chan struct{})}
		if !c.uids.Range().Contains(cp.uid) {
			cp.uid = 0 // started as nobody by an older azoted, or outside today's range: a restart takes one
		}
		c.uids.Hold(cp.uid)
		if !ok || !proc.Same(h.PID, h.StartTime, c.cardMarker(rec.ID, v.ID)) {
			// Not the recorded card: a crash between starting a card and
			// recording it can leave one running that no record names.
			// It would serve on, holding its key, after the instance
			// ends; it is replaced (after handing back an instance-store
			// key, which the replacement needs).
			if v.Encrypted && v.Kind == api.VolumeInstanceStore {
				c.recoverKey(rec.ID, v)
			}
			if n := proc.KillMarked(c.cardMarker(rec.ID, v.ID)); n > 0 {
				c.log.Warn("killed a card no record named; starting a new one", "instance", rec.ID, "volume", v.ID)
			}
			close(cp.done) // gone: the supervisor restarts it if it can
		} else if _, err := proc.WatchPID(h.PID, func() { close(cp.done) }); err != nil {
			close(cp.done)
		} else if v.Encrypted && v.Kind == api.VolumeInstanceStore {
			if err := c.recoverKey(rec.ID, v); err != nil {
				c.log.Warn("could not recover the instance-store key from its card; it cannot be restarted if it dies", "instance", rec.ID, "volume", v.ID, "err", err)
			}
		}
		set.cards[v.ID] = cp
		c.wg.Add(1)
		go c.superviseCard(rt, rec.ID, set, cp)
	}
}

// stopCards ends every card of rt: SIGTERM, then SIGKILL.
func (c *Controller) stopCards(rt *instanceRuntime) {
	rt.mu.Lock()
	set := rt.cards
	rt.cards = nil
	rt.mu.Unlock()
	if set == nil {
		return
	}
	set.mu.Lock()
	set.stopping = true
	cards := set.cards
	set.mu.Unlock()
	for _, cp := range cards {
		if proc.Same(cp.pid, cp.start, "azote-card") {
			syscall.Kill(cp.pid, syscall.SIGTERM)
		}
	}
	for _, cp := range cards {
		select {
		case <-cp.done:
		case <-time.After(3 * time.Second):
			if proc.Same(cp.pid, cp.start, "azote-card") {
				syscall.Kill(cp.pid, syscall.SIGKILL)
			}
			select {
			case <-cp.done:
			case <-time.After(2 * time.Second):
			}
		}
		c.releaseCardUID(cp)
	}
}

// releaseCardUID gives back the uid of a card that is gone for good. One
// that still runs keeps it (the allocator would see it in /proc anyway).
func (c *Controller) releaseCardUID(cp *cardProc) {
	select {
	case <-cp.done:
	default:
		return
	}
	if cp.uid != 0 {
		c.uids.Release(cp.uid)
	}
}

// recordCards stores the card handles of an instance.
func (c *Controller) recordCards(instID string, set *cardSet) {
	c.update(instID, func(r *instanceRecord) error {
		r.setCards(set)
		return nil
	})
}

// setCards puts the handles of set's cards into r.
func (r *instanceRecord) setCards(set *cardSet) {
	set.mu.Lock()
	hs := map[string]cardHandle{}
	for id, cp := range set.cards {
		hs[id] = cardHandle{PID: cp.pid, StartTime: cp.start, UID: cp.uid}
	}
	set.mu.Unlock()
	r.Cards = hs
	for i := range r.Volumes {
		r.Volumes[i].CardPID = hs[r.Volumes[i].VolumeID].PID
	}
}

func lastLines(path string) string { return string(logTail(path, 400)) }
