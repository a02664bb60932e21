package instances

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

func (s *Service) startSupervisor(rt *instanceRuntime, m engine.Machine, offset int64) {
	exited := make(chan struct{})
	rt.mu.Lock()
	rt.machine, rt.exited = m, exited
	rt.mu.Unlock()
	s.wg.Add(1)
	go s.supervise(rt, m, exited, offset)
}

// supervise is the one goroutine that watches a machine: it turns console
// report lines, guest resets and the engine's exit into state changes. It
// ends when the machine exits or azoted releases it.
func (s *Service) supervise(rt *instanceRuntime, m engine.Machine, exited chan struct{}, offset int64) {
	defer s.wg.Done()
	tail := &consoleTail{path: consolePath(s.instanceDir(rt.id)), off: offset}
	var rs reports
	tick := time.NewTicker(consolePoll)
	defer tick.Stop()
	lastBound, lastLogs := time.Now(), time.Now()
	for {
		select {
		case <-rt.release:
			m.Release()
			return
		case <-m.Done():
			// The instance's role sessions end with its machine.
			s.roleEnd(rt.id)
			s.scanConsole(rt.id, tail, &rs)
			s.stopCards(rt)
			s.releaseEngineUID(rt)
			if rec, err := s.get(rt.id); err == nil {
				s.endEphemeral(rec)
			}
			s.recordExit(rt.id, m.Exit())
			rt.mu.Lock()
			rt.machine = nil
			rt.mu.Unlock()
			close(exited)
			return
		case at := <-m.Resets():
			s.reset(rt.id, at, tail, &rs)
		case <-tick.C:
			// A reset already reported is handled before the lines that
			// follow it, which belong to the new boot.
			select {
			case at := <-m.Resets():
				s.reset(rt.id, at, tail, &rs)
			default:
			}
			s.scanConsole(rt.id, tail, &rs)
			if time.Since(lastLogs) >= logBoundEvery {
				lastLogs = time.Now()
				s.boundInstanceLogs(rt.id)
			}
			if time.Since(lastBound) > 5*time.Second {
				lastBound = time.Now()
				if err := boundConsole(tail.path, s.cfg.ConsoleLimit); err != nil {
					s.log.Warn("bounding console log", "id", rt.id, "err", err)
				}
			}
		}
	}
}

// The guest writes its console as fast as it likes, so what one line can
// make azoted do is bounded: a ready line changes the record (an fsynced
// store transaction) once per boot, and the report lines that only cost a
// log record (errors, malformed reports) are rate-limited per instance,
// with the number dropped logged at most once a minute.
const (
	reportBurst = 20
	reportRate  = 2 // lines per second, after the burst
	dropLogGap  = time.Minute
)

// reports is what a supervisor remembers of the agent's report lines.
type reports struct {
	// ready is set once a ready line was acted on in this boot; later
	// ones are ignored until a reset starts the next boot.
	ready bool
	// skipped is the last ready line ignored: if the reset that ended the
	// boot is handled after it was read, it is the new boot's.
	skipped *lateReady

	// hostKeys are the SSH host keys recorded in this boot
	// (recordHostKey).
	hostKeys []string

	tokens  float64
	last    time.Time
	dropped int
	warned  time.Time
}

type lateReady struct {
	r   agent.Report
	at  time.Time
	off int64
}

// allow takes a token from the instance's report budget.
func (rs *reports) allow(now time.Time) bool {
	if rs.last.IsZero() {
		rs.tokens = reportBurst
	} else {
		rs.tokens = min(reportBurst, rs.tokens+now.Sub(rs.last).Seconds()*reportRate)
	}
	rs.last = now
	if rs.tokens < 1 {
		rs.dropped++
		return false
	}
	rs.tokens--
	return true
}

