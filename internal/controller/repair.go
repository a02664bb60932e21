package controller

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/azote/azote/internal/store"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/proc"
)

// repair runs at start-up: it re-adopts the machines that kept running
// while azoted was down, finishes or rolls back operations a crash
// interrupted, and removes what no record accounts for.
func (c *Controller) repair() error {
	recs, err := c.allInstances()
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, rec := range recs {
		known[rec.ID] = true
		// One instance that cannot be put right must not keep the host's
		// controller down: it is logged and left as it is.
		if err := c.repairOne(rec); err != nil {
			c.log.Error("repairing an instance after restart", "id", rec.ID, "state", rec.State, "err", err)
		}
	}
	dirs, _ := os.ReadDir(filepath.Join(c.cfg.StateDir, "instances"))
	for _, d := range dirs {
		if !known[d.Name()] {
			c.engine.Sweep(d.Name())
			os.RemoveAll(filepath.Join(c.cfg.StateDir, "instances", d.Name()))
			c.log.Info("removed an instance directory without a record", "id", d.Name())
		}
	}
	c.sweepOrphanBlobs(time.Now().Add(-OrphanBlobRetention))
	return c.sweepVolumeFiles()
}

// sweepVolumeFiles removes what a volume create or purge cut short by a
// crash leaves behind: backing files no record names (created, never
// committed; or their record purged, the file not yet removed) and the
// plaintext work directories of root volumes made from an image. It runs
// before the API serves, so no create is in flight.
func (c *Controller) sweepVolumeFiles() error {
	known := map[string]bool{}
	err := c.store.View(func(tx store.Tx) error {
		all, err := c.allVolumes(tx)
		for _, v := range all {
			known[v.ID+".img"] = true
		}
		return err
	})
	if err != nil {
		return err
	}
	files, _ := os.ReadDir(c.volumeDir())
	for _, f := range files {
		if !known[f.Name()] {
			os.Remove(filepath.Join(c.volumeDir(), f.Name()))
			c.log.Info("removed a volume file without a record", "file", f.Name())
		}
	}
	work, _ := filepath.Glob(filepath.Join(c.cfg.StateDir, rootfsWorkPrefix+"*"))
	for _, d := range work {
		os.RemoveAll(d)
		c.log.Info("removed an interrupted root volume's work directory", "dir", d)
	}
	return nil
}

func (c *Controller) repairOne(rec instanceRecord) error {
	id := rec.ID
	switch rec.State {
	case api.StateTerminated:
		os.RemoveAll(c.instanceDir(id))
		return nil
	case api.StateStopped, api.StateFailed:
		return nil
	}
	if rec.Handle == nil {
		// A launch or a stop was cut short before the handle was written
		// (or after it was cleared): whatever the engine started is stray.
		c.engine.Sweep(id)
		c.killCards(rec)
		switch {
		case rec.State == api.StateShuttingDown:
			_, err := c.finishTerminate(id)
			return err
		case rec.State == api.StatePending && rec.BootCount == 0:
			// Never launched: the run request failed as a whole.
			os.RemoveAll(c.instanceDir(id))
			c.store.Update(func(tx store.Tx) error {
				for _, a := range rec.Volumes {
					c.releaseVolumeTx(tx, a.VolumeID, id)
				}
				return nil
			})
			c.log.Info("rolled back an interrupted launch", "id", id)
			return c.deleteRecord(id)
		default:
			_, err := c.update(id, func(r *instanceRecord) error {
				r.State, r.StateReason = api.StateStopped, "operation interrupted by an azoted restart"
				r.Ready = false
				return nil
			})
			return err
		}
	}
	m, err := c.engine.Adopt(*rec.Handle, c.spec(rec, "", ""))
	if err != nil {
		c.engine.Sweep(id)
		c.killCards(rec)
		if rec.State == api.StateShuttingDown {
			_, err := c.finishTerminate(id)
			return err
		}
		c.recordExitWhileDown(rec)
		return nil
	}
	rt := c.runtime(id)
	c.uids.Hold(rec.Handle.UID)
	rt.mu.Lock()
	rt.engineUID = rec.Handle.UID
	rt.mu.Unlock()
	c.adoptCards(rt, rec)
	c.startSupervisor(rt, m, rec.ConsoleOffset)
	c.log.Info("re-adopted instance", "id", id, "pid", rec.Handle.PID, "state", rec.State)
	switch rec.State {
	case api.StateStopping:
		go func() {
			rt.opMu.Lock()
			defer rt.opMu.Unlock()
			c.endMachine(context.Background(), rt, false, 0)
		}()
	case api.StateShuttingDown:
		go func() {
			rt.opMu.Lock()
			defer rt.opMu.Unlock()
			c.endMachine(context.Background(), rt, false, 0)
			c.finishTerminate(id)
			c.dropRuntime(id)
		}()
	}
	return nil
}

func (c *Controller) recordExitWhileDown(rec instanceRecord) {
	c.update(rec.ID, func(r *instanceRecord) error {
		r.Handle, r.Ready = nil, false
		if r.State == api.StateStopping {
			r.State, r.StateReason = api.StateStopped, "stopped by user"
		} else {
			r.State, r.StateReason = api.StateFailed, "engine process exited while azoted was not running"
		}
		return nil
	})
}

// janitor forgets terminated instances once they have been listed as such
// for TerminatedRetention, as a cloud API does.
func (c *Controller) janitor() {
	defer c.wg.Done()
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		c.forgetTerminated(time.Now().Add(-TerminatedRetention))
		c.purgeDeletedVolumes(time.Now())
		c.sweepOrphanBlobs(time.Now().Add(-OrphanBlobRetention))
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
	}
}

func (c *Controller) forgetTerminated(before time.Time) {
	recs, err := c.allInstances()
	if err != nil {
		return
	}
	for _, r := range recs {
		if r.State == api.StateTerminated && r.TerminatedAt != nil && r.TerminatedAt.Before(before) {
			c.deleteRecord(r.ID)
		}
	}
}

// killCards kills any card process of rec's volumes (after a crash left
// them without a machine).
func (c *Controller) killCards(rec instanceRecord) {
	for _, a := range rec.Volumes {
		proc.KillMarked(c.cardMarker(rec.ID, a.VolumeID))
	}
}
