package audit

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Problem kinds Validate reports.
const (
	// KindModified: a file's bytes differ from the hash its digest
	// records, or it does not parse.
	KindModified = "modified"
	// KindDeleted: a digest lists a log file that is not there.
	KindDeleted = "deleted"
	// KindMissingDigest: a digest names a previous digest that is not
	// there, or the chain's coverage in time has a gap.
	KindMissingDigest = "missing-digest"
	// KindOutOfChain: a file is not where the chain says it is: a digest
	// under another name than the one it was signed for, a log holding
	// another listed log's bytes, a digest the chain skips.
	KindOutOfChain = "out-of-chain"
	// KindBadSignature: a digest's signature is missing, does not verify,
	// is by a key that is not pinned (whatever public-keys/ holds), or
	// differs from the one the next digest chains.
	KindBadSignature = "bad-signature"
	// KindUnlisted: a log file in the period that no digest lists (and
	// that is older than the newest digest, so not merely pending).
	KindUnlisted = "unlisted"
	// KindTampered: a journal azoted's start-up kept aside, unsigned,
	// because its bytes were not those its signed journal head records
	// (edited, truncated or deleted after a crash).
	KindTampered = "tampered-journal"
)

// Problem is one thing Validate found wrong.
type Problem struct {
	Kind   string // one of the Kind constants
	File   string // path relative to the trail directory
	Detail string
}

func (p Problem) String() string { return p.Kind + " " + p.File + ": " + p.Detail }

// Report is what Validate checked and what it found.
type Report struct {
	Digests  int       // digests visited
	LogFiles int       // log files listed by them and checked
	Pending  int       // logs newer than the newest digest, not yet listed
	Problems []Problem // empty when the trail is intact
	From, To time.Time // coverage of the digests visited
}

// ReadPublicKeys reads dir/public-keys and returns the keys by
// fingerprint (computed, not taken from the file name).
func ReadPublicKeys(dir string) (map[string]*rsa.PublicKey, error) {
	keys := map[string]*rsa.PublicKey{}
	rels, err := listTree(dir, keysDir, kindKey)
	if err != nil {
		return nil, err
	}
	for _, rel := range rels {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, err
		}
		pub, fp, err := ParsePublicKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		keys[fp] = pub
	}
	return keys, nil
}

// dinfo is one digest file as found on disk.
type dinfo struct {
	rel    string
	raw    []byte
	d      *digest // nil when it does not parse
	perr   error
	sig    string
	sigErr error
}

func (di *dinfo) end() time.Time {
	if di.d != nil {
		return di.d.end
	}
	t, _ := nameTime(di.rel)
	return t
}

