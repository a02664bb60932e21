package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/audit"
)

// ExecSession is a command running in a guest (instances.ExecSession).
type ExecSession interface {
	// Recv returns the next output or, once all output is read, the exit.
	Recv(ctx context.Context) (agent.Output, *agent.ExitStatus, error)
	Write(ctx context.Context, p []byte) error
	CloseStdin() error
	Resize(rows, cols uint16) error
	Kill() error
	Close()
}

// ExecBackend runs exec sessions; the controller implements it.
type ExecBackend interface {
	Exec(ctx context.Context, id string, req agent.OpenRequest) (ExecSession, error)
}

// killGrace is how long a killed command has to report its exit before
// the session is given up as ended without one.
const killGrace = 5 * time.Second

// execRoute is POST /v1/instances/{ref}/exec, compute:ExecuteCommand on
// the instance. Its decision is audited before the session starts, as
// every stream's is (with the command and user, never stdin), and a
// second record when it ends carries the exit code, the start time and
// the same request id.
func (h *handler) execRoute(inst func(context.Context, any) (string, error)) *route {
	return &route{pattern: "POST /v1/instances/{ref}/exec", rest: true, stream: true, body: bodyJSON, newBody: newOf[api.ExecRequest],
		params: execParams,
		op: &api.Operation{Name: "compute:ExecuteCommand", Resource: inst,
			Do: func(ctx context.Context, _ *api.Caller, req any) (any, error) {
				c := rc(req)
				id, err := c.target()
				if err == nil {
					err = h.exec(ctx, id, c)
				}
				if err != nil && !c.started {
					h.execEnd(c, nil, err)
					return nil, err
				}
				return streamed{}, nil
			}}}
}

// execParams is what the trail keeps of an exec request: the command (or
// "interactive shell"), the user and the options, never the input.
func execParams(c *restCall) map[string]any {
	m := map[string]any{"method": c.r.Method, "path": audit.Truncate(c.r.URL.Path, audit.MaxFieldBytes)}
	q, ok := c.body.(*api.ExecRequest)
	if !ok || q == nil {
		return m
	}
	cmd := make([]any, 0, len(q.Command))
	for _, a := range q.Command {
		cmd = append(cmd, audit.Truncate(a, audit.MaxFieldBytes))
	}
	if q.Interactive && len(q.Command) == 0 {
		m["command"] = "interactive shell"
	} else {
		m["command"] = cmd
	}
	user := q.User
	if user == "" {
		user = "root"
	}
	m["user"], m["interactive"] = audit.Truncate(user, 64), q.Interactive
	if len(q.Stdin) > 0 {
		m["stdinBytes"] = len(q.Stdin)
	}
	if q.TimeoutSeconds > 0 {
		m["timeoutSeconds"] = q.TimeoutSeconds
	}
	return m
}

// execEnd audits the end of a session: its exit, or the error that ended
// (or refused) it.
func (h *handler) execEnd(c *restCall, exit *agent.ExitStatus, err error) {
	ri := info(c.r)
	rec := h.baseRecord(c.r, ri, ri.caller, "compute:ExecuteCommand", false)
	rec.EventTime = time.Now()
	if c.found {
		rec.Resources = []audit.Resource{{ARN: h.arn("compute", kindInstance+"/"+c.id), AccountID: h.cfg.Auth.AccountID()}}
	}
	rec.RequestParameters = execParams(c)
	resp := map[string]any{"sessionStart": ri.start.UTC().Format(time.RFC3339Nano), "durationMs": time.Since(ri.start).Milliseconds()}
	if exit != nil {
		resp["exitStatus"] = exit.Code
		if exit.Signal != "" {
			resp["signal"] = exit.Signal
		}
	}
	rec.ResponseElements = resp
	rec.AdditionalEventData = map[string]any{"session": "end"}
	if err != nil {
		e := WireError(err)
		rec.ErrorCode, rec.ErrorMessage = string(e.Code), e.Message
	}
	// The session has happened; a trail that cannot take its end is
	// logged (and fails the next call), the caller already has the answer.
	if aerr := h.record(context.WithoutCancel(c.r.Context()), rec); aerr != nil {
		h.log.Error("audit append failed for the end of an exec session", "request", ri.id, "err", aerr)
	}
}

