package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"time"
)

// Spawner starts the command of an exec session inside the guest.
type Spawner interface {
	Start(req OpenRequest) (Process, error)
}

// Process is a command an exec session runs.
type Process interface {
	Stdin() io.WriteCloser
	Stdout() io.Reader
	// Stderr is nil for a tty session: the terminal carries both.
	Stderr() io.Reader
	Resize(rows, cols uint16) error
	// Kill ends the command and everything it started.
	Kill() error
	// Wait returns once the command has exited.
	Wait() ExitStatus
	// Close releases what the session holds once it is over.
	Close()
}

// drainAfterExit bounds how long output is read after the command
// exited: a background process it left behind may hold the pipe open
// for ever, and the session must end.
const drainAfterExit = 2 * time.Second

// ServeControl serves the host's control port: line commands, which it
// hands to command (ping it answers itself), and exec sessions, run by
// sp. It returns when reading the port fails; sessions keep running
// until their commands end. A line it does not understand is dropped.
func ServeControl(rw io.ReadWriter, sp Spawner, command func(cmd string)) error {
	s := &execServer{w: rw, sp: sp, sessions: map[uint32]*serverSession{}}
	lr := newLineReader(rw, MaxFrameLine)
	for {
		line, err := lr.next()
		if errors.Is(err, errLongLine) {
			continue
		}
		if err != nil {
			return err
		}
		if strings.HasPrefix(string(line), FrameTag) {
			if f, err := ParseFrame(line); err == nil {
				s.handle(f)
			}
			continue
		}
		switch cmd := strings.TrimSpace(string(line)); cmd {
		case "":
		case CmdPing:
			s.writeLine([]byte("pong\n"))
		default:
			command(cmd)
		}
	}
}

type execServer struct {
	sp Spawner

	wmu sync.Mutex // whole lines on the port
	w   io.Writer

	mu       sync.Mutex
	sessions map[uint32]*serverSession
}

func (s *execServer) writeLine(b []byte) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.w.Write(b)
}

func (s *execServer) send(f Frame) {
	if b, err := AppendFrame(nil, f); err == nil {
		s.writeLine(b)
	}
}

func (s *execServer) sendExit(id uint32, st ExitStatus) {
	s.send(Frame{Type: FrameExit, Session: id, Payload: encodeJSON(st)})
}

// handle acts on one frame. It never blocks on a session: stdin is
// queued (within the credit the host was given) for the session's own
// writer.
func (s *execServer) handle(f Frame) {
	if f.Type == FrameOpen {
		s.open(f)
		return
	}
	s.mu.Lock()
	ss := s.sessions[f.Session]
	s.mu.Unlock()
	if ss == nil {
		return // a session that ended; its frames crossed the exit
	}
	switch f.Type {
	case FrameStdin:
		ss.queueStdin(f.Payload)
	case FrameCloseStdin:
		ss.queueStdin(nil)
	case FrameResize:
		ss.proc.Resize(binary.BigEndian.Uint16(f.Payload[0:2]), binary.BigEndian.Uint16(f.Payload[2:4]))
	case FrameCredit:
		ss.addCredit(int(binary.BigEndian.Uint32(f.Payload)))
	case FrameKill:
		ss.proc.Kill()
	}
}

func (s *execServer) open(f Frame) {
	var req OpenRequest
	fail := func(msg string) { s.sendExit(f.Session, ExitStatus{Code: -1, Error: msg}) }
	if err := json.Unmarshal(f.Payload, &req); err != nil {
		fail("bad open request: " + err.Error())
		return
	}
	if err := req.Validate(); err != nil {
		fail(err.Error())
		return
	}
	s.mu.Lock()
	if _, dup := s.sessions[f.Session]; dup {
		s.mu.Unlock()
		fail("session id in use")
		return
	}
	if len(s.sessions) >= MaxSessions {
		s.mu.Unlock()
		fail(ErrTooManySessions.Error())
		return
	}
	// Reserved before the command starts, so that a second open of the
	// same id cannot race this one.
	ss := &serverSession{srv: s, id: f.Session, credit: Window, stdinWake: make(chan struct{}, 1)}
	ss.creditCond = sync.NewCond(&ss.mu)
	s.sessions[f.Session] = ss
	s.mu.Unlock()
	p, err := s.sp.Start(req)
	if err != nil {
		s.mu.Lock()
		delete(s.sessions, f.Session)
		s.mu.Unlock()
		fail(err.Error())
		return
	}
	ss.proc = p
	s.send(Frame{Type: FrameOpened, Session: f.Session})
	ss.run()
}

