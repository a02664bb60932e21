package instances

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cardhost"
	"github.com/azote/azote/internal/cards/cardproto"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/controller/volumes"
	"github.com/azote/azote/internal/engine"
	"github.com/azote/azote/internal/keymem"
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
	cards    map[string]*cardhost.Card // by volume or network interface id
	nets     []*netCard
	stopping bool
}

func (s *cardSet) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

func (s *Service) cardMarker(instID, volID string) string {
	return cardhost.BlkMarker(s.cardSocket(instID, volID))
}

func (s *Service) cardSocket(instID, volID string) string {
	return filepath.Join(s.instanceDir(instID), volID+".sock")
}

func (s *Service) cardMetricsSocket(instID, volID string) string {
	return filepath.Join(s.instanceDir(instID), volID+".metrics.sock")
}

// cardKeySocket is where an instance-store card hands its key back.
func (s *Service) cardKeySocket(instID, volID string) string {
	return filepath.Join(s.instanceDir(instID), volID+".key.sock")
}

// blkSpec is what the card host needs to run the card of v in rt.
func (s *Service) blkSpec(rt *instanceRuntime, v volumes.Record, readOnly bool, queues int) cardhost.Blk {
	instID := rt.id
	rt.mu.Lock()
	engineGID := rt.engineUID
	rt.mu.Unlock()
	spec := cardhost.Blk{
		Config: cardproto.BlkConfig{VolumeID: v.ID, Queues: queues, ReadOnly: readOnly, Encrypted: v.Encrypted,
			IOPS: v.IOPS, BytesPerS: v.ThroughputMiB << 20},
		Backing: s.volumes.File(v.ID), DirectIO: v.DirectIO,
		Socket: s.cardSocket(instID, v.ID), EngineGID: engineGID,
		MetricsSocket: s.cardMetricsSocket(instID, v.ID),
		Key:           func(restart bool) (*keymem.Buf, error) { return s.volumes.LaunchKey(v, restart) },
		OpenLog:       func() (*os.File, error) { return s.openCardLog(instID, v.ID) },
		LogRoom:       cardLogRoom(s.cfg.LogLimit),
	}
	if v.Encrypted && v.Kind == api.VolumeInstanceStore {
		spec.KeySocket = s.cardKeySocket(instID, v.ID)
		spec.Escrow = func() (*keymem.Buf, error) { return s.escrowSecret(instID, v.ID) }
	}
	return spec
}

// openCardLog bounds and opens the log of the card of volID.
func (s *Service) openCardLog(instID, volID string) (*os.File, error) {
	logPath := cardLogPath(s.instanceDir(instID), volID)
	if err := boundLog(logPath, s.cfg.LogLimit); err != nil {
		s.log.Warn("bounding a card log", "instance", instID, "volume", volID, "err", err)
	}
	if err := renewLog(logPath, s.cfg.LogLimit, cardLogRoom(s.cfg.LogLimit)/2); err != nil {
		s.log.Warn("renewing a card log", "instance", instID, "volume", volID, "err", err)
	}
	return os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
}

