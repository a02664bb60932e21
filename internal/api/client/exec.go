package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/azote/azote/internal/api"
)

// Exec runs a command in an instance and copies its output to stdout and
// stderr as it arrives (the answer is one api.ExecEvent per line). It
// returns the command's exit; an *api.Error if the session was refused or
// broke.
func (c *Client) Exec(ctx context.Context, ref string, req api.ExecRequest, stdout, stderr io.Writer) (api.ExecExit, error) {
	resp, err := c.send(ctx, "POST", "/v1/instances/"+url.PathEscape(ref)+"/exec", jsonBody(req))
	if err != nil {
		return api.ExecExit{}, err
	}
	defer resp.Body.Close()
	return readExec(resp.Body, stdout, stderr)
}

// readExec copies an exec stream's output until its exit or error.
func readExec(r io.Reader, stdout, stderr io.Writer) (api.ExecExit, error) {
	dec := json.NewDecoder(r)
	for {
		var ev api.ExecEvent
		if err := dec.Decode(&ev); err != nil {
			return api.ExecExit{}, fmt.Errorf("exec stream ended without an exit: %w", err)
		}
		if len(ev.Stdout) > 0 {
			if _, err := stdout.Write(ev.Stdout); err != nil {
				return api.ExecExit{}, err
			}
		}
		if len(ev.Stderr) > 0 {
			stderr.Write(ev.Stderr)
		}
		switch {
		case ev.Error != nil:
			return api.ExecExit{}, ev.Error
		case ev.Exit != nil:
			return *ev.Exit, nil
		}
	}
}

// ExecConn is an interactive exec session: Events sends the client's
// side (stdin, resize), Wait copies the output to w until the exit.
type ExecConn struct {
	rwc io.ReadWriteCloser
	enc *json.Encoder
}

// Send sends one event (Stdin, CloseStdin or Resize).
func (x *ExecConn) Send(ev api.ExecEvent) error { return x.enc.Encode(ev) }

// Wait copies the session's output to w and returns its exit.
func (x *ExecConn) Wait(w io.Writer) (api.ExecExit, error) { return readExec(x.rwc, w, w) }

// Close hangs up, which ends the command if it still runs.
func (x *ExecConn) Close() error { return x.rwc.Close() }

// ExecInteractive opens an interactive session (req.Interactive): the
// signed request asks to upgrade its HTTP/1.1 connection, which then
// carries api.ExecEvent lines both ways.
func (c *Client) ExecInteractive(ctx context.Context, ref string, req api.ExecRequest) (*ExecConn, error) {
	req.Interactive = true
	hr, err := c.newRequest(ctx, "POST", "/v1/instances/"+url.PathEscape(ref)+"/exec", jsonBody(req))
	if err != nil {
		return nil, err
	}
	// Added after signing: hop-by-hop headers are not the signature's.
	hr.Header.Set("Connection", "Upgrade")
	hr.Header.Set("Upgrade", api.ExecUpgrade)
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("cannot reach azoted: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		return nil, errorOf(resp)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return nil, fmt.Errorf("azoted switched protocols but the connection is not writable")
	}
	return &ExecConn{rwc: rwc, enc: json.NewEncoder(rwc)}, nil
}
