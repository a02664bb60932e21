package controller

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cardhost"
	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/engine"
	"github.com/azote/azote/internal/keymem"
	"github.com/azote/azote/internal/store"
)

// A card is the process that serves one volume of one instance. azoted
// starts it before the engine (the engine connects to its socket), keeps
// its data key in memory to restart it if it dies, and stops it after the
// engine has exited. Cards run in sessions of their own and are re-adopted
// like engines. The processes are internal/cardhost's; this file is the
// glue between them and the instance and volume records.

// cardHandle is what the store keeps to re-adopt a card.
type cardHandle = cardhost.Handle

// cardSet is the cards of one running instance.
type cardSet struct {
	mu       sync.Mutex
	cards    map[string]*cardhost.Card // by volume id
	stopping bool
}

func (s *cardSet) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// cardHost is the card host of this azoted.
func (c *Controller) cardHost() *cardhost.Host {
	return &cardhost.Host{Binary: c.cfg.CardBinary, UIDs: c.uids, Log: c.log}
}

func (c *Controller) cardMarker(instID, volID string) string {
	return cardhost.BlkMarker(c.cardSocket(instID, volID))
}

func (c *Controller) cardSocket(instID, volID string) string {
	return filepath.Join(c.instanceDir(instID), volID+".sock")
}

func (c *Controller) cardMetricsSocket(instID, volID string) string {
	return filepath.Join(c.instanceDir(instID), volID+".metrics.sock")
}

// cardKeySocket is where an instance-store card hands its key back.
func (c *Controller) cardKeySocket(instID, volID string) string {
	return filepath.Join(c.instanceDir(instID), volID+".key.sock")
}

// blkSpec is what the card host needs to run the card of v in rt.
func (c *Controller) blkSpec(rt *instanceRuntime, v volumeRecord, readOnly bool, queues int) cardhost.Blk {
	instID := rt.id
	rt.mu.Lock()
	engineGID := rt.engineUID
	rt.mu.Unlock()
	s := cardhost.Blk{
		Config: cardproto.BlkConfig{VolumeID: v.ID, Queues: queues, ReadOnly: readOnly, Encrypted: v.Encrypted,
			IOPS: v.IOPS, BytesPerS: v.ThroughputMiB << 20},
		Backing: c.volumeFile(v.ID), DirectIO: v.DirectIO,
		Socket: c.cardSocket(instID, v.ID), EngineGID: engineGID,
		MetricsSocket: c.cardMetricsSocket(instID, v.ID),
		Key:           func(restart bool) (*keymem.Buf, error) { return c.launchKey(v, restart) },
		OpenLog:       func() (*os.File, error) { return c.openCardLog(instID, v.ID) },
		LogRoom:       cardLogRoom(c.cfg.LogLimit),
	}
	if v.Encrypted && v.Kind == api.VolumeInstanceStore {
		s.KeySocket = c.cardKeySocket(instID, v.ID)
		s.Escrow = func() (*keymem.Buf, error) { return c.escrowSecret(instID, v.ID) }
	}
	return s
}

// openCardLog bounds and opens the log of the card of volID.
func (c *Controller) openCardLog(instID, volID string) (*os.File, error) {
	logPath := cardLogPath(c.instanceDir(instID), volID)
	if err := boundLog(logPath, c.cfg.LogLimit); err != nil {
		c.log.Warn("bounding a card log", "instance", instID, "volume", volID, "err", err)
	}
	if err := renewLog(logPath, c.cfg.LogLimit, cardLogRoom(c.cfg.LogLimit)/2); err != nil {
		c.log.Warn("renewing a card log", "instance", instID, "volume", volID, "err", err)
	}
	return os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
}

// startCards starts one card per attached volume and returns the devices
// the engine must connect to. On error every card started is stopped.
func (c *Controller) startCards(rt *instanceRuntime, rec instanceRecord) ([]engine.Device, error) {
	set := &cardSet{cards: map[string]*cardhost.Card{}}
	rt.mu.Lock()
	rt.cards = set
	rt.mu.Unlock()
	host := c.cardHost()
	var devices []engine.Device
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
		card, err := host.StartBlk(c.blkSpec(rt, v, att.ReadOnly, rec.VCPUs))
		if err != nil {
			c.stopCards(rt)
			return nil, api.Errorf(api.CodeEngineFailure, "volume %s card: %v", v.ID, err)
		}
		set.mu.Lock()
		set.cards[v.ID] = card
		set.mu.Unlock()
		c.superviseCard(rt, set, card)
		devices = append(devices, engine.Device{Kind: engine.DeviceBlk, ID: v.ID, Socket: c.cardSocket(rec.ID, v.ID), Queues: rec.VCPUs})
	}
	return devices, nil
}

// superviseCard has the card host restart card when it dies while its
// instance runs, recording each new process.
func (c *Controller) superviseCard(rt *instanceRuntime, set *cardSet, card *cardhost.Card) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.cardHost().Supervise(card, rt.release, set.isStopping, func() { c.recordCards(rt.id, set) })
	}()
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

var errEphemeralKeyGone = errors.New("the instance-store key of this launch is gone (azoted restarted since); the volume cannot be served again until the instance is stopped and started")

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
	key, err := cardhost.RecoverKey(c.cardKeySocket(instID, v.ID), secret, volumeKeyBytes)
	if err != nil {
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
	set := &cardSet{cards: map[string]*cardhost.Card{}}
	rt.mu.Lock()
	rt.cards = set
	rt.mu.Unlock()
	host := c.cardHost()
	for _, att := range rec.Volumes {
		h, ok := rec.Cards[att.VolumeID]
		var v volumeRecord
		if err := c.store.View(func(tx store.Tx) error { return tx.Get(tableVolumes, att.VolumeID, &v) }); err != nil {
			continue
		}
		var recoverKey func() error
		if v.Encrypted && v.Kind == api.VolumeInstanceStore {
			recoverKey = func() error { return c.recoverKey(rec.ID, v) }
		}
		card := host.AdoptBlk(c.blkSpec(rt, v, att.ReadOnly, rec.VCPUs), h, ok, recoverKey)
		set.cards[v.ID] = card
		c.superviseCard(rt, set, card)
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
	cards := make([]*cardhost.Card, 0, len(set.cards))
	for _, card := range set.cards {
		cards = append(cards, card)
	}
	set.mu.Unlock()
	c.cardHost().Stop(cards)
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
	for id, card := range set.cards {
		hs[id] = card.Handle()
	}
	set.mu.Unlock()
	r.Cards = hs
	for i := range r.Volumes {
		r.Volumes[i].CardPID = hs[r.Volumes[i].VolumeID].PID
	}
}
