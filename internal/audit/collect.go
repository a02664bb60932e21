package audit

import (
	"bytes"
	"context"
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

// Source is a trail as a collector sees it: a list of files and their
// bytes. Its answers are untrusted.
type Source interface {
	// List returns the relative paths of the trail's finished files that
	// sort after after (ListFiles on the trail's host).
	List(ctx context.Context, after string) ([]string, error)
	// Fetch returns one file's bytes.
	Fetch(ctx context.Context, rel string) ([]byte, error)
}

// DirSource is a Source over a local trail directory.
type DirSource string

// List implements Source.
func (d DirSource) List(_ context.Context, after string) ([]string, error) {
	return ListFiles(string(d), after)
}

// Fetch implements Source.
func (d DirSource) Fetch(_ context.Context, rel string) ([]byte, error) {
	if classify(rel) == kindNone {
		return nil, fmt.Errorf("%w: %q", ErrBadPath, rel)
	}
	return os.ReadFile(filepath.Join(string(d), filepath.FromSlash(rel)))
}

// trustedDir holds a collector's pinned keys; the source's public-keys/
// are copied but never trusted.
const trustedDir = "trusted-keys"

// CollectResult counts what one Collect did and found.
type CollectResult struct {
	Listed    int // paths the source listed
	Fetched   int // new files written to dst
	Unchanged int // files already held whose source bytes still match
	// Rewritten are held paths the source now serves different bytes for.
	Rewritten []string
	// Deleted are held paths the source no longer lists.
	Deleted []string
	// Refused are new digests not taken: untrusted key, bad signature, or
	// not chained to the last digest held.
	Refused []string
	// BadPaths are listed paths outside the trail layout.
	BadPaths []string
	// Report is Validate over dst after the pull, with the pinned keys.
	Report Report
}

// Collect copies into dst every file of src it does not hold yet and
// validates its own copy. It never overwrites or deletes a file in dst.
//
// Digests are taken oldest first and only if each is signed with a pinned
// key and chains to the last digest dst holds (by name, hash and
// signature); so once a digest is collected, no later rewrite on the
// source can change what dst proves. pinned is added to dst's trusted
// keys (trust on first collect, or an operator trusting a new key); nil
// uses the keys already pinned.
//
// Every held file the source still lists is fetched again and compared,
// which is how rewrites are seen; that costs the trail's size in reads per
// call. The error joins ErrHistoryRewritten, ErrSourceDeleted,
// ErrDigestRefused and ErrBadPath findings (each with its path) with any
// I/O error; the result is filled in either way.
func Collect(ctx context.Context, src Source, dst string, pinned *rsa.PublicKey) (CollectResult, error) {
	var res CollectResult
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return res, err
	}
	trusted, err := pinKeys(dst, pinned)
	if err != nil {
		return res, err
	}
	list, err := src.List(ctx, "")
	if err != nil {
		return res, err
	}
	held, err := ListFiles(dst, "")
	if err != nil {
		return res, err
	}
	res.Listed = len(list)
	var findings []error
	heldSet := make(map[string]bool, len(held))
	for _, h := range held {
		heldSet[h] = true
	}
	listedSet := make(map[string]bool, len(list))
	var newDigests, newOther []string
	for _, rel := range list {
		if classify(rel) == kindNone {
			res.BadPaths = append(res.BadPaths, rel)
			findings = append(findings, fmt.Errorf("%w: %q", ErrBadPath, rel))
			continue
		}
		if listedSet[rel] {
			continue
		}
		listedSet[rel] = true
		switch {
		case heldSet[rel]:
			b, err := src.Fetch(ctx, rel)
			if err != nil {
				return res, err
			}
			mine, err := os.ReadFile(filepath.Join(dst, filepath.FromSlash(rel)))
			if err != nil {
				return res, err
			}
			if bytes.Equal(b, mine) {
				res.Unchanged++
			} else {
				res.Rewritten = append(res.Rewritten, rel)
				findings = append(findings, fmt.Errorf("%w: %s", ErrHistoryRewritten, rel))
			}
		case classify(rel) == kindDigest:
			newDigests = append(newDigests, rel)
		case classify(rel) == kindSig && listedSet[strings.TrimSuffix(rel, sigSuffix)] &&
			!heldSet[strings.TrimSuffix(rel, sigSuffix)]:
			// Taken with its digest below.
		default:
			newOther = append(newOther, rel)
		}
	}
	for _, h := range held {
		if !listedSet[h] {
			res.Deleted = append(res.Deleted, h)
			findings = append(findings, fmt.Errorf("%w: %s", ErrSourceDeleted, h))
		}
	}

	// Logs and keys first, so a digest taken below finds its logs.
	for _, rel := range newOther {
		if classify(rel) == kindSig {
			// A signature for a digest held without one (a collector
			// crash between the two); Validate checks it.
			if !heldSet[strings.TrimSuffix(rel, sigSuffix)] {
				continue
			}
		}
		b, err := src.Fetch(ctx, rel)
		if err != nil {
			return res, err
		}
		if err := writeFileAtomic(dst, rel, b, true); err != nil {
			return res, err
		}
		res.Fetched++
	}

	last, err := lastDigest(dst)
	if err != nil {
		return res, err
	}
	sortByNameTime(newDigests)
	for _, rel := range newDigests {
		raw, err := src.Fetch(ctx, rel)
		if err != nil {
			return res, err
		}
		var sig []byte
		if listedSet[rel+sigSuffix] {
			if sig, err = src.Fetch(ctx, rel+sigSuffix); err != nil {
				return res, err
			}
		}
		if why := acceptDigest(rel, raw, string(bytes.TrimSpace(sig)), trusted, last); why != "" {
			res.Refused = append(res.Refused, rel)
			findings = append(findings, fmt.Errorf("%w: %s: %s", ErrDigestRefused, rel, why))
			continue
		}
		if err := writeFileAtomic(dst, rel, raw, true); err != nil {
			return res, err
		}
		if err := writeFileAtomic(dst, rel+sigSuffix, sig, true); err != nil {
			return res, err
		}
		res.Fetched += 2
		last = &dinfo{rel: rel, raw: raw, sig: string(bytes.TrimSpace(sig))}
	}

	res.Report, err = Validate(dst, trusted, time.Time{}, time.Time{})
	if err != nil && !errors.Is(err, ErrNoDigest) {
		return res, err
	}
	return res, errors.Join(findings...)
}

