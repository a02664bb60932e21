package audit

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/azote/azote/internal/durable"
)

// parseJournal splits a journal into the records Append wrote. Every
// complete line must be one record; a line that is not (the torn tail of a
// write cut short by a crash, or anything else) is dropped and counted,
// never fatal, because the records around it were acknowledged and must
// not be lost with it. lines[i] is the exact bytes of recs[i] without its
// newline, so a finished log holds what was fsynced, byte for byte.
func parseJournal(b []byte) (recs []Record, lines [][]byte, dropped int) {
	for len(b) > 0 {
		line := b
		i := bytes.IndexByte(b, '\n')
		if i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil // no newline: a torn last line
		}
		if i < 0 {
			dropped++
			continue
		}
		r, err := parseRecord(line)
		if err != nil {
			dropped++
			continue
		}
		recs = append(recs, r)
		lines = append(lines, line)
	}
	return recs, lines, dropped
}

// splitLines splits a journal the live writer produced, which holds only
// whole lines, without decoding them.
func splitLines(b []byte) [][]byte {
	var lines [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		lines = append(lines, b[:i])
		b = b[i+1:]
	}
	return lines
}

// logJSON is the body of a finished log: CloudTrail's {"Records":[…]}.
func logJSON(lines [][]byte) []byte {
	n := len(`{"Records":[]}`)
	for _, l := range lines {
		n += len(l) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, `{"Records":[`...)
	for i, l := range lines {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, l...)
	}
	return append(out, "]}"...)
}

// pendingLog is a finished log not yet listed in a digest.
type pendingLog struct {
	rel            string
	hash           string
	oldest, newest time.Time
}

func (p pendingLog) entry() logEntry {
	return logEntry{
		S3Bucket:        bucket,
		S3Object:        p.rel,
		HashValue:       p.hash,
		HashAlgorithm:   hashAlgorithm,
		NewestEventTime: fmtTime(p.newest),
		OldestEventTime: fmtTime(p.oldest),
	}
}

// writeTemp writes data to a synced temporary file in the directory of
// root/rel and returns its name; commitTemp moves it into place.
func writeTemp(root, rel string, data []byte) (string, error) {
	if err := mkdirAllSync(root, filepath.Dir(filepath.FromSlash(rel))); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(filepath.Join(root, filepath.FromSlash(path.Dir(rel))), tempPrefix)
	if err != nil {
		return "", err
	}
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// commitTemp links tmp to root/rel without replacing an existing file,
// removes tmp and fsyncs the directory. It reports fs.ErrExist unchanged.
func commitTemp(tmp, root, rel string) error {
	full := filepath.Join(root, filepath.FromSlash(rel))
	err := os.Link(tmp, full)
	os.Remove(tmp)
	if err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(full))
}

// existingLog returns the entry for a log already on disk: a journal that
// was finished before a crash removed it.
func existingLog(root, rel string, oldest, newest time.Time) (pendingLog, error) {
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		return pendingLog{}, err
	}
	return pendingLog{rel: rel, hash: hashHex(b), oldest: oldest, newest: newest}, nil
}

// recoverJournal finishes a journal a previous process left in active/:
// its valid lines become a log (unless the log was already written), then
// the journal is removed. It returns the log, whether one exists, and the
// counts of records kept and lines dropped.
//
// verify says which of the journal's bytes were acknowledged (the journal
// head, head.go); it is not asked when the log already exists, which is
// then authoritative. If it reports the journal tampered, the journal is
// set aside and errTampered returned.
func recoverJournal(root, account, region, name string, verify func(name string, b []byte) (acked []byte, tampered string)) (p pendingLog, ok bool, kept, dropped int, err error) {
	start, id, valid := parseJournalName(name)
	if !valid {
		return p, false, 0, 0, nil // not ours; leave it
	}
	full := filepath.Join(root, activeDir, name)
	b, err := os.ReadFile(full)
	if err != nil {
		return p, false, 0, 0, err
	}
	rel := logName(account, region, start, id)
	if _, serr := os.Stat(filepath.Join(root, filepath.FromSlash(rel))); serr != nil {
		acked, reason := verify(name, b)
		if reason != "" {
			if err := setAside(root, name, reason); err != nil {
				return p, false, 0, 0, err
			}
			return p, false, 0, 0, &tamperedError{name: name, reason: reason}
		}
		// Whatever follows was never acknowledged: cut, and counted.
		unacked, _, torn := parseJournal(b[len(acked):])
		dropped = len(unacked) + torn
		b = acked
	}
	recs, lines, cut := parseJournal(b)
	dropped += cut
	if len(lines) > 0 {
		oldest, newest := recs[0].EventTime, recs[0].EventTime
		for _, r := range recs[1:] {
			oldest, newest = minTime(oldest, r.EventTime), maxTime(newest, r.EventTime)
		}
		gz, gerr := gzipBytes(logJSON(lines))
		if gerr != nil {
			return p, false, 0, dropped, gerr
		}
		tmp, terr := writeTemp(root, rel, gz)
		if terr != nil {
			return p, false, 0, dropped, terr
		}
		switch cerr := commitTemp(tmp, root, rel); {
		case cerr == nil:
			p = pendingLog{rel: rel, hash: hashHex(gz), oldest: oldest, newest: newest}
		case errors.Is(cerr, fs.ErrExist):
			// Finished before the crash; the log on disk is authoritative.
			if p, err = existingLog(root, rel, oldest, newest); err != nil {
				return p, false, 0, dropped, err
			}
		default:
			return p, false, 0, dropped, cerr
		}
		ok = true
	}
	if err := os.Remove(full); err != nil {
		return p, ok, len(lines), dropped, err
	}
	return p, ok, len(lines), dropped, durable.SyncDir(filepath.Join(root, activeDir))
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// tamperedError reports a journal set aside because it did not match its
// head.
type tamperedError struct{ name, reason string }

func (e *tamperedError) Error() string { return "journal " + e.name + " set aside: " + e.reason }
