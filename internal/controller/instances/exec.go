package instances

import (
	"context"
	"errors"
	"sync"

	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/engine"
)

// Refusals of exec sessions.
var (
	// ErrAgentUnavailable: the guest has no agent, or one that does not
	// speak the exec protocol, or it is not up.
	ErrAgentUnavailable = errors.New("guest agent unavailable")
	// ErrCommandNotStarted: the agent could not run the command.
	ErrCommandNotStarted = errors.New("command not started")
	// ErrTooManySessions: the instance has MaxExecSessions open.
	ErrTooManySessions = errors.New("too many exec sessions")
)

// MaxExecSessions bounds the exec sessions open on one instance (the
// agent itself takes agent.MaxSessions; the rest is headroom for
// sessions whose end has not reached it yet).
const MaxExecSessions = 4

// execSlots counts the open sessions of each instance.
type execSlots struct {
	mu   sync.Mutex
	open map[string]int // by instance id
}

func (e *execSlots) take(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.open == nil {
		e.open = map[string]int{}
	}
	if e.open[id] >= MaxExecSessions {
		return false
	}
	e.open[id]++
	return true
}

func (e *execSlots) give(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.open[id]--; e.open[id] <= 0 {
		delete(e.open, id)
	}
}

// ExecSession is a command running in an instance's guest. The caller
// reads it to its exit (Recv) and must Close it.
type ExecSession struct {
	*agent.Session
	once    sync.Once
	release func()
}

// Close ends the command if it still runs and frees its slot.
func (e *ExecSession) Close() {
	e.once.Do(func() {
		e.Session.Close()
		e.release()
	})
}

// Exec opens a session running req on instance id (the id the caller was
// authorised on) through its agent's control port. The instance must be
// running and its guest ready.
func (s *Service) Exec(ctx context.Context, id string, req agent.OpenRequest) (*ExecSession, error) {
	rec, err := s.get(id)
	if err != nil {
		return nil, err
	}
	if rec.State != api.StateRunning || !rec.Ready {
		return nil, refusal.New(ErrIncorrectState, "cannot exec in instance %s in state %s (it must be running, its guest up)", rec.ID, rec.State)
	}
	if err := req.Validate(); err != nil {
		return nil, refusal.New(refusal.ErrInvalidParameter, "command: %v", err)
	}
	m, _ := s.runtime(rec.ID).current()
	if m == nil {
		return nil, refusal.New(ErrIncorrectState, "instance %s has no machine running", rec.ID)
	}
	if !s.execs.take(rec.ID) {
		return nil, refusal.New(ErrTooManySessions, "instance %s has %d exec sessions open, the most it may", rec.ID, MaxExecSessions)
	}
	sess, err := m.Exec(ctx, req)
	if err != nil {
		s.execs.give(rec.ID)
		var se *agent.StartError
		switch {
		case errors.As(err, &se):
			return nil, refusal.New(ErrCommandNotStarted, "instance %s: %s", rec.ID, se.Reason)
		case errors.Is(err, agent.ErrAgentUnavailable):
			return nil, refusal.New(ErrAgentUnavailable, "instance %s: no guest agent answered the exec request within %v (an image without azote-agent, or a guest still booting)", rec.ID, agent.OpenTimeout)
		case errors.Is(err, agent.ErrTooManySessions):
			return nil, refusal.New(ErrTooManySessions, "instance %s: the guest agent runs as many sessions as it may", rec.ID)
		case errors.Is(err, engine.ErrNotRunning), errors.Is(err, agent.ErrChannelClosed):
			return nil, refusal.New(ErrIncorrectState, "instance %s stopped", rec.ID)
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			return nil, err
		}
		return nil, s.engineFailure(rec.ID, "exec", err)
	}
	return &ExecSession{Session: sess, release: func() { s.execs.give(rec.ID) }}, nil
}