// serverSession is the agent's end of one session. Its goroutines: one
// pump per output stream, one stdin writer, one waiter that sends the
// exit once the command ended and its output is drained.
type serverSession struct {
	srv  *execServer
	id   uint32
	proc Process

	mu         sync.Mutex
	credit     int // output bytes the host will take
	creditCond *sync.Cond
	over       bool     // the session ended: pumps stop waiting for credit
	stdin      [][]byte // queued input; nil entry: close stdin
	stdinBytes int      // bounded by Window through the host's credit
	stdinWake  chan struct{}
	stdinDone  bool
}

func (ss *serverSession) addCredit(n int) {
	ss.mu.Lock()
	ss.credit = min(ss.credit+n, Window)
	ss.mu.Unlock()
	ss.creditCond.Broadcast()
}

func (ss *serverSession) queueStdin(p []byte) {
	ss.mu.Lock()
	if ss.stdinDone || ss.stdinBytes+len(p) > Window {
		// Past its credit the host broke the protocol; the bytes are
		// dropped rather than buffered without bound.
		ss.mu.Unlock()
		return
	}
	ss.stdin = append(ss.stdin, p)
	ss.stdinBytes += len(p)
	if p == nil {
		ss.stdinDone = true
	}
	ss.mu.Unlock()
	notify(ss.stdinWake)
}

func (ss *serverSession) run() {
	var pumps sync.WaitGroup
	pump := func(r io.Reader, t FrameType) {
		defer pumps.Done()
		buf := make([]byte, MaxData)
		for {
			n, err := r.Read(buf)
			if n > 0 && !ss.sendOutput(t, buf[:n]) {
				return
			}
			if err != nil {
				return
			}
		}
	}
	pumps.Add(1)
	go pump(ss.proc.Stdout(), FrameStdout)
	if e := ss.proc.Stderr(); e != nil {
		pumps.Add(1)
		go pump(e, FrameStderr)
	}
	stop := make(chan struct{})
	go ss.writeStdin(stop)
	go func() {
		st := ss.proc.Wait()
		drained := make(chan struct{})
		go func() { pumps.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(drainAfterExit):
		}
		ss.mu.Lock()
		ss.over = true
		ss.mu.Unlock()
		ss.creditCond.Broadcast()
		close(stop)
		ss.srv.mu.Lock()
		delete(ss.srv.sessions, ss.id)
		ss.srv.mu.Unlock()
		ss.srv.sendExit(ss.id, st)
		ss.proc.Close() // unblocks pumps still reading a held pipe
	}()
}

// sendOutput sends p within the host's credit, waiting for more as
// needed; false once the session is over.
func (ss *serverSession) sendOutput(t FrameType, p []byte) bool {
	for len(p) > 0 {
		ss.mu.Lock()
		for ss.credit == 0 && !ss.over {
			ss.creditCond.Wait()
		}
		if ss.over {
			ss.mu.Unlock()
			return false
		}
		n := min(ss.credit, len(p))
		ss.credit -= n
		ss.mu.Unlock()
		ss.srv.send(Frame{Type: t, Session: ss.id, Payload: p[:n]})
		p = p[n:]
	}
	return true
}

// writeStdin writes queued input to the command, returning its credit to
// the host as each piece is written (or dropped, once the command no
// longer reads).
func (ss *serverSession) writeStdin(stop <-chan struct{}) {
	in := ss.proc.Stdin()
	broken := false
	for {
		ss.mu.Lock()
		if len(ss.stdin) == 0 {
			ss.mu.Unlock()
			select {
			case <-ss.stdinWake:
				continue
			case <-stop:
				in.Close()
				return
			}
		}
		p := ss.stdin[0]
		ss.stdin = ss.stdin[1:]
		ss.stdinBytes -= len(p)
		ss.mu.Unlock()
		if p == nil {
			in.Close()
			broken = true
			continue
		}
		if !broken {
			if _, err := in.Write(p); err != nil {
				broken = true
			}
		}
		ss.srv.send(CreditFrame(ss.id, len(p)))
	}
}
