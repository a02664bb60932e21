package agent

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The exec protocol shares the control port (/dev/ttyS1) with the line
// commands (stop, reboot, ping). The port is a byte stream with no
// message boundaries, so every exec message is one line of its own:
//
//	X1 <base64url, no padding, of: type(1) session(4, big-endian) payload>\n
//
// "X1" is the version tag: a later format takes another tag, and a line
// either side does not understand is dropped (an old agent ignores exec
// frames, which the host sees as no answer: ErrAgentUnavailable). Lines
// are bounded (MaxFrameLine) and a payload is at most MaxData bytes; an
// over-long line is skipped to its newline, so one bad line never costs
// the stream its framing.
//
// Sessions are multiplexed by id, chosen by the host. Each direction of
// each session has a credit window: the agent sends stdout/stderr bytes
// only while it holds credit, which the host returns (FrameCredit) as it
// hands output on, and the host sends stdin within credit the agent
// returns as it writes to the process. Neither side ever buffers more
// than Window bytes of a session.

// FrameTag starts every exec line; its number is the protocol version.
const FrameTag = "X1 "

// Bounds of the exec protocol.
const (
	// MaxData is the largest payload of one frame.
	MaxData = 8 << 10
	// MaxFrameLine bounds one encoded line, tag and newline included.
	MaxFrameLine = len(FrameTag) + (5+MaxData+2)/3*4 + 1
	// Window is the credit each side starts a session with, per
	// direction: the most either buffers for it.
	Window = 64 << 10
	// MaxSessions bounds the sessions an agent runs at once.
	MaxSessions = 8
	// MaxArgs and MaxArgBytes bound an open request's command.
	MaxArgs     = 256
	MaxArgBytes = 4 << 10
)

// FrameType says what a frame carries.
type FrameType byte

// Frame types. "→agent" frames are sent by the host, "→host" by the agent.
const (
	FrameOpen       FrameType = 1  // →agent: JSON OpenRequest
	FrameOpened     FrameType = 2  // →host: the command started
	FrameStdin      FrameType = 3  // →agent: bytes for the command's stdin
	FrameCloseStdin FrameType = 4  // →agent: no more stdin
	FrameStdout     FrameType = 5  // →host: bytes the command wrote (a tty session's all go here)
	FrameStderr     FrameType = 6  // →host
	FrameResize     FrameType = 7  // →agent: rows(2) cols(2), a tty session's window
	FrameCredit     FrameType = 8  // both: 4-byte count of bytes the sender may send more
	FrameExit       FrameType = 9  // →host: JSON ExitStatus; the session is over
	FrameKill       FrameType = 10 // →agent: end the command (SIGKILL to its process group)
)

// Frame is one exec message.
type Frame struct {
	Type    FrameType
	Session uint32
	Payload []byte
}

// Errors of the exec protocol.
var (
	ErrFrame = errors.New("agent: malformed exec frame")
	// ErrAgentUnavailable is returned when the guest's agent does not
	// answer an exec request: no agent, an agent without exec, or one
	// that is not up yet.
	ErrAgentUnavailable = errors.New("agent: the guest agent does not answer exec requests")
	// ErrTooManySessions refuses a session past MaxSessions.
	ErrTooManySessions = errors.New("agent: too many exec sessions")
)

// AppendFrame appends f as one line (with its newline) to dst.
func AppendFrame(dst []byte, f Frame) ([]byte, error) {
	if len(f.Payload) > MaxData {
		return dst, fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrFrame, len(f.Payload), MaxData)
	}
	raw := make([]byte, 5+len(f.Payload))
	raw[0] = byte(f.Type)
	binary.BigEndian.PutUint32(raw[1:5], f.Session)
	copy(raw[5:], f.Payload)
	dst = append(dst, FrameTag...)
	dst = base64.RawURLEncoding.AppendEncode(dst, raw)
	return append(dst, '\n'), nil
}

