package agent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// OpenTimeout is how long Channel.Open waits for the agent to answer
// before it decides there is no agent that speaks exec.
const OpenTimeout = 5 * time.Second

// Errors of the host's end of the channel.
var (
	// ErrChannelClosed ends the sessions of a channel whose port went
	// away (the machine stopped, or the host closed it).
	ErrChannelClosed = errors.New("agent: control channel closed")
	// ErrProtocol ends a session whose agent broke the protocol (more
	// output than its credit, a bad exit status).
	ErrProtocol = errors.New("agent: exec protocol violation")
)

// StartError is the answer to an open request the agent could not run:
// no such user, no such command.
type StartError struct{ Reason string }

func (e *StartError) Error() string { return "agent: command not started: " + e.Reason }

// Channel is the host's end of a guest's control port: the line commands
// (Command) and the exec sessions multiplexed over it. Its reader
// goroutine runs until the port closes or Close is called.
type Channel struct {
	rwc io.ReadWriteCloser
	// AnswerTimeout replaces OpenTimeout when set (tests).
	AnswerTimeout time.Duration

	wmu sync.Mutex // serialises whole lines on the port

	mu       sync.Mutex
	sessions map[uint32]*Session
	nextID   uint32
	closed   bool

	done chan struct{}
}

// NewChannel serves the control port rwc. The caller closes the channel
// (which closes rwc) when done with it.
func NewChannel(rwc io.ReadWriteCloser) *Channel {
	c := &Channel{rwc: rwc, sessions: map[uint32]*Session{}, done: make(chan struct{})}
	go c.read()
	return c
}

// Done is closed once the port is gone; the channel is then useless.
func (c *Channel) Done() <-chan struct{} { return c.done }

// Close closes the port and ends every session with ErrChannelClosed.
func (c *Channel) Close() error {
	err := c.rwc.Close()
	<-c.done
	return err
}

// Command sends one line command (stop, reboot, ping).
func (c *Channel) Command(cmd string) error {
	return c.writeLine([]byte(cmd + "\n"))
}