// exec runs one session. Errors before the session started are returned
// (answered as JSON); after it started the answer is the stream.
func (h *handler) exec(ctx context.Context, id string, c *restCall) error {
	eb, ok := h.b.(ExecBackend)
	if !ok {
		return api.Errorf(api.CodeAgentUnavailable, "this host runs no exec sessions")
	}
	q := c.body.(*api.ExecRequest)
	timeout := api.DefaultExecTimeout
	switch {
	case len(q.Command) == 0 && !q.Interactive:
		return api.Errorf(api.CodeInvalidParameter, "command: give the command to run (azote instance exec NAME -- CMD ARGS…)")
	case len(q.Stdin) > api.MaxExecStdin:
		return api.Errorf(api.CodeInvalidParameter, "stdin: %d bytes, at most %d", len(q.Stdin), api.MaxExecStdin)
	case q.Interactive && len(q.Stdin) > 0:
		return api.Errorf(api.CodeInvalidParameter, "stdin: an interactive session reads its input from the stream")
	case q.TimeoutSeconds < 0 || time.Duration(q.TimeoutSeconds)*time.Second > api.MaxExecTimeout:
		return api.Errorf(api.CodeInvalidParameter, "timeout_seconds: %d is not between 0 and %d", q.TimeoutSeconds, int(api.MaxExecTimeout/time.Second))
	case q.TimeoutSeconds > 0:
		timeout = time.Duration(q.TimeoutSeconds) * time.Second
	}
	if q.Interactive && !(strings.EqualFold(c.r.Header.Get("Upgrade"), api.ExecUpgrade) && headerHas(c.r.Header, "Connection", "upgrade")) {
		return api.Errorf(api.CodeInvalidParameter, "an interactive session needs the headers Connection: Upgrade and Upgrade: %s", api.ExecUpgrade)
	}
	req := agent.OpenRequest{Argv: q.Command, User: q.User, TTY: q.Interactive, Rows: q.Rows, Cols: q.Cols, Login: q.Interactive && len(q.Command) == 0}
	if err := req.Validate(); err != nil {
		return api.Errorf(api.CodeInvalidParameter, "command: %v", err)
	}
	sess, err := eb.Exec(ctx, id, req)
	if err != nil {
		return err
	}
	defer sess.Close()
	if q.Interactive {
		return h.execInteractive(ctx, c, sess)
	}
	c.started = true
	h.execStream(ctx, c, sess, q.Stdin, timeout)
	return nil
}

func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// execStream answers a non-interactive session: 200, then one ExecEvent
// per line (application/x-ndjson), flushed as output arrives, the last
// one the exit (or the error that ended the session).
func (h *handler) execStream(ctx context.Context, c *restCall, sess ExecSession, stdin []byte, timeout time.Duration) {
	w := c.w
	w.Header().Set("Content-Type", api.ExecContentType)
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	send := func(ev api.ExecEvent) {
		enc.Encode(ev)
		if fl != nil {
			fl.Flush()
		}
	}
	go func() {
		if len(stdin) > 0 {
			sess.Write(ctx, stdin)
		}
		sess.CloseStdin()
	}()
	exit, err := recvAll(ctx, sess, timeout, func(o agent.Output) {
		if o.Stderr {
			send(api.ExecEvent{Stderr: o.Data})
		} else {
			send(api.ExecEvent{Stdout: o.Data})
		}
	})
	// The end is in the trail before the client hears of it.
	h.execEnd(c, exit, err)
	switch {
	case exit != nil:
		send(api.ExecEvent{Exit: &api.ExecExit{Code: exit.Code, Signal: exit.Signal}})
	case err != nil:
		send(api.ExecEvent{Error: WireError(err)})
	}
}