// ParseFrame decodes one line (without its newline) that starts with
// FrameTag. It checks the encoding, the type and the payload size of the
// type; the meaning of a payload is checked where it is used.
func ParseFrame(line []byte) (Frame, error) {
	rest, ok := strings.CutPrefix(string(line), FrameTag)
	if !ok {
		return Frame{}, fmt.Errorf("%w: no %q tag", ErrFrame, strings.TrimSpace(FrameTag))
	}
	rest = strings.TrimRight(rest, "\r")
	if len(rest) > MaxFrameLine {
		return Frame{}, fmt.Errorf("%w: line too long", ErrFrame)
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return Frame{}, fmt.Errorf("%w: %v", ErrFrame, err)
	}
	if len(raw) < 5 {
		return Frame{}, fmt.Errorf("%w: %d bytes, want at least 5", ErrFrame, len(raw))
	}
	f := Frame{Type: FrameType(raw[0]), Session: binary.BigEndian.Uint32(raw[1:5]), Payload: raw[5:]}
	if len(f.Payload) > MaxData {
		return Frame{}, fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrFrame, len(f.Payload), MaxData)
	}
	want := -1 // any length
	switch f.Type {
	case FrameOpened, FrameCloseStdin, FrameKill:
		want = 0
	case FrameResize:
		want = 4
	case FrameCredit:
		want = 4
	case FrameOpen, FrameExit, FrameStdin, FrameStdout, FrameStderr:
	default:
		return Frame{}, fmt.Errorf("%w: unknown type %d", ErrFrame, f.Type)
	}
	if want >= 0 && len(f.Payload) != want {
		return Frame{}, fmt.Errorf("%w: type %d with %d payload bytes, want %d", ErrFrame, f.Type, len(f.Payload), want)
	}
	return f, nil
}

// CreditFrame grants n more bytes to the peer of session id.
func CreditFrame(id uint32, n int) Frame {
	p := make([]byte, 4)
	binary.BigEndian.PutUint32(p, uint32(n))
	return Frame{Type: FrameCredit, Session: id, Payload: p}
}

// ResizeFrame sets a tty session's window.
func ResizeFrame(id uint32, rows, cols uint16) Frame {
	p := make([]byte, 4)
	binary.BigEndian.PutUint16(p[0:2], rows)
	binary.BigEndian.PutUint16(p[2:4], cols)
	return Frame{Type: FrameResize, Session: id, Payload: p}
}

// OpenRequest is what a session runs.
type OpenRequest struct {
	Argv []string `json:"argv"`
	// User runs the command with that user's uid, gid and groups from the
	// guest's /etc/passwd and /etc/group; empty means root.
	User string `json:"user,omitempty"`
	// TTY gives the command a pseudo-terminal of Rows×Cols (stdout and
	// stderr are then one stream); otherwise it gets pipes.
	TTY  bool   `json:"tty,omitempty"`
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
	// Login runs the user's shell as a login shell (argv is then empty).
	Login bool `json:"login,omitempty"`
}

// Validate checks the bounds of an open request.
func (r OpenRequest) Validate() error {
	if len(r.Argv) == 0 && !r.Login {
		return errors.New("no command")
	}
	if len(r.Argv) > MaxArgs {
		return fmt.Errorf("%d arguments, at most %d", len(r.Argv), MaxArgs)
	}
	n := 0
	for _, a := range r.Argv {
		n += len(a) + 1
		if strings.IndexByte(a, 0) >= 0 {
			return errors.New("an argument contains a NUL byte")
		}
	}
	if n > MaxArgBytes {
		return fmt.Errorf("command of %d bytes, at most %d", n, MaxArgBytes)
	}
	if len(r.User) > 32 || strings.ContainsAny(r.User, ":/\n\x00") {
		return fmt.Errorf("user %q is not a user name", r.User)
	}
	return nil
}

// ExitStatus ends a session: the command's exit code, or the signal that
// ended it, or Error when it could not be run (then Code is -1).
type ExitStatus struct {
	Code   int    `json:"code"`
	Signal string `json:"signal,omitempty"`
	Error  string `json:"error,omitempty"`
}

// encodeJSON is json.Marshal for the small payloads of open and exit,
// which always fit MaxData once validated.
func encodeJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// lineReader reads bounded lines from the control port. A line longer
// than max is dropped up to its newline and reported as errLongLine, so
// the reader stays in step with the framing.
type lineReader struct {
	r   *bufio.Reader
	max int
}

var errLongLine = errors.New("agent: line too long")

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, max+1), max: max}
}

// next returns the next line without its newline; the slice is valid
// until the next call.
func (l *lineReader) next() ([]byte, error) {
	line, err := l.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = l.r.ReadSlice('\n')
		}
		if err != nil {
			return nil, err
		}
		return nil, errLongLine
	}
	if err != nil {
		return nil, err
	}
	return line[:len(line)-1], nil
}
