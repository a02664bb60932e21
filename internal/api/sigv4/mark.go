package sigv4

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MarkMargin is how far past a request's date its key's mark is written,
// so that a client whose clock runs ahead costs one write per MarkMargin,
// not one per request.
const MarkMargin = 5 * time.Second

// maxMarkKeys bounds the access keys a Mark holds one by one; past it
// they are folded into one mark for every key.
const maxMarkKeys = 1024

// allKeys names the mark that applies to every access key.
const allKeys = "*"

// Mark is a durable bound, per access key, on the x-amz-date of the
// requests a verifier accepted that were dated after the host clock's
// reading when they were accepted. A request dated at or before that
// reading is refused after a restart by NotBefore (the start comes
// later); one dated ahead (a fast client clock, up to MaxSkew) is not,
// and the replay cache that refused it again is gone with the process.
// The verifier writes its key's mark, and syncs it, before it accepts
// such a request, so the next process refuses everything that key signed
// dated before it. A mark is per key so that one client's fast clock
// holds back only its own key's requests after a restart, and those only
// until MarkMargin after its last one (its next requests are dated later
// by the time that has passed).
type Mark struct {
	path string
	prev map[string]time.Time // read at open: what earlier processes accepted ahead of the clock, per key, was dated before it

	mu  sync.Mutex
	cur map[string]time.Time // the same for this process, as stored
}

// OpenMark reads the marks at path (none yet: no mark). A file that
// cannot be read or parsed is an error: starting without it would accept
// again requests an earlier process accepted.
func OpenMark(path string) (*Mark, error) {
	m := &Mark{path: path, prev: map[string]time.Time{}, cur: map[string]time.Time{}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return m, nil
	case err != nil:
		return nil, fmt.Errorf("sigv4 mark: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, sec, ok := strings.Cut(sc.Text(), " ")
		n, err := strconv.ParseInt(sec, 10, 64)
		if !ok || key == "" || err != nil || n < 0 {
			return nil, fmt.Errorf("sigv4 mark %s: line %q is not KEY UNIX-SECONDS (delete the file only once every request it covers is older than the clock window)", path, trim(sc.Text()))
		}
		m.prev[key] = time.Unix(n, 0)
		m.cur[key] = m.prev[key]
	}
	return m, nil
}

// Previous is the mark an earlier process left for key: requests it
// signed dated before it are refused. The zero time if none.
func (m *Mark) Previous(key string) time.Time {
	t := m.prev[key]
	if all := m.prev[allKeys]; all.After(t) {
		t = all
	}
	return t
}

// cover makes sure key's stored mark is after t, writing t+MarkMargin
// (and syncing it) when it is not. Marks at or before now are dropped
// as it writes: what they cover is dated before the next start too.
func (m *Mark) cover(key string, t, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t.Before(m.cur[key]) || t.Before(m.cur[allKeys]) {
		return nil
	}
	next := map[string]time.Time{}
	for k, v := range m.cur {
		if v.After(now) {
			next[k] = v
		}
	}
	next[key] = t.Add(MarkMargin).Truncate(time.Second)
	if len(next) > maxMarkKeys {
		var all time.Time
		for _, v := range next {
			if v.After(all) {
				all = v
			}
		}
		next = map[string]time.Time{allKeys: all}
	}
	keys := make([]string, 0, len(next))
	for k := range next {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %d\n", k, next[k].Unix())
	}
	if err := writeSynced(m.path, b.Bytes()); err != nil {
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

func trim(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}