// startCards starts one card per attached volume and returns the devices
// the engine must connect to. On error every card started is stopped.
func (s *Service) startCards(rt *instanceRuntime, rec instanceRecord) ([]engine.Device, error) {
	set := &cardSet{cards: map[string]*cardhost.Card{}}
	rt.mu.Lock()
	rt.cards = set
	rt.mu.Unlock()
	var devices []engine.Device
	for _, att := range rec.Volumes {
		v, err := s.volumes.Get(att.VolumeID)
		if err != nil {
			s.stopCards(rt)
			return nil, refusal.New(volumes.ErrNotFound, "attached volume %s: %v", att.VolumeID, err)
		}
		// A new launch starts from zeros under a new key.
		if err := s.volumes.MakeWhole(v); err != nil {
			s.stopCards(rt)
			return nil, fmt.Errorf("volume %s: resizing its instance-store file: %w", v.ID, err)
		}
		// A KMS key that cannot be used (disabled, pending deletion,
		// deleted) is the caller's to know, in the KMS's words, before
		// a card is started to ask for it.
		if err := s.volumes.KeyUsable(v); err != nil {
			s.stopCards(rt)
			return nil, err
		}
		card, err := s.cards.StartBlk(s.blkSpec(rt, v, att.ReadOnly, rec.VCPUs))
		if err != nil {
			s.stopCards(rt)
			// What the card host saw (paths, the card's stderr) is the
			// host's to read, as the engine's is (engineFailure).
			s.log.Error("card failure", "instance", rec.ID, "volume", v.ID, "err", err)
			return nil, refusal.New(ErrEngine, "the card of volume %s could not start; azoted's log on the host has the details", v.ID)
		}
		set.mu.Lock()
		set.cards[v.ID] = card
		set.mu.Unlock()
		s.superviseCard(rt, set, card)
		devices = append(devices, engine.Device{Kind: engine.DeviceBlk, ID: v.ID, Socket: s.cardSocket(rec.ID, v.ID), Queues: rec.VCPUs})
	}
	nets, err := s.startNetCards(rt, rec, set)
	if err != nil {
		s.stopCards(rt)
		return nil, refusal.New(ErrEngine, "%v", err)
	}
	return append(devices, nets...), nil
}

// superviseCard has the card host restart card when it dies while its
// instance runs, recording each new process.
func (s *Service) superviseCard(rt *instanceRuntime, set *cardSet, card *cardhost.Card) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.cards.Supervise(card, rt.release, set.isStopping, func() { s.recordCards(rt.id, set) })
	}()
}

// recoverKey asks a live instance-store card for the key of its launch,
// which a restarted azoted no longer holds. azoted proves itself to the
// card with the escrow secret of that volume, which it derives again from
// the host key.
func (s *Service) recoverKey(instID string, v volumes.Record) error {
	secret, err := s.escrowSecret(instID, v.ID)
	if err != nil {
		return err
	}
	defer secret.Free()
	key, err := cardhost.RecoverKey(s.cardKeySocket(instID, v.ID), secret, volumes.KeyBytes)
	if err != nil {
		return err
	}
	s.volumes.KeepKey(v, key)
	return nil
}

// adoptCards re-attaches to cards a previous azoted started.
func (s *Service) adoptCards(rt *instanceRuntime, rec instanceRecord) {
	set := &cardSet{cards: map[string]*cardhost.Card{}}
	rt.mu.Lock()
	rt.cards = set
	rt.mu.Unlock()
	for _, att := range rec.Volumes {
		h, ok := rec.Cards[att.VolumeID]
		v, err := s.volumes.Get(att.VolumeID)
		if err != nil {
			continue
		}
		var recoverKey func() error
		if v.Encrypted && v.Kind == api.VolumeInstanceStore {
			recoverKey = func() error { return s.recoverKey(rec.ID, v) }
		}
		card := s.cards.AdoptBlk(s.blkSpec(rt, v, att.ReadOnly, rec.VCPUs), h, ok, recoverKey)
		set.cards[v.ID] = card
		s.superviseCard(rt, set, card)
	}
	s.adoptNetCards(rt, rec, set)
}

// stopCards ends every card of rt: SIGTERM, then SIGKILL.
func (s *Service) stopCards(rt *instanceRuntime) {
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
	s.cards.Stop(cards)
	s.stopNetCards(set)
}

// recordCards stores the card handles of an instance.
func (s *Service) recordCards(instID string, set *cardSet) {
	s.update(instID, func(r *instanceRecord) error {
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

// CardSocket is the metrics socket of the card serving one volume.
type CardSocket struct {
	Volume, Socket string
}

// CardMetricsSockets lists the metrics sockets of the cards of every
// instance with a machine, by volume id.
func (s *Service) CardMetricsSockets() ([]CardSocket, error) {
	recs, err := s.allInstances()
	if err != nil {
		return nil, err
	}
	var out []CardSocket
	for _, r := range recs {
		if r.Handle == nil {
			continue
		}
		for _, v := range r.Volumes {
			out = append(out, CardSocket{v.VolumeID, s.cardMetricsSocket(r.ID, v.VolumeID)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Volume < out[j].Volume })
	return out, nil
}