// recvAll hands every output of sess to out until it exits. After
// timeout (or once ctx ends: the client went away) the command is
// killed, and its exit awaited killGrace longer.
func recvAll(ctx context.Context, sess ExecSession, timeout time.Duration, out func(agent.Output)) (*agent.ExitStatus, error) {
	run, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var why error
	for {
		o, exit, err := sess.Recv(run)
		if exit != nil {
			return exit, why
		}
		if err == nil {
			out(o)
			continue
		}
		if run.Err() == nil || why != nil {
			if why == nil {
				why = err
			}
			return nil, sessionError(why)
		}
		// Timed out, or the client left: kill, then wait a little for
		// the exit so the trail records how it ended.
		why = api.Errorf(api.CodeTimeout, "the command ran longer than %v and was killed", timeout)
		if ctx.Err() != nil {
			why = api.Errorf(api.CodeTimeout, "the client went away; the command was killed")
		}
		sess.Kill()
		var stop context.CancelFunc
		run, stop = context.WithTimeout(context.WithoutCancel(ctx), killGrace)
		defer stop()
	}
}

// sessionError is the answer for a session that ended without an exit.
func sessionError(err error) error {
	var e *api.Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, agent.ErrChannelClosed) {
		return api.Errorf(api.CodeIncorrectInstanceState, "the instance stopped during the session")
	}
	return api.Errorf(api.CodeAgentUnavailable, "the session with the guest agent broke: %v", err)
}

// maxExecLine bounds one ExecEvent line a client sends on an interactive
// stream.
const maxExecLine = 64 << 10

// execInteractive answers 101 Switching Protocols and carries ExecEvent
// lines both ways on the hijacked connection until the command exits or
// the client hangs up (which kills it).
func (h *handler) execInteractive(ctx context.Context, c *restCall, sess ExecSession) error {
	conn, brw, err := http.NewResponseController(c.w).Hijack()
	if err != nil {
		return api.Errorf(api.CodeInvalidParameter, "this connection cannot be upgraded (HTTP/2?): use HTTP/1.1 for interactive sessions")
	}
	c.started = true
	defer conn.Close()
	conn.SetDeadline(time.Time{})
	var wmu sync.Mutex
	enc := json.NewEncoder(brw.Writer)
	send := func(ev api.ExecEvent) error {
		wmu.Lock()
		defer wmu.Unlock()
		conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if err := enc.Encode(ev); err != nil {
			return err
		}
		return brw.Writer.Flush()
	}
	brw.Writer.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + api.ExecUpgrade + "\r\nConnection: Upgrade\r\n\r\n")
	brw.Writer.Flush()

	// The hijacked connection outlives the request's context; this one
	// ends when the client hangs up.
	run, hangup := context.WithCancel(context.WithoutCancel(ctx))
	defer hangup()
	go func() {
		defer hangup()
		sc := bufio.NewScanner(brw.Reader)
		sc.Buffer(make([]byte, 4096), maxExecLine)
		for sc.Scan() {
			var ev api.ExecEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				return
			}
			switch {
			case len(ev.Stdin) > 0:
				if sess.Write(run, ev.Stdin) != nil {
					return
				}
			case ev.CloseStdin:
				sess.CloseStdin()
			case ev.Resize != nil:
				sess.Resize(ev.Resize.Rows, ev.Resize.Cols)
			}
		}
	}()
	exit, err := recvAll(run, sess, api.MaxExecTimeout, func(o agent.Output) {
		if send(api.ExecEvent{Stdout: o.Data}) != nil {
			hangup()
		}
	})
	h.execEnd(c, exit, err)
	switch {
	case exit != nil:
		send(api.ExecEvent{Exit: &api.ExecExit{Code: exit.Code, Signal: exit.Signal}})
	case err != nil:
		send(api.ExecEvent{Error: WireError(err)})
	}
	return nil
}
