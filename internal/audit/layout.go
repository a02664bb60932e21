package audit

import (
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/azote/azote/internal/durable"
)

// The trail's directory layout, relative to Config.Dir. Paths use '/'
// whatever the OS, because they are also the digestS3Object and s3Object
// values a validator on another host compares.
const (
	activeDir = "active"
	logsDir   = "logs"
	digestDir = "digests"
	keysDir   = "public-keys"

	bucket      = "local" // digestS3Bucket: there is no S3 bucket on one host
	tempPrefix  = ".tmp-"
	sigSuffix   = ".sig"
	journalExt  = ".jsonl"
	logNameTime = "20060102T1504Z"
	digNameTime = "20060102T150405Z"
	journalTime = "20060102T150405.000000000Z"
)

var (
	// nameRE bounds account IDs and regions to characters that are safe in a
	// file name and cannot be confused with the '_' separators.
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
	logRE     = regexp.MustCompile(`^logs/(\d{4})/(\d{2})/(\d{2})/[A-Za-z0-9-]{1,64}_Azote_[A-Za-z0-9-]{1,64}_(\d{8}T\d{4}Z)_[A-Za-z0-9]{16}\.json\.gz$`)
	digestRE  = regexp.MustCompile(`^digests/(\d{4})/(\d{2})/(\d{2})/[A-Za-z0-9-]{1,64}_Azote-Digest_[A-Za-z0-9-]{1,64}_(\d{8}T\d{6}Z)\.json\.gz$`)
	sigRE     = regexp.MustCompile(`^digests/\d{4}/\d{2}/\d{2}/[A-Za-z0-9-]{1,64}_Azote-Digest_[A-Za-z0-9-]{1,64}_\d{8}T\d{6}Z\.json\.gz\.sig$`)
	keyRE     = regexp.MustCompile(`^public-keys/[0-9a-f]{32}\.pem$`)
	journalRE = regexp.MustCompile(`^(\d{8}T\d{6}\.\d{9}Z)-([A-Za-z0-9]{16})\.jsonl$`)
)

// fileKind is what a relative path names in the layout.
type fileKind int

const (
	kindNone fileKind = iota
	kindLog
	kindDigest
	kindSig
	kindKey
)

// classify says what rel is, or kindNone if it is not a name the trail
// writes. Everything read from a Source or from a digest goes through it,
// so a hostile name ("../x", "/etc/passwd") never reaches the file system.
func classify(rel string) fileKind {
	switch {
	case logRE.MatchString(rel):
		return datedKind(rel, kindLog)
	case digestRE.MatchString(rel):
		return datedKind(rel, kindDigest)
	case sigRE.MatchString(rel):
		return datedKind(strings.TrimSuffix(rel, sigSuffix), kindSig)
	case keyRE.MatchString(rel):
		return kindKey
	}
	return kindNone
}

// datedKind is k if the time in rel's name parses and falls on the day of
// its directory, else kindNone: one file, one possible name.
func datedKind(rel string, k fileKind) fileKind {
	t, ok := nameTime(rel)
	if !ok || !strings.HasPrefix(rel[strings.IndexByte(rel, '/')+1:], t.Format("2006/01/02/")) {
		return kindNone
	}
	return k
}

// nameTime is the time a log or digest name carries: the minute a log's
// journal started, or the second a digest's period ended.
func nameTime(rel string) (time.Time, bool) {
	if m := logRE.FindStringSubmatch(rel); m != nil {
		t, err := time.Parse(logNameTime, m[4])
		return t, err == nil
	}
	if m := digestRE.FindStringSubmatch(rel); m != nil {
		t, err := time.Parse(digNameTime, m[4])
		return t, err == nil
	}
	return time.Time{}, false
}

func dayDir(kind string, t time.Time) string {
	return path.Join(kind, t.Format("2006"), t.Format("01"), t.Format("02"))
}