func (s *Service) scanConsole(id string, tail *consoleTail, rs *reports) {
	lines := tail.lines()
	now := time.Now().UTC()
	for _, line := range lines {
		if !agent.IsReport(line) {
			continue
		}
		r, err := agent.Parse(line)
		if err != nil {
			if rs.allow(now) {
				s.log.Warn("malformed agent report", "id", id, "err", err)
			}
			continue
		}
		if r.Instance != "" && r.Instance != id {
			continue
		}
		switch r.Event {
		case agent.EventReady:
			if rs.ready {
				rs.skipped = &lateReady{r: r, at: now, off: tail.off}
				continue
			}
			rs.ready = true
			s.recordReady(id, r, now, tail.off)
		case agent.EventHostKey:
			s.recordHostKey(id, r.Message, now, rs)
		case agent.EventError:
			if rs.allow(now) {
				s.log.Warn("agent reported an error", "id", id, "msg", r.Message)
			}
		}
	}
	if rs.dropped > 0 && now.Sub(rs.warned) >= dropLogGap {
		s.log.Warn("agent report lines over the rate limit were ignored", "id", id, "lines", rs.dropped)
		rs.dropped, rs.warned = 0, now
	}
}

// reset handles a guest reset: the lines printed before it belong to the
// boot that ended, and a ready line ignored but read after the reset
// happened is the new boot's.
func (s *Service) reset(id string, at time.Time, tail *consoleTail, rs *reports) {
	s.scanConsole(id, tail, rs)
	rec, counted := s.recordReset(id, at, tail.off)
	if !counted {
		return
	}
	// A ready line acted on after the reset happened stays the new boot's.
	late := rs.skipped
	rs.ready, rs.skipped, rs.hostKeys = rec.Ready, nil, nil
	if !rs.ready && late != nil && late.at.After(at) {
		rs.ready = true
		s.recordReady(id, late.r, late.at, late.off)
	}
}

// recordReady records the agent's ready report, read at now with the
// console read up to off.
func (s *Service) recordReady(id string, r agent.Report, now time.Time, off int64) {
	s.update(id, func(rec *instanceRecord) error {
		if rec.State == api.StatePending {
			rec.State, rec.StateReason = api.StateRunning, ""
		}
		rec.Ready, rec.ReadyAt, rec.Agent = true, &now, agentReport(r)
		if rec.BootStartedAt != nil {
			rec.BootMs = now.Sub(*rec.BootStartedAt).Milliseconds()
		}
		rec.ConsoleOffset = off
		return nil
	})
}

func (s *Service) recordExit(id string, e engine.Exit) {
	s.update(id, func(r *instanceRecord) error {
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
	s.log.Info("machine exited", "id", id, "clean", e.Clean, "reason", e.Reason)
}

// recordReset counts a guest reset as a new boot. Linux may request a
// reset more than once on its way down (ACPI, then the keyboard
// controller): resets less than a second apart, by the engine's clock, are
// one reboot. A ready line read after the reset happened belongs to the
// new boot, so it is kept even when the event is handled late. It tells
// whether the reset was counted as a new boot, with the record after it.
func (s *Service) recordReset(id string, at time.Time, off int64) (instanceRecord, bool) {
	counted := false
	rec, err := s.update(id, func(r *instanceRecord) error {
		if r.LastResetAt != nil && at.Sub(*r.LastResetAt) < time.Second && at.Sub(*r.LastResetAt) > -time.Second {
			return nil
		}
		counted = true
		t := at.UTC()
		r.LastResetAt = &t
		r.BootStartedAt = &t
		r.BootCount++
		r.SSHHostKeys = nil // the new boot reports its own
		if r.ReadyAt == nil || r.ReadyAt.Before(t) {
			r.Ready, r.ReadyAt, r.Agent = false, nil, nil
			r.ConsoleOffset = off
		}
		return nil
	})
	return rec, err == nil && counted
}

// agentReport converts the agent's report to its API view: the API keeps
// its own copy of the fields, so a change to the agent's struct cannot
// change the JSON.
func agentReport(r agent.Report) *api.AgentReport {
	return &api.AgentReport{
		Event: r.Event, Instance: r.Instance, Root: r.Root, InitMs: r.InitMs, ReadyMs: r.ReadyMs,
		VCPUs: r.VCPUs, MemTotalKiB: r.MemTotalKiB, MemRAMKiB: r.MemRAMKiB, Modules: r.Modules, Message: r.Message,
	}
}
