package instances

import (
	"context"
	"os"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/volumes"
	"github.com/azote/azote/internal/proc"
	"github.com/azote/azote/internal/store"
)

// Repair runs at start-up, before the API serves: it re-adopts the
// machines that kept running while azoted was down, finishes or rolls back
// operations a crash interrupted, and removes instance directories no
// record accounts for.
func (s *Service) Repair() error {
	recs, err := s.allInstances()
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, rec := range recs {
		known[rec.ID] = true
		// One instance that cannot be put right must not keep the host's
		// controller down: it is logged and left as it is.
		if err := s.repairOne(rec); err != nil {
			s.log.Error("repairing an instance after restart", "id", rec.ID, "state", rec.State, "err", err)
		}
	}
	// Interfaces attached here to instances no record accounts for.
	s.SweepInterfaces()
	dirs, _ := os.ReadDir(s.cfg.Dir)
	for _, d := range dirs {
		if !known[d.Name()] {
			s.engine.Sweep(d.Name())
			os.RemoveAll(s.instanceDir(d.Name()))
			s.log.Info("removed an instance directory without a record", "id", d.Name())
		}
	}
	return nil
}

func (s *Service) repairOne(rec instanceRecord) error {
	id := rec.ID
	if rec.IAMInstanceProfile != "" && (rec.Handle == nil || rec.State == api.StateTerminated) {
		// No machine: whatever sessions its last launch had end (a
		// crash may have come between the exit and the revocation).
		s.roleEnd(id)
	}
	switch rec.State {
	case api.StateTerminated:
		os.RemoveAll(s.instanceDir(id))
		return nil
	case api.StateStopped, api.StateFailed:
		return nil
	}
	if rec.Handle == nil {
		// A launch or a stop was cut short before the handle was written
		// (or after it was cleared): whatever the engine started is stray.
		s.engine.Sweep(id)
		s.killCards(rec)
		switch {
		case rec.State == api.StateShuttingDown:
			_, err := s.finishTerminate(id)
			return err
		case rec.State == api.StatePending && rec.BootCount == 0:
			// Never launched: the run request failed as a whole.
			os.RemoveAll(s.instanceDir(id))
			s.store.Update(func(tx store.Tx) error {
				for _, a := range rec.Volumes {
					volumes.ReleaseTx(tx, a.VolumeID, id)
				}
				return nil
			})
			s.endInterfaces(id)
			s.log.Info("rolled back an interrupted launch", "id", id)
			return s.deleteRecord(id)
		default:
			_, err := s.update(id, func(r *instanceRecord) error {
				r.State, r.StateReason = api.StateStopped, "operation interrupted by an azoted restart"
				r.Ready = false
				return nil
			})
			return err
		}
	}
	m, err := s.engine.Adopt(*rec.Handle, s.spec(rec, "", ""))
	if err != nil {
		s.roleEnd(id)
		s.engine.Sweep(id)
		s.killCards(rec)
		if rec.State == api.StateShuttingDown {
			_, err := s.finishTerminate(id)
			return err
		}
		s.recordExitWhileDown(rec)
		return nil
	}
	rt := s.runtime(id)
	s.uids.Hold(rec.Handle.UID)
	rt.mu.Lock()
	rt.engineUID = rec.Handle.UID
	rt.mu.Unlock()
	s.roleAdopt(rec) // before the cards, whose state carries its session
	s.adoptCards(rt, rec)
	s.startSupervisor(rt, m, rec.ConsoleOffset)
	s.roleRefresh(id)
	s.log.Info("re-adopted instance", "id", id, "pid", rec.Handle.PID, "state", rec.State)
	switch rec.State {
	case api.StateStopping:
		go func() {
			rt.opMu.Lock()
			defer rt.opMu.Unlock()
			s.endMachine(context.Background(), rt, false, 0)
		}()
	case api.StateShuttingDown:
		go func() {
			rt.opMu.Lock()
			defer rt.opMu.Unlock()
			s.endMachine(context.Background(), rt, false, 0)
			s.finishTerminate(id)
			s.dropRuntime(id)
		}()
	}
	return nil
}

func (s *Service) recordExitWhileDown(rec instanceRecord) {
	s.update(rec.ID, func(r *instanceRecord) error {
		r.Handle, r.Ready = nil, false
		if r.State == api.StateStopping {
			r.State, r.StateReason = api.StateStopped, "stopped by user"
		} else {
			r.State, r.StateReason = api.StateFailed, "engine process exited while azoted was not running"
		}
		return nil
	})
}

// ForgetTerminated deletes the records of instances terminated before
// before: a terminated instance stays listed for TerminatedRetention, as
// a cloud API does.
func (s *Service) ForgetTerminated(before time.Time) {
	recs, err := s.allInstances()
	if err != nil {
		return
	}
	for _, r := range recs {
		if r.State == api.StateTerminated && r.TerminatedAt != nil && r.TerminatedAt.Before(before) {
			s.deleteRecord(r.ID)
		}
	}
}

// killCards kills any card process of rec's volumes (after a crash left
// them without a machine).
func (s *Service) killCards(rec instanceRecord) {
	for _, a := range rec.Volumes {
		proc.KillMarked(s.cardMarker(rec.ID, a.VolumeID))
	}
}