// acceptDigest says why a new digest cannot join dst's chain, or "".
func acceptDigest(rel string, raw []byte, sig string, trusted map[string]*rsa.PublicKey, last *dinfo) string {
	if sig == "" {
		return "no signature"
	}
	d, err := parseDigestFile(raw)
	if err != nil {
		return err.Error()
	}
	if d.DigestS3Object != rel {
		return "signed as " + d.DigestS3Object
	}
	key := trusted[d.DigestPublicKeyFingerprint]
	if key == nil {
		return "signed by untrusted key " + d.DigestPublicKeyFingerprint
	}
	if err := verifyDigest(key, d.DigestEndTime, rel, raw, d.PreviousDigestSignature, sig); err != nil {
		return "signature does not verify"
	}
	if last == nil {
		return "" // the first digest collected roots the copy's chain
	}
	switch {
	case d.PreviousDigestS3Object == nil || *d.PreviousDigestS3Object != last.rel:
		return "does not name " + last.rel + " as previous digest"
	case *d.PreviousDigestHashValue != hashHex(last.raw):
		return "previous digest hash does not match " + last.rel
	case *d.PreviousDigestSignature != last.sig:
		return "previous digest signature does not match " + last.rel
	}
	return ""
}

// lastDigest is the newest digest dst holds, or nil.
func lastDigest(dst string) (*dinfo, error) {
	all, err := loadDigests(dst)
	if err != nil || len(all) == 0 {
		return nil, err
	}
	return all[len(all)-1], nil
}

// pinKeys stores pinned (if any) in dst/trusted-keys and returns every
// key stored there.
func pinKeys(dst string, pinned *rsa.PublicKey) (map[string]*rsa.PublicKey, error) {
	if pinned != nil {
		if pinned.N.BitLen() < minRSABits {
			return nil, ErrBadKey
		}
		b, err := publicKeyPEM(pinned)
		if err != nil {
			return nil, err
		}
		rel := trustedDir + "/" + fingerprint(pinned) + ".pem"
		if err := writeFileAtomic(dst, rel, b, true); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	}
	keys, err := readKeyDir(filepath.Join(dst, trustedDir), trustedDir)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, ErrNoTrustedKey
	}
	return keys, nil
}

// readKeyDir returns the keys of the .pem files in dir (none if it does
// not exist), by fingerprint; name is dir as errors show it.
func readKeyDir(dir, name string) (map[string]*rsa.PublicKey, error) {
	keys := map[string]*rsa.PublicKey{}
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".pem") && !strings.HasPrefix(e.Name(), tempPrefix) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		pub, fp, err := ParsePublicKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", name, n, err)
		}
		keys[fp] = pub
	}
	return keys, nil
}

// PinnedKeys records signer, if not nil, in dir (a directory outside the
// trail: a key the trail itself holds proves nothing) and returns every
// key dir holds, by fingerprint: the running signer and the keys it
// replaced, which the host's own validation trusts and nothing else. An
// operator adds a retired key by placing its PEM there.
func PinnedKeys(dir string, signer *rsa.PublicKey) (map[string]*rsa.PublicKey, error) {
	if signer != nil {
		if signer.N.BitLen() < minRSABits {
			return nil, ErrBadKey
		}
		b, err := publicKeyPEM(signer)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(dir, fingerprint(signer)+".pem", b, true); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	}
	return readKeyDir(dir, dir)
}

// TrustedKeys returns the keys a collector directory has pinned.
func TrustedKeys(dst string) (map[string]*rsa.PublicKey, error) { return pinKeys(dst, nil) }
