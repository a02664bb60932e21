package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Filter selects records for Lookup. Empty fields match everything.
type Filter struct {
	// Principal matches userIdentity.arn, userName or accessKeyId exactly.
	Principal string
	// EventName matches eventName exactly.
	EventName string
	// Resource is a substring of the JSON of requestParameters or
	// resources.
	Resource string
	// ErrorCode matches errorCode exactly.
	ErrorCode string
	// OnlyErrors keeps only records with an errorCode.
	OnlyErrors bool
	// Start and End bound eventTime, both inclusive.
	Start, End time.Time
	// Limit caps the number of records returned; 0 means no cap.
	Limit int
}

func (f *Filter) match(r *Record) bool {
	if p := f.Principal; p != "" {
		u := &r.UserIdentity
		if u.ARN != p && u.UserName != p && u.AccessKeyID != p {
			return false
		}
	}
	if f.EventName != "" && r.EventName != f.EventName {
		return false
	}
	if f.ErrorCode != "" && r.ErrorCode != f.ErrorCode {
		return false
	}
	if f.OnlyErrors && r.ErrorCode == "" {
		return false
	}
	if !f.Start.IsZero() && r.EventTime.Before(f.Start) {
		return false
	}
	if !f.End.IsZero() && r.EventTime.After(f.End) {
		return false
	}
	if f.Resource != "" {
		params, _ := json.Marshal(r.RequestParameters)
		res, _ := json.Marshal(r.Resources)
		if !bytes.Contains(params, []byte(f.Resource)) && !bytes.Contains(res, []byte(f.Resource)) {
			return false
		}
	}
	return true
}

// parseLogFile decodes a finished log: gzip of {"Records":[…]}.
func parseLogFile(b []byte) ([]Record, error) {
	j, err := gunzip(b, maxLogJSON)
	if err != nil {
		return nil, err
	}
	var body struct {
		Records []json.RawMessage `json:"Records"`
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return nil, fmt.Errorf("%w: log: %v", ErrCorrupt, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after log", ErrCorrupt)
	}
	if body.Records == nil {
		return nil, fmt.Errorf("%w: log without Records", ErrCorrupt)
	}
	recs := make([]Record, 0, len(body.Records))
	for _, raw := range body.Records {
		r, err := parseRecord(raw)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// Lookup returns the records in dir that match f, newest first. It reads
// the finished logs and any journal in active/ (a trail's open log, or one
// a crash left), so it also works on a collector's copy, which has no
// journal. A corrupt log is an error: Lookup answers from an intact trail
// or says it cannot.
func Lookup(dir string, f Filter) ([]Record, error) {
	logs, err := listTree(dir, logsDir, kindLog)
	if err != nil {
		return nil, err
	}
	have := make(map[string]bool, len(logs))
	for _, l := range logs {
		have[l] = true
	}
	var journals [][]byte
	ents, err := os.ReadDir(filepath.Join(dir, activeDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range ents {
		start, id, ok := parseJournalName(e.Name())
		if !ok {
			continue
		}
		// A journal whose log exists was finished; a crash only kept it.
		// Any account and region would do for the check: match by suffix.
		if logExistsFor(have, start, id) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, activeDir, e.Name()))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // finished between ReadDir and here
			}
			return nil, err
		}
		journals = append(journals, b)
	}
	return lookup(dir, logs, journals, f)
}

func logExistsFor(have map[string]bool, start time.Time, id string) bool {
	suffix := "_" + start.UTC().Format(logNameTime) + "_" + id + ".json.gz"
	for l := range have {
		if strings.HasSuffix(l, suffix) {
			return true
		}
	}
	return false
}

// Lookup is the package Lookup on the live trail. It sees every record
// whose Append returned before it was called, and each record once, even
// while the writer rotates: the log list and the journal's durable prefix
// are read together under filesMu.
func (t *Trail) Lookup(f Filter) ([]Record, error) {
	t.filesMu.RLock()
	logs, err := listTree(t.cfg.Dir, logsDir, kindLog)
	var journal []byte
	if err == nil && t.journalPath != "" {
		journal, err = readPrefix(t.journalPath, t.durable.Load())
	}
	t.filesMu.RUnlock()
	if err != nil {
		return nil, err
	}
	return lookup(t.cfg.Dir, logs, [][]byte{journal}, f)
}

func readPrefix(name string, n int64) ([]byte, error) {
	fh, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b := make([]byte, n)
	_, err = io.ReadFull(fh, b)
	return b, err
}

func lookup(dir string, logs []string, journals [][]byte, f Filter) ([]Record, error) {
	sortByNameTime(logs)
	var out []Record
	for _, rel := range logs {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, err
		}
		recs, err := parseLogFile(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		for i := range recs {
			if f.match(&recs[i]) {
				out = append(out, recs[i])
			}
		}
	}
	for _, j := range journals {
		recs, _, _ := parseJournal(j)
		for i := range recs {
			if f.match(&recs[i]) {
				out = append(out, recs[i])
			}
		}
	}
	// out is in write order; newest first by event time, later writes
	// first among equal times.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].EventTime.After(out[j].EventTime) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}
