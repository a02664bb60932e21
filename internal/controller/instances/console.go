package instances

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/agent"
	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
)

// The serial console is a file the engine appends to (O_APPEND), so it is
// captured whether or not azoted is running. Its size on disk is bounded by
// punching a hole over everything but the last ConsoleLimit bytes: the file
// offset keeps growing, the blocks are freed, and nothing the engine writes
// concurrently can be lost (a truncate could lose it).

// consoleTail reads lines appended to a console file since off.
type consoleTail struct {
	path  string
	off   int64
	carry []byte
	buf   []byte
}

const maxCarry = 4 << 10

func consoleEnd(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// lines returns the complete lines appended since the last call.
func (t *consoleTail) lines() []string {
	f, err := os.Open(t.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if t.buf == nil {
		t.buf = make([]byte, 64<<10)
	}
	var out []string
	t.off = dataFrom(f, t.off)
	for {
		n, err := f.ReadAt(t.buf, t.off)
		if n > 0 {
			t.off += int64(n)
			t.carry = append(t.carry, t.buf[:n]...)
			for {
				i := bytes.IndexByte(t.carry, '\n')
				if i < 0 {
					break
				}
				out = append(out, strings.TrimRight(string(t.carry[:i]), "\r"))
				t.carry = t.carry[i+1:]
			}
			if len(t.carry) > maxCarry {
				t.carry = t.carry[len(t.carry)-agent.MaxLineLen:]
			}
		}
		if err != nil || n < len(t.buf) {
			break
		}
	}
	// Copy the carry down so the slice does not keep growing.
	t.carry = append([]byte(nil), t.carry...)
	return out
}

// boundConsole frees the blocks of all but the last limit bytes of path,
// and any allocated past its end (freePastEnd).
func boundConsole(path string, limit int64) error { return boundFile(path, limit, punchHead) }

// punchHead punches a hole over all but the last limit bytes (to a 4 KiB
// block) of f. Unlike cutHead it never collapses: offsets into the
// console stay where they were.
func punchHead(f *os.File, limit int64) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if end := (st.Size() - limit) &^ 4095; end > 0 {
		return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, end)
	}
	return nil
}

// Console.
func (s *Service) Console(ctx context.Context, ref string, tail int64, follow bool, w io.Writer, flush func()) error {
	rec, err := s.resolve(ref)
	if err != nil {
		return err
	}
	if rec.State == api.StateTerminated {
		return refusal.New(ErrIncorrectState, "instance %s is terminated; its console is gone", rec.ID)
	}
	path := consolePath(s.instanceDir(rec.ID))
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		if !follow {
			return nil
		}
	} else if err != nil {
		return err
	} else {
		defer f.Close()
	}
	tail = min(tail, s.cfg.ConsoleLimit)
	var pos int64
	if f != nil {
		st, err := f.Stat()
		if err != nil {
			return err
		}
		pos = max(st.Size()-tail, 0)
	}
	buf := make([]byte, 32<<10)
	copyNew := func() error {
		if f == nil {
			return nil
		}
		pos = dataFrom(f, pos)
		for {
			n, rerr := f.ReadAt(buf, pos)
			if n > 0 {
				pos += int64(n)
				if _, err := w.Write(buf[:n]); err != nil {
					return err
				}
			}
			if rerr != nil || n < len(buf) {
				return nil
			}
		}
	}
	if err := copyNew(); err != nil {
		return err
	}
	flush()
	if !follow {
		return nil
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if f == nil {
			if f, err = os.Open(path); err != nil {
				f = nil
			} else {
				defer f.Close()
			}
		}
		if err := copyNew(); err != nil {
			return err
		}
		flush()
		if cur, err := s.get(rec.ID); err != nil || cur.State == api.StateTerminated {
			return nil
		}
	}
}

// dataFrom returns the first offset at or after off that is not inside a
// punched hole, so readers skip what boundConsole freed (which reads as
// zeros) without dropping NUL bytes the guest really wrote.
func dataFrom(f *os.File, off int64) int64 {
	n, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	if err != nil || n < off {
		return off // ENXIO: nothing but hole or EOF after off
	}
	return n
}
