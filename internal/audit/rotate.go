package audit

import (
	"bytes"
	"errors"
	"io"
	"time"
)

// A log is only as trustworthy as what signed it. A finished log waiting
// for the periodic digest, or the open journal, sits on disk unsigned,
// and whoever can write the trail directory could change it before the
// next digest signed it as found. So:
//
//   - every rotation signs a digest listing the new log at once
//     (rotateSigned), instead of leaving it for the hourly digest;
//   - the live writer keeps its own copy of the journal, and before a
//     rotation writes it back over the file wherever the two differ
//     (rotateChecked), so a log holds what Append acknowledged.
//
// What is left is a crash: Open finishes a journal only as far as the
// signed journal head vouches for it (head.go), and signs the unlisted
// logs it finds as they are then on disk (docs/threat-model.md).

// rotateSigned finishes the journal and writes a digest that lists the
// log. If a digest already ends this second (digests are named by the
// second), the log waits for the next rotation or digest: at most a
// second, held by hash in memory.
func (t *Trail) rotateSigned() error {
	w := &t.w
	if w.f == nil || (w.prev != nil && !t.now().Truncate(time.Second).After(w.prev.end)) {
		return t.rotateChecked()
	}
	return t.writeDigest()
}

// rotateChecked is rotate after restoreJournal.
func (t *Trail) rotateChecked() error {
	w := &t.w
	if w.f != nil && w.failed == nil {
		if err := t.restoreJournal(); err != nil {
			return err
		}
	}
	return t.rotate()
}

// restoreJournal makes the open journal's file hold exactly what this
// process wrote to it (w.body), counting a restore when it did not.
func (t *Trail) restoreJournal() error {
	w := &t.w
	disk := make([]byte, len(w.body)+1)
	n, err := w.f.ReadAt(disk, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if n == len(w.body) && bytes.Equal(disk[:n], w.body) {
		return nil
	}
	w.restored.Add(1)
	if _, err := w.f.WriteAt(w.body, 0); err != nil {
		return err
	}
	if err := w.f.Truncate(int64(len(w.body))); err != nil {
		return err
	}
	return datasync(w.f)
}

// JournalRestores counts the journals whose file differed, at rotation,
// from what this process had written to it, and were written back: each
// one is someone else writing to the trail directory.
func (t *Trail) JournalRestores() uint64 { return t.w.restored.Load() }
