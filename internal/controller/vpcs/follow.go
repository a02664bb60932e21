package vpcs

import (
	"context"
	"time"

	"github.com/azote/azote/internal/store"
)

// Follow tells the subscribers (Changed) about the changes other hosts
// commit to the VPCs of a shared store, until ctx ends: every change in
// a VPC writes its record (bumpTx, SetUnderlay too), so watching the VPC
// table alone sees them all, and the VPC's cards on this host get the
// new state within the time the store takes to report a commit (a few
// milliseconds on etcd). When the store cannot say what it missed (a
// long outage, a compacted history), every VPC is told. This host's own
// changes come back too and are told twice: a push is idempotent, and
// one more is cheaper than telling them apart.
//
// A store that is not a store.Watcher has nothing to follow: Follow then
// returns at once. A single host (bbolt) needs no Follow: its own
// changes are told as they commit.
func (s *Service) Follow(ctx context.Context) {
	w, ok := s.cfg.Store.(store.Watcher)
	if !ok {
		return
	}
	for c := range w.Watch(ctx, VPCTable) {
		if !c.Resync {
			s.Changed(c.Key)
			continue
		}
		for ctx.Err() == nil {
			ids, err := s.vpcIDs()
			if err == nil {
				s.Changed(ids...)
				break
			}
			// Read again once the store is back; what changes meanwhile
			// queues in the watch (or makes another Resync).
			s.log.Warn("re-reading the VPCs after a gap in the store's changes", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (s *Service) vpcIDs() ([]string, error) {
	var ids []string
	err := s.view(func(tx store.Tx) error {
		vs, err := allVPCsTx(tx)
		for _, v := range vs {
			ids = append(ids, v.ID)
		}
		return err
	})
	return ids, err
}
