package sigv4

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MarkMargin is how far past a request's date a Mark is written, so that
// a client whose clock runs ahead costs one write per MarkMargin, not one
// per request.
const MarkMargin = 5 * time.Second

// Mark is a durable bound on the x-amz-date of every request a verifier
// accepted that was dated after the host clock's reading when it was
// accepted. A request dated at or before that reading is refused after a
// restart by NotBefore (the start comes later); one dated ahead (a fast
// client clock, up to MaxSkew) is not, and the replay cache that refused
// it again is gone with the process. The verifier writes the mark, and
// syncs it, before it accepts such a request, so the next process can
// refuse everything dated before it.
type Mark struct {
	path string
	prev time.Time // read at open: every request accepted ahead of the clock by an earlier process was dated before it

	mu  sync.Mutex
	cur time.Time // every request accepted ahead of the clock is dated before it (durably)
}

// OpenMark reads the mark at path (none yet: the zero time). A mark that
// cannot be read or parsed is an error: starting without it would accept
// again requests an earlier process accepted.
func OpenMark(path string) (*Mark, error) {
	m := &Mark{path: path}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return m, nil
	case err != nil:
		return nil, fmt.Errorf("sigv4 mark: %w", err)
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || sec < 0 {
		return nil, fmt.Errorf("sigv4 mark %s: %q is not a time (Unix seconds)", path, bytes16(b))
	}
	m.prev = time.Unix(sec, 0)
	m.cur = m.prev
	return m, nil
}

// Previous is the mark as the earlier process left it: requests dated
// before it are refused.
func (m *Mark) Previous() time.Time { return m.prev }

// cover makes sure the stored mark is after t, writing t+MarkMargin (and
// syncing it) when it is not.
func (m *Mark) cover(t time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t.Before(m.cur) {
		return nil
	}
	next := t.Add(MarkMargin).Truncate(time.Second)
	if err := writeSynced(m.path, []byte(strconv.FormatInt(next.Unix(), 10)+"\n")); err != nil {
		return fmt.Errorf("sigv4 mark: %w", err)
	}
	m.cur = next
	return nil
}

// writeSynced replaces path with b durably: a synced temporary file
// renamed over it, then the directory synced.
func writeSynced(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if err2 := f.Close(); err == nil {
		err = err2
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func bytes16(b []byte) string {
	if len(b) > 16 {
		b = b[:16]
	}
	return string(b)
}
