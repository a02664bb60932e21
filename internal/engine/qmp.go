package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// qmp is a minimal client of QEMU's machine protocol: one command at a
// time, events delivered to a callback. See QEMU docs/interop/qmp-spec.
type qmp struct {
	conn    net.Conn
	onEvent func(name string, data json.RawMessage, at time.Time)

	mu      sync.Mutex // serialises commands
	replies chan qmpMsg
	done    chan struct{}
}

type qmpMsg struct {
	Event  string          `json:"event"`
	Data   json.RawMessage `json:"data"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	QMP       json.RawMessage `json:"QMP"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// dialQMP connects to path, retrying until ctx ends (QEMU creates the
// socket a moment after it starts), and negotiates capabilities.
func dialQMP(ctx context.Context, path string, onEvent func(string, json.RawMessage, time.Time)) (*qmp, error) {
	var conn net.Conn
	var err error
	for {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "unix", path)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("engine: qmp connect %s: %w", path, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	q := &qmp{conn: conn, onEvent: onEvent, replies: make(chan qmpMsg, 1), done: make(chan struct{})}
	r := bufio.NewReader(conn)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var greet qmpMsg
	line, err := r.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &greet)
	}
	if err != nil || greet.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("engine: qmp greeting: %v", err)
	}
	conn.SetReadDeadline(time.Time{})
	go q.readLoop(r)
	if _, err := q.execute(ctx, "qmp_capabilities", nil); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmp) readLoop(r *bufio.Reader) {
	defer close(q.done)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var m qmpMsg
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		if m.Event != "" {
			if q.onEvent != nil {
				at := time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)
				if m.Timestamp.Seconds == 0 {
					at = time.Now()
				}
				q.onEvent(m.Event, m.Data, at)
			}
			continue
		}
		select {
		case q.replies <- m:
		default: // a reply nobody waits for (timed out command)
		}
	}
}

var errQMPClosed = errors.New("engine: qmp connection closed")

func (q *qmp) execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("engine: qmp %s: %w", cmd, err)
	}
	select {
	case m := <-q.replies:
		if m.Error != nil {
			return nil, fmt.Errorf("engine: qmp %s: %s: %s", cmd, m.Error.Class, m.Error.Desc)
		}
		return m.Return, nil
	case <-q.done:
		return nil, errQMPClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (q *qmp) Close() {
	q.conn.Close()
	<-q.done
}
