package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/api"
)

// exitStatus makes the CLI exit with a remote command's status, saying
// nothing more.
type exitStatus struct{ code int }

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func instanceExec(e *env, fs *pflag.FlagSet) runFunc {
	var req api.ExecRequest
	fs.StringVar(&req.User, "user", "", "run as this user of the guest (default root)")
	timeout := fs.Duration("timeout", api.DefaultExecTimeout, "kill the command after this long")
	withStdin := fs.BoolP("stdin", "i", false, fmt.Sprintf("send this command's standard input (at most %d KiB) to the command", api.MaxExecStdin>>10))
	return func(ctx context.Context, pos []string) error {
		if len(pos) < 2 {
			return usageError{msg: "want INSTANCE -- COMMAND [ARGS…]"}
		}
		if *timeout <= 0 || *timeout > api.MaxExecTimeout || *timeout%time.Second != 0 {
			return usageError{msg: fmt.Sprintf("--timeout %v: want whole seconds up to %v", *timeout, api.MaxExecTimeout)}
		}
		req.Command = pos[1:]
		req.TimeoutSeconds = int(*timeout / time.Second)
		if *withStdin {
			data, err := io.ReadAll(io.LimitReader(e.stdin, api.MaxExecStdin+1))
			if err != nil {
				return err
			}
			if len(data) > api.MaxExecStdin {
				return usageError{msg: fmt.Sprintf("--stdin: more than %d KiB of input", api.MaxExecStdin>>10)}
			}
			req.Stdin = data
		}
		exit, err := e.client.Exec(ctx, pos[0], req, e.stdout, e.stderr)
		if err != nil {
			return err
		}
		if exit.Signal != "" {
			fmt.Fprintf(e.stderr, "azote: the command was killed by %s\n", exit.Signal)
		}
		if exit.Code != 0 {
			return exitStatus{code: exit.Code}
		}
		return nil
	}
}

// consoleInteractive runs a login shell in the instance on a pty, with
// the local terminal in raw mode. "~." at the start of a line leaves.
func consoleInteractive(ctx context.Context, e *env, ref, user string) error {
	in, _ := e.stdin.(*os.File)
	out, _ := e.stdout.(*os.File)
	req := api.ExecRequest{User: user}
	if out != nil {
		if ws, err := unix.IoctlGetWinsize(int(out.Fd()), unix.TIOCGWINSZ); err == nil {
			req.Rows, req.Cols = ws.Row, ws.Col
		}
	}
	conn, err := e.client.ExecInteractive(ctx, ref, req)
	if err != nil {
		return err
	}
	defer conn.Close()
	if in != nil {
		if restore, err := makeRaw(int(in.Fd())); err == nil {
			defer restore()
			fmt.Fprint(e.stderr, "connected; type ~. at the start of a line to leave\r\n")
		}
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, unix.SIGWINCH)
	defer signal.Stop(winch)
	go func() {
		for range winch {
			if ws, err := unix.IoctlGetWinsize(int(out.Fd()), unix.TIOCGWINSZ); err == nil {
				conn.Send(api.ExecEvent{Resize: &api.WindowSize{Rows: ws.Row, Cols: ws.Col}})
			}
		}
	}()
	go func() {
		esc := escapeReader{r: e.stdin, atLineStart: true}
		buf := make([]byte, 4096)
		for {
			n, err := esc.Read(buf)
			if n > 0 {
				if conn.Send(api.ExecEvent{Stdin: append([]byte(nil), buf[:n]...)}) != nil {
					return
				}
			}
			if errors.Is(err, errEscape) {
				conn.Close()
				return
			}
			if err != nil {
				conn.Send(api.ExecEvent{CloseStdin: true})
				return
			}
		}
	}()
	exit, err := conn.Wait(e.stdout)
	if err != nil {
		if esc := ctx.Err(); esc != nil {
			return nil
		}
		return fmt.Errorf("session ended: %w", err)
	}
	if exit.Code != 0 {
		return exitStatus{code: exit.Code}
	}
	return nil
}

var errEscape = errors.New("escape sequence")

// escapeReader passes input through, watching for "~." after a newline
// (or at the very start), as ssh does: "~~" sends one "~".
type escapeReader struct {
	r           io.Reader
	atLineStart bool
	tilde       bool // a "~" at the start of a line is held back
}

func (x *escapeReader) Read(p []byte) (int, error) {
	buf := make([]byte, len(p))
	n, err := x.r.Read(buf)
	out := p[:0]
	for _, b := range buf[:n] {
		switch {
		case x.tilde:
			x.tilde = false
			if b == '.' {
				return len(out), errEscape
			}
			if b != '~' {
				out = append(out, '~')
			}
			out = append(out, b)
			x.atLineStart = b == '\r' || b == '\n'
		case x.atLineStart && b == '~':
			x.tilde = true
		default:
			out = append(out, b)
			x.atLineStart = b == '\r' || b == '\n'
		}
	}
	return len(out), err
}

// makeRaw puts the terminal fd in raw mode and returns how to restore it.
func makeRaw(fd int) (func(), error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}