// Validate checks the trail in dir as CloudTrail's validator does: from the
// newest digest whose period ends in [from, to] (zero times are open
// ends) it walks the chain backwards, checking each digest's signature
// with pubkeys (by fingerprint; nil reads dir/public-keys, which trusts
// the directory), that each names the previous digest's hash and
// signature and continues its period, and that every log it lists has the
// hash recorded. Logs no digest lists are reported too. It reads only;
// the error is for I/O failures and for ErrNoDigest.
//
// pubkeys must come from outside dir (PinnedKeys, TrustedKeys): whoever
// can write dir can add a key to public-keys/, drop a record and sign the
// digests again, and nil trusts exactly that.
//
// It cannot see that the newest digests were deleted together with their
// logs: only a copy held elsewhere (Collect) can.
func Validate(dir string, pubkeys map[string]*rsa.PublicKey, from, to time.Time) (Report, error) {
	var rep Report
	if pubkeys == nil {
		var err error
		if pubkeys, err = ReadPublicKeys(dir); err != nil {
			return rep, err
		}
	}
	all, err := loadDigests(dir)
	if err != nil {
		return rep, err
	}
	inRange := func(i int) bool {
		e := all[i].end()
		return (from.IsZero() || !e.Before(from)) && (to.IsZero() || !e.After(to))
	}
	index := make(map[string]int, len(all))
	byHash := make(map[string]string, len(all))
	for i, di := range all {
		index[di.rel] = i
		byHash[hashHex(di.raw)] = di.rel
	}
	visited := make(map[string]bool)
	next := func(olderThan int) int {
		for k := olderThan - 1; k >= 0; k-- {
			if !visited[all[k].rel] && inRange(k) {
				return k
			}
		}
		return -1
	}
	problem := func(kind, file, detail string, a ...any) {
		rep.Problems = append(rep.Problems, Problem{Kind: kind, File: file, Detail: fmt.Sprintf(detail, a...)})
	}

	type listedLog struct {
		e  logEntry
		by string
	}
	var listed []listedLog
	var newestEnd time.Time
	cur := next(len(all))
	if cur < 0 {
		return rep, ErrNoDigest
	}
	for cur >= 0 {
		di := all[cur]
		visited[di.rel] = true
		rep.Digests++
		d := di.d
		if d == nil {
			problem(KindModified, di.rel, "does not parse: %v", di.perr)
			cur = next(cur)
			continue
		}
		if rep.From.IsZero() || d.start.Before(rep.From) {
			rep.From = d.start
		}
		if d.end.After(rep.To) {
			rep.To = d.end
		}
		newestEnd = maxTime(newestEnd, d.end)
		if d.DigestS3Object != di.rel {
			problem(KindOutOfChain, di.rel, "is the digest signed as %s", d.DigestS3Object)
		}
		switch key := pubkeys[d.DigestPublicKeyFingerprint]; {
		case key == nil:
			problem(KindBadSignature, di.rel, "signed by key %s, which is not pinned (not one this validation trusts)", d.DigestPublicKeyFingerprint)
		case di.sigErr != nil:
			problem(KindBadSignature, di.rel, "no signature: %v", di.sigErr)
		default:
			if err := verifyDigest(key, d.DigestEndTime, d.DigestS3Object, di.raw, d.PreviousDigestSignature, di.sig); err != nil {
				problem(KindBadSignature, di.rel, "signature does not verify: %v", err)
			}
		}
		for _, e := range d.LogFiles {
			listed = append(listed, listedLog{e: e, by: di.rel})
		}

		if d.PreviousDigestS3Object == nil {
			// The first digest of a chain; anything older is not in it.
			if n := next(cur); n >= 0 {
				problem(KindOutOfChain, all[n].rel, "older than %s, which starts the chain", di.rel)
				cur = n
				continue
			}
			break
		}
		prel := *d.PreviousDigestS3Object
		pi, ok := index[prel]
		switch {
		case !ok:
			problem(KindMissingDigest, prel, "named as previous digest by %s, not found", di.rel)
			cur = next(cur)
			continue
		case pi >= cur || visited[prel]:
			problem(KindOutOfChain, di.rel, "names %s as previous, which is not older", prel)
			cur = next(cur)
			continue
		}
		p := all[pi]
		if h := hashHex(p.raw); h != *d.PreviousDigestHashValue {
			if other, ok := byHash[*d.PreviousDigestHashValue]; ok {
				problem(KindOutOfChain, prel, "digest chained by %s is at %s", di.rel, other)
			} else {
				problem(KindModified, prel, "hash %s, %s recorded %s", h, di.rel, *d.PreviousDigestHashValue)
			}
		}
		if p.sigErr == nil && p.sig != *d.PreviousDigestSignature {
			problem(KindBadSignature, prel+sigSuffix, "differs from the signature %s chains", di.rel)
		}
		if p.d != nil && !p.d.end.Equal(d.start) {
			problem(KindMissingDigest, di.rel, "period starts %s but previous digest %s ends %s",
				d.DigestStartTime, prel, p.d.DigestEndTime)
		}
		for k := pi + 1; k < cur; k++ {
			if !visited[all[k].rel] && inRange(k) {
				problem(KindOutOfChain, all[k].rel, "between %s and %s but not in the chain", prel, di.rel)
				visited[all[k].rel] = true
			}
		}
		if !inRange(pi) {
			break
		}
		cur = pi
	}

	// Logs: each listed one must be there with its hash; the rest must be
	// pending, not orphaned.
	listedBy := make(map[string]string, len(listed))
	byLogHash := make(map[string]string, len(listed))
	for _, l := range listed {
		if prev, dup := listedBy[l.e.S3Object]; dup {
			problem(KindOutOfChain, l.e.S3Object, "listed by both %s and %s", prev, l.by)
			continue
		}
		listedBy[l.e.S3Object] = l.by
		byLogHash[l.e.HashValue] = l.e.S3Object
	}
	checked := make(map[string]bool, len(listed))
	for _, l := range listed {
		rel := l.e.S3Object
		if checked[rel] {
			continue
		}
		checked[rel] = true
		rep.LogFiles++
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if errors.Is(err, fs.ErrNotExist) {
			problem(KindDeleted, rel, "listed by %s", l.by)
			continue
		}
		if err != nil {
			return rep, err
		}
		if h := hashHex(b); h != l.e.HashValue {
			if other, ok := byLogHash[h]; ok && other != rel {
				problem(KindOutOfChain, rel, "holds the bytes %s lists for %s", listedBy[other], other)
			} else {
				problem(KindModified, rel, "hash %s, %s recorded %s", h, l.by, l.e.HashValue)
			}
		}
	}
	logs, err := listTree(dir, logsDir, kindLog)
	if err != nil {
		return rep, err
	}
	pendingFrom := newestEnd.Truncate(time.Minute)
	for _, rel := range logs {
		if checked[rel] {
			continue
		}
		nt, _ := nameTime(rel)
		if !from.IsZero() && nt.Before(from.Truncate(time.Minute)) || !to.IsZero() && nt.After(to) {
			continue
		}
		if !newestEnd.IsZero() && !nt.Before(pendingFrom) {
			rep.Pending++
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return rep, err
		}
		if other, ok := byLogHash[hashHex(b)]; ok {
			problem(KindOutOfChain, rel, "holds the bytes %s lists for %s", listedBy[other], other)
			continue
		}
		problem(KindUnlisted, rel, "no digest lists it")
	}
	tampered, err := TamperedJournals(dir)
	if err != nil {
		return rep, err
	}
	for _, rel := range tampered {
		problem(KindTampered, rel, "not what its signed journal head records; kept aside unsigned")
	}
	sort.SliceStable(rep.Problems, func(i, j int) bool {
		a, b := rep.Problems[i], rep.Problems[j]
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Kind < b.Kind
	})
	return rep, nil
}

// loadDigests reads every digest and signature under dir, oldest first.
func loadDigests(dir string) ([]*dinfo, error) {
	rels, err := listTree(dir, digestDir, kindDigest)
	if err != nil {
		return nil, err
	}
	sortByNameTime(rels)
	all := make([]*dinfo, 0, len(rels))
	for _, rel := range rels {
		di := &dinfo{rel: rel}
		full := filepath.Join(dir, filepath.FromSlash(rel))
		if di.raw, err = os.ReadFile(full); err != nil {
			return nil, err
		}
		di.d, di.perr = parseDigestFile(di.raw)
		sig, err := os.ReadFile(full + sigSuffix)
		switch {
		case err == nil:
			di.sig = strings.TrimSpace(string(sig))
		case errors.Is(err, fs.ErrNotExist):
			di.sigErr = err
		default:
			return nil, err
		}
		all = append(all, di)
	}
	return all, nil
}