func (c *Channel) writeLine(b []byte) error {
	select {
	case <-c.done:
		return ErrChannelClosed
	default:
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.rwc.Write(b)
	if err != nil {
		return fmt.Errorf("agent: control port: %w", err)
	}
	return nil
}

func (c *Channel) send(f Frame) error {
	b, err := AppendFrame(nil, f)
	if err != nil {
		return err
	}
	return c.writeLine(b)
}

// read dispatches the agent's frames until the port ends. Lines that are
// not frames ("pong", noise) are dropped.
func (c *Channel) read() {
	defer close(c.done)
	lr := newLineReader(c.rwc, MaxFrameLine)
	for {
		line, err := lr.next()
		if errors.Is(err, errLongLine) {
			continue
		}
		if err != nil {
			break
		}
		f, err := ParseFrame(line)
		if err != nil {
			continue
		}
		c.mu.Lock()
		s := c.sessions[f.Session]
		c.mu.Unlock()
		if s != nil {
			s.deliver(f)
		}
	}
	c.mu.Lock()
	c.closed = true
	all := c.sessions
	c.sessions = map[uint32]*Session{}
	c.mu.Unlock()
	for _, s := range all {
		s.fail(ErrChannelClosed)
	}
}

// Open starts a session and waits (at most OpenTimeout) for the agent to
// say the command runs. No answer is ErrAgentUnavailable; a refusal is a
// *StartError.
func (c *Channel) Open(ctx context.Context, req OpenRequest) (*Session, error) {
	if err := req.Validate(); err != nil {
		return nil, &StartError{Reason: err.Error()}
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrChannelClosed
	}
	if len(c.sessions) >= MaxSessions {
		c.mu.Unlock()
		return nil, ErrTooManySessions
	}
	c.nextID++
	s := &Session{ch: c, id: c.nextID, inCredit: Window, opened: make(chan struct{}), ended: make(chan struct{}),
		wake: make(chan struct{}, 1), credit: make(chan struct{}, 1)}
	c.sessions[s.id] = s
	c.mu.Unlock()
	if err := c.send(Frame{Type: FrameOpen, Session: s.id, Payload: encodeJSON(req)}); err != nil {
		c.forget(s.id)
		return nil, err
	}
	wait := OpenTimeout
	if c.AnswerTimeout > 0 {
		wait = c.AnswerTimeout
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-s.opened:
		return s, nil
	case <-s.ended:
		c.forget(s.id)
		if s.exit != nil && s.exit.Error != "" {
			return nil, &StartError{Reason: s.exit.Error}
		}
		if s.err != nil {
			return nil, s.err
		}
		return nil, &StartError{Reason: "the session ended before it started"}
	case <-t.C:
		s.Close()
		return nil, ErrAgentUnavailable
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
}

func (c *Channel) forget(id uint32) {
	c.mu.Lock()
	delete(c.sessions, id)
	c.mu.Unlock()
}

// Output is one piece of a session's output.
type Output struct {
	Stderr bool
	Data   []byte
}

// Session is one command running in the guest. Recv and Write may be
// called from two goroutines; each by one at a time.
type Session struct {
	ch *Channel
	id uint32

	opened, ended chan struct{}
	wake          chan struct{} // output arrived
	credit        chan struct{} // stdin credit arrived

	mu       sync.Mutex
	out      []Output // queued output, at most Window bytes
	queued   int
	inCredit int // stdin bytes the agent will take
	exit     *ExitStatus
	err      error
	openOnce sync.Once
	endOnce  sync.Once
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// deliver takes one frame of this session from the reader.
func (s *Session) deliver(f Frame) {
	switch f.Type {
	case FrameOpened:
		s.openOnce.Do(func() { close(s.opened) })
	case FrameStdout, FrameStderr:
		s.mu.Lock()
		if s.queued+len(f.Payload) > Window {
			s.mu.Unlock()
			s.fail(fmt.Errorf("%w: output past its credit", ErrProtocol))
			s.ch.send(Frame{Type: FrameKill, Session: s.id})
			return
		}
		s.out = append(s.out, Output{Stderr: f.Type == FrameStderr, Data: f.Payload})
		s.queued += len(f.Payload)
		s.mu.Unlock()
		notify(s.wake)
	case FrameCredit:
		n := int(binary.BigEndian.Uint32(f.Payload))
		s.mu.Lock()
		s.inCredit = min(s.inCredit+n, Window)
		s.mu.Unlock()
		notify(s.credit)
	case FrameExit:
		var st ExitStatus
		if err := json.Unmarshal(f.Payload, &st); err != nil {
			s.fail(fmt.Errorf("%w: exit status: %v", ErrProtocol, err))
			return
		}
		s.mu.Lock()
		s.exit = &st
		s.mu.Unlock()
		s.ch.forget(s.id)
		s.endOnce.Do(func() { close(s.ended) })
		notify(s.wake)
	}
}

// fail ends the session with err (unless it has ended).
func (s *Session) fail(err error) {
	s.mu.Lock()
	if s.err == nil && s.exit == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.ch.forget(s.id)
	s.endOnce.Do(func() { close(s.ended) })
	notify(s.wake)
}

// Recv returns the next output, or the exit status once all output has
// been returned. Taking output returns its credit to the agent, so the
// agent sends more only as fast as the caller consumes.
func (s *Session) Recv(ctx context.Context) (Output, *ExitStatus, error) {
	for {
		s.mu.Lock()
		if len(s.out) > 0 {
			o := s.out[0]
			s.out[0] = Output{}
			s.out = s.out[1:]
			s.queued -= len(o.Data)
			s.mu.Unlock()
			select {
			case <-s.ended:
			default:
				s.ch.send(CreditFrame(s.id, len(o.Data)))
			}
			return o, nil, nil
		}
		exit, err := s.exit, s.err
		s.mu.Unlock()
		if exit != nil {
			return Output{}, exit, nil
		}
		if err != nil {
			return Output{}, nil, err
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return Output{}, nil, ctx.Err()
		}
	}
}

// Write sends p to the command's stdin, waiting for credit.
func (s *Session) Write(ctx context.Context, p []byte) error {
	for len(p) > 0 {
		s.mu.Lock()
		n := min(s.inCredit, len(p), MaxData)
		s.inCredit -= n
		s.mu.Unlock()
		if n == 0 {
			select {
			case <-s.credit:
				continue
			case <-s.ended:
				return s.endErr()
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := s.ch.send(Frame{Type: FrameStdin, Session: s.id, Payload: p[:n]}); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

func (s *Session) endErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	return io.ErrClosedPipe
}

// CloseStdin tells the command there is no more input.
func (s *Session) CloseStdin() error {
	return s.ch.send(Frame{Type: FrameCloseStdin, Session: s.id})
}

// Resize sets a tty session's window.
func (s *Session) Resize(rows, cols uint16) error {
	return s.ch.send(ResizeFrame(s.id, rows, cols))
}

// Kill ends the command; its exit status still arrives through Recv.
func (s *Session) Kill() error {
	return s.ch.send(Frame{Type: FrameKill, Session: s.id})
}

// Close kills the command if it still runs and forgets the session.
func (s *Session) Close() {
	select {
	case <-s.ended:
	default:
		s.Kill()
		s.fail(io.ErrClosedPipe)
	}
}