// logName is the finished log for the journal that started at start with
// id. It is a pure function of the journal's name so that finishing a
// journal twice (a crash after the rename, before the journal is removed)
// finds the log already there instead of writing its records again.
func logName(account, region string, start time.Time, id string) string {
	start = start.UTC()
	return path.Join(dayDir(logsDir, start),
		fmt.Sprintf("%s_Azote_%s_%s_%s.json.gz", account, region, start.Format(logNameTime), id))
}

func digestName(account, region string, end time.Time) string {
	end = end.UTC()
	return path.Join(dayDir(digestDir, end),
		fmt.Sprintf("%s_Azote-Digest_%s_%s.json.gz", account, region, end.Format(digNameTime)))
}

func journalName(start time.Time, id string) string {
	return start.UTC().Format(journalTime) + "-" + id + journalExt
}

func parseJournalName(name string) (start time.Time, id string, ok bool) {
	m := journalRE.FindStringSubmatch(name)
	if m == nil {
		return time.Time{}, "", false
	}
	t, err := time.Parse(journalTime, m[1])
	if err != nil {
		return time.Time{}, "", false
	}
	return t, m[2], true
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomID is a 16-character unique string like the one in CloudTrail's
// log file names.
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	return string(b[:])
}

// writeFileAtomic leaves either no file at rel or the whole of data: write a
// temporary file in the same directory, fsync it, move it into place and
// fsync the directory. With exclusive set it fails with fs.ErrExist rather
// than replace an existing file (link(2) instead of rename(2)), which is how
// a collector keeps its promise never to overwrite what it holds.
func writeFileAtomic(root, rel string, data []byte, exclusive bool) error {
	tmp, err := writeTemp(root, rel, data)
	if err != nil {
		return err
	}
	if exclusive {
		return commitTemp(tmp, root, rel)
	}
	full := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.Rename(tmp, full); err != nil {
		os.Remove(tmp)
		return err
	}
	return durable.SyncDir(filepath.Dir(full))
}

// mkdirAllSync creates root/rel and fsyncs the parent of every directory it
// creates, so a new day directory survives a crash along with the file
// written into it.
func mkdirAllSync(root, rel string) error {
	if rel == "." || rel == "" {
		return nil
	}
	full := filepath.Join(root, rel)
	if fi, err := os.Stat(full); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("audit: %s is not a directory", full)
		}
		return nil
	}
	if err := mkdirAllSync(root, filepath.Dir(rel)); err != nil {
		return err
	}
	if err := os.Mkdir(full, 0o700); err != nil && !os.IsExist(err) {
		return err
	}
	return durable.SyncDir(filepath.Dir(full))
}

// listTree returns the relative paths under root/top that classify as one
// of kinds, sorted. A missing top is an empty list.
func listTree(root, top string, kinds ...fileKind) ([]string, error) {
	var out []string
	base := filepath.Join(root, top)
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && p == base {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		k := classify(rel)
		for _, want := range kinds {
			if k == want {
				out = append(out, rel)
				break
			}
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// removeTemps deletes temporary files a crash left behind under root/top.
func removeTemps(root, top string) error {
	return filepath.WalkDir(filepath.Join(root, top), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), tempPrefix) {
			return os.Remove(p)
		}
		return nil
	})
}

// ListFiles returns the relative paths of the finished log, digest,
// signature and public-key files under dir whose path sorts after after,
// sorted. The journal and temporary files are never listed: a collector
// copies only files that will not change.
//
// after is a paging cursor in lexical order, not a watermark: a new digest
// ("digests/…") sorts before an older log ("logs/…"), so a collector that
// must see every new file lists from "".
func ListFiles(dir string, after string) ([]string, error) {
	var all []string
	for _, top := range []string{digestDir, logsDir, keysDir} {
		l, err := listTree(dir, top, kindLog, kindDigest, kindSig, kindKey)
		if err != nil {
			return nil, err
		}
		all = append(all, l...)
	}
	sort.Strings(all)
	i := sort.SearchStrings(all, after)
	for i < len(all) && all[i] <= after {
		i++
	}
	return all[i:], nil
}
