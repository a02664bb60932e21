package controller

import (
	"time"

	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/engine"
)

// consolePoll is how often the supervisor reads new console output. It
// bounds how late a ready line is noticed.
const consolePoll = 10 * time.Millisecond

// logBoundEvery is how often the supervisor bounds the engine and card
// logs of its instance.
const logBoundEvery = time.Second

func (c *Controller) startSupervisor(rt *instanceRuntime, m engine.Machine, offset int64) {
	exited := make(chan struct{})
	rt.mu.Lock()
	rt.machine, rt.exited = m, exited
	rt.mu.Unlock()
	c.wg.Add(1)
	go c.supervise(rt, m, exited, offset)
}

// supervise is the one goroutine that watches a machine: it turns console
// report lines, guest resets and the engine's exit into state changes. It
// ends when the machine exits or azoted releases it.
func (c *Controller) supervise(rt *instanceRuntime, m engine.Machine, exited chan struct{}, offset int64) {
	defer c.wg.Done()
	tail := &consoleTail{path: consolePath(c.instanceDir(rt.id)), off: offset}
	tick := time.NewTicker(consolePoll)
	defer tick.Stop()
	lastBound, lastLogs := time.Now(), time.Now()
	for {
		select {
		case <-rt.release:
			m.Release()
			return
		case <-m.Done():
			c.scanConsole(rt.id, tail)
			c.stopCards(rt)
			c.releaseEngineUID(rt)
			if rec, err := c.get(rt.id); err == nil {
				c.endEphemeral(rec)
			}
			c.recordExit(rt.id, m.Exit())
			rt.mu.Lock()
			rt.machine = nil
			rt.mu.Unlock()
			close(exited)
			return
		case at := <-m.Resets():
			c.recordReset(rt.id, at, tail.off)
		case <-tick.C:
			c.scanConsole(rt.id, tail)
			if time.Since(lastLogs) >= logBoundEvery {
				lastLogs = time.Now()
				c.boundInstanceLogs(rt.id)
			}
			if time.Since(lastBound) > 5*time.Second {
				lastBound = time.Now()
				if err := boundConsole(tail.path, c.cfg.ConsoleLimit); err != nil {
					c.log.Warn("bounding console log", "id", rt.id, "err", err)
				}
			}
		}
	}
}

func (c *Controller) scanConsole(id string, tail *consoleTail) {
	for _, line := range tail.lines() {
		if !agent.IsReport(line) {
			continue
		}
		r, err := agent.Parse(line)
		if err != nil {
			c.log.Warn("malformed agent report", "id", id, "err", err)
			continue
		}
		if r.Instance != "" && r.Instance != id {
			continue
		}
		switch r.Event {
		case agent.EventReady:
			now := time.Now().UTC()
			off := tail.off
			c.update(id, func(rec *instanceRecord) error {
				if rec.State == api.StatePending {
					rec.State, rec.StateReason = api.StateRunning, ""
				}
				rec.Ready, rec.ReadyAt, rec.Agent = true, &now, &r
				if rec.BootStartedAt != nil {
					rec.BootMs = now.Sub(*rec.BootStartedAt).Milliseconds()
				}
				rec.ConsoleOffset = off
				return nil
			})
		case agent.EventError:
			c.log.Warn("agent reported an error", "id", id, "msg", r.Message)
		}
	}
}

func (c *Controller) recordExit(id string, e engine.Exit) {
	c.update(id, func(r *instanceRecord) error {
		r.Handle, r.Ready, r.Cards = nil, false, nil
		for i := range r.Volumes {
			r.Volumes[i].CardPID = 0
		}
		switch r.State {
		case api.StateStopping:
			r.State, r.StateReason = api.StateStopped, "stopped by user"
			if !e.Clean {
				r.StateReason += " (" + e.Reason + ")"
			}
		case api.StateShuttingDown, api.StateTerminated:
			// TerminateInstance finishes the record.
		default:
			if e.Clean {
				r.State, r.StateReason = api.StateStopped, e.Reason
			} else {
				r.State, r.StateReason = api.StateFailed, e.Reason
			}
		}
		return nil
	})
	c.log.Info("machine exited", "id", id, "clean", e.Clean, "reason", e.Reason)
}

// recordReset counts a guest reset as a new boot. Linux may request a
// reset more than once on its way down (ACPI, then the keyboard
// controller): resets less than a second apart, by the engine's clock, are
// one reboot. A ready line read after the reset happened belongs to the
// new boot, so it is kept even when the event is handled late.
func (c *Controller) recordReset(id string, at time.Time, off int64) {
	c.update(id, func(r *instanceRecord) error {
		if r.LastResetAt != nil && at.Sub(*r.LastResetAt) < time.Second && at.Sub(*r.LastResetAt) > -time.Second {
			return nil
		}
		t := at.UTC()
		r.LastResetAt = &t
		r.BootStartedAt = &t
		r.BootCount++
		if r.ReadyAt == nil || r.ReadyAt.Before(t) {
			r.Ready, r.ReadyAt, r.Agent = false, nil, nil
			r.ConsoleOffset = off
		}
		return nil
	})
}
