package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the stdout/stderr payload bytes the agent sends.
type countingConn struct {
	net.Conn
	out atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	if f, err := ParseFrame(bytes.TrimSuffix(p, []byte("\n"))); err == nil && (f.Type == FrameStdout || f.Type == FrameStderr) {
		c.out.Add(int64(len(f.Payload)))
	}
	return c.Conn.Write(p)
}

// pair serves a real agent (running commands on this machine) on one end
// of a pipe and returns the host's channel on the other, and the line
// commands the agent was handed.
func pair(t *testing.T) (*Channel, *countingConn, chan string) {
	t.Helper()
	host, guest := net.Pipe()
	cc := &countingConn{Conn: guest}
	cmds := make(chan string, 8)
	served := make(chan struct{})
	go func() {
		defer close(served)
		ServeControl(cc, Processes{}, func(c string) { cmds <- c })
	}()
	ch := NewChannel(host)
	t.Cleanup(func() {
		ch.Close()
		guest.Close()
		<-served
	})
	return ch, cc, cmds
}

// collect reads a session to its end.
func collect(t *testing.T, s *Session) (stdout, stderr string, st ExitStatus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var o, e bytes.Buffer
	for {
		out, exit, err := s.Recv(ctx)
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		if exit != nil {
			return o.String(), e.String(), *exit
		}
		if out.Stderr {
			e.Write(out.Data)
		} else {
			o.Write(out.Data)
		}
	}
}

func TestExecOutputAndExitCode(t *testing.T) {
	ch, _, _ := pair(t)
	s, err := ch.Open(context.Background(), OpenRequest{Argv: []string{"sh", "-c", "echo hello; echo oops >&2; exit 3"}})
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, st := collect(t, s)
	if out != "hello\n" || errOut != "oops\n" || st.Code != 3 || st.Signal != "" {
		t.Fatalf("stdout %q stderr %q status %+v; want hello, oops, exit 3", out, errOut, st)
	}
}

func TestExecStdin(t *testing.T) {
	ch, _, _ := pair(t)
	s, err := ch.Open(context.Background(), OpenRequest{Argv: []string{"sh", "-c", "wc -c"}})
	if err != nil {
		t.Fatal(err)
	}
	// More than the window: the writer must wait for credit.
	in := bytes.Repeat([]byte("x"), 3*Window+17)
	go func() {
		if err := s.Write(context.Background(), in); err != nil {
			t.Error(err)
		}
		s.CloseStdin()
	}()
	out, _, st := collect(t, s)
	if strings.TrimSpace(out) != "196625" || st.Code != 0 {
		t.Fatalf("wc -c said %q (status %+v), want %d", out, st, len(in))
	}
}

// TestExecFlowControl: a command that prints far more than the window
// while the host reads nothing must be held by the agent, not buffered.
func TestExecFlowControl(t *testing.T) {
	ch, cc, _ := pair(t)
	s, err := ch.Open(context.Background(), OpenRequest{Argv: []string{"sh", "-c", "head -c 1048576 /dev/zero"}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := cc.out.Load(); n > Window {
		t.Fatalf("agent sent %d output bytes unread, more than the window %d", n, Window)
	}
	s.mu.Lock()
	queued := s.queued
	s.mu.Unlock()
	if queued > Window {
		t.Fatalf("host queued %d bytes, more than the window", queued)
	}
	out, _, st := collect(t, s)
	if len(out) != 1<<20 || st.Code != 0 {
		t.Fatalf("got %d bytes, status %+v; want 1 MiB, exit 0", len(out), st)
	}
}

// TestExecCommandsStillServed: stop, reboot and ping work while a session
// runs.
func TestExecCommandsStillServed(t *testing.T) {
	ch, _, cmds := pair(t)
	s, err := ch.Open(context.Background(), OpenRequest{Argv: []string{"sleep", "30"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := ch.Command(CmdStop); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-cmds:
		if c != CmdStop {
			t.Fatalf("agent got %q, want stop", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stop not served while a session runs")
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	_, _, st := collect(t, s)
	if st.Signal != "SIGKILL" {
		t.Fatalf("status after Kill %+v, want SIGKILL", st)
	}
}

func TestExecTTY(t *testing.T) {
	ch, _, _ := pair(t)
	s, err := ch.Open(context.Background(), OpenRequest{Argv: []string{"sh", "-c", "tty; stty size"}, TTY: true, Rows: 33, Cols: 101})
	if err != nil {
		t.Fatal(err)
	}
	out, _, st := collect(t, s)
	if !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "33 101") || st.Code != 0 {
		t.Fatalf("tty session said %q (%+v), want a /dev/pts name and 33 101", out, st)
	}
}

func TestExecStartErrors(t *testing.T) {
	ch, _, _ := pair(t)
	for _, req := range []OpenRequest{
		{Argv: []string{"/no/such/command"}},
		{Argv: []string{"true"}, User: "no-such-user-azote"},
		{Argv: []string{"true"}, User: "a:b"},
		{},
	} {
		_, err := ch.Open(context.Background(), req)
		var se *StartError
		if !errors.As(err, &se) {
			t.Errorf("Open(%+v) = %v, want a StartError", req, err)
		}
	}
}

func TestExecMaxSessions(t *testing.T) {
	ch, _, _ := pair(t)
	var open []*Session
	for range MaxSessions {
		s, err := ch.Open(context.Background(), OpenRequest{Argv: []string{"sleep", "30"}})
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, s)
	}
	if _, err := ch.Open(context.Background(), OpenRequest{Argv: []string{"true"}}); !errors.Is(err, ErrTooManySessions) {
		t.Fatalf("session %d: %v, want ErrTooManySessions", MaxSessions+1, err)
	}
	for _, s := range open {
		s.Close()
	}
}

// TestExecNoAgent: a port nobody answers exec on (an old agent, or no
// agent at all) is ErrAgentUnavailable, not a hang.
func TestExecNoAgent(t *testing.T) {
	host, guest := net.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); io.Copy(io.Discard, guest) }()
	ch := NewChannel(host)
	ch.AnswerTimeout = 200 * time.Millisecond
	_, err := ch.Open(context.Background(), OpenRequest{Argv: []string{"true"}})
	if !errors.Is(err, ErrAgentUnavailable) {
		t.Fatalf("Open = %v, want ErrAgentUnavailable", err)
	}
	ch.Close()
	guest.Close()
	wg.Wait()
}

// TestExecChannelClosed: sessions end when the port goes away.
func TestExecChannelClosed(t *testing.T) {
	ch, _, _ := pair(t)
	s, err := ch.Open(context.Background(), OpenRequest{Argv: []string{"sleep", "30"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Kill()
	ch.rwc.Close()
	if _, _, err := s.Recv(context.Background()); !errors.Is(err, ErrChannelClosed) {
		t.Fatalf("Recv after the port closed: %v", err)
	}
}

// TestExecPing: the line commands keep their old form on the same port.
func TestExecPing(t *testing.T) {
	host, guest := net.Pipe()
	defer host.Close()
	go ServeControl(guest, Processes{}, func(string) {})
	host.SetDeadline(time.Now().Add(5 * time.Second))
	host.Write([]byte("X1 !!!notbase64\n" + strings.Repeat("z", 3*MaxFrameLine) + "\nping\n"))
	buf := make([]byte, 16)
	n, err := io.ReadAtLeast(host, buf, 5)
	if err != nil || string(buf[:n]) != "pong\n" {
		t.Fatalf("answer to ping after garbage: %q %v", buf[:n], err)
	}
	guest.Close()
}
