package image

import (
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ErrDigestMismatch is returned when uploaded bytes do not hash to the
// digest they were sent under.
var ErrDigestMismatch = errors.New("image: digest mismatch")

// ErrBlobTooLarge is returned for uploads over the size limit.
var ErrBlobTooLarge = errors.New("image: blob too large")

// ErrQuota is returned for an upload that would take the store past its
// quota. Nothing of the upload is kept.
var ErrQuota = errors.New("image: blob store quota exceeded")

// MaxBlobSize bounds one kernel or initramfs.
const MaxBlobSize = 512 << 20

// Blobs is a content-addressed file store: each blob lives at
// <dir>/sha384/<hex> and is written by rename after its digest checked out.
// The bytes of stored blobs and of uploads in progress together stay
// within a quota: an upload reserves its bytes as they arrive and is cut
// off, and removed, at the first byte over it.
//
// The directory is root's (0700); a blob itself is mode 0644, so that an
// engine running as a uid of its own can read one it was handed a
// descriptor of (through /proc/self/fd), and no other.
type Blobs struct {
	dir   string
	quota int64 // 0: no quota

	mu   sync.Mutex
	used int64 // stored blobs plus uploads in progress
}

// blobMode is the mode of a stored blob.
const blobMode = 0o644

// OpenBlobs prepares dir, whose blobs may take at most quota bytes (0: no
// limit). Blobs already stored count against it, even past it: then no
// upload succeeds until some are deleted. Blobs stored by an older
// version (0600) are given blobMode.
func OpenBlobs(dir string, quota int64) (*Blobs, error) {
	if err := os.MkdirAll(filepath.Join(dir, "sha384"), 0o700); err != nil {
		return nil, err
	}
	b := &Blobs{dir: dir, quota: quota}
	ents, err := os.ReadDir(filepath.Join(dir, "sha384"))
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".upload-") {
			continue // Sweep removes them
		}
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			b.used += fi.Size()
			if ValidDigest(e.Name()) {
				os.Chmod(filepath.Join(dir, "sha384", e.Name()), blobMode)
			}
		}
	}
	return b, nil
}

// Used returns the bytes stored and being uploaded.
func (b *Blobs) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// reserve takes n bytes of the quota, or fails with ErrQuota.
func (b *Blobs) reserve(n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.quota > 0 && b.used+n > b.quota {
		return fmt.Errorf("%w: %d of %d bytes in use", ErrQuota, b.used, b.quota)
	}
	b.used += n
	return nil
}

func (b *Blobs) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// reserving writes to w what the quota lets it, counting what it reserved.
type reserving struct {
	b *Blobs
	w io.Writer
	n int64
}

func (r *reserving) Write(p []byte) (int, error) {
	if err := r.b.reserve(int64(len(p))); err != nil {
		return 0, err
	}
	r.n += int64(len(p))
	return r.w.Write(p)
}

// Path returns where the blob with this digest lives.
func (b *Blobs) Path(digest string) string { return filepath.Join(b.dir, "sha384", digest) }

// Has tells whether the blob is stored.
func (b *Blobs) Has(digest string) bool {
	_, err := os.Stat(b.Path(digest))
	return err == nil
}

// Put stores r under digest. Nothing is left behind when the bytes do not
// match or the stream fails.
func (b *Blobs) Put(digest string, r io.Reader) (int64, error) {
	if !ValidDigest(digest) {
		return 0, fmt.Errorf("%w: %q is not a SHA-384 hex digest", ErrInvalid, digest)
	}
	if b.Has(digest) {
		// Stored already: the bytes are only checked, not written again,
		// so they take neither disk nor quota.
		h := sha512.New384()
		n, err := io.Copy(h, io.LimitReader(r, MaxBlobSize+1))
		switch {
		case err != nil:
			return 0, fmt.Errorf("image: upload: %w", err)
		case n > MaxBlobSize:
			return 0, fmt.Errorf("%w: over %d bytes", ErrBlobTooLarge, MaxBlobSize)
		case hex.EncodeToString(h.Sum(nil)) != digest:
			return 0, fmt.Errorf("%w: got %s", ErrDigestMismatch, hex.EncodeToString(h.Sum(nil)))
		}
		// Uploaded again: a blob no image uses yet is kept as long as a
		// new one would be.
		now := time.Now()
		_ = os.Chtimes(b.Path(digest), now, now)
		return n, nil
	}
	tmp, err := os.CreateTemp(filepath.Join(b.dir, "sha384"), ".upload-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha512.New384()
	res := &reserving{b: b, w: tmp}
	kept := false
	defer func() {
		if !kept {
			b.release(res.n)
		}
	}()
	n, err := io.Copy(io.MultiWriter(res, h), io.LimitReader(r, MaxBlobSize+1))
	if err != nil {
		return 0, fmt.Errorf("image: upload: %w", err)
	}
	if n > MaxBlobSize {
		return 0, fmt.Errorf("%w: over %d bytes", ErrBlobTooLarge, MaxBlobSize)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return 0, fmt.Errorf("%w: got %s", ErrDigestMismatch, got)
	}
	if err := tmp.Chmod(blobMode); err != nil {
		return 0, err
	}
	if err := tmp.Sync(); err != nil {
		return 0, err
	}
	// Renaming over a copy already stored frees that copy's bytes; the
	// lock keeps two uploads of one digest from both seeing none.
	b.mu.Lock()
	defer b.mu.Unlock()
	var old int64
	if fi, err := os.Stat(b.Path(digest)); err == nil {
		old = fi.Size()
	}
	if err := os.Rename(tmp.Name(), b.Path(digest)); err != nil {
		return 0, err
	}
	kept = true
	b.used -= old
	return n, nil
}

// Delete removes a blob; a missing blob is not an error.
func (b *Blobs) Delete(digest string) error {
	_, err := b.DeleteOlder(digest, time.Time{})
	return err
}

// DeleteOlder removes a blob if it was uploaded before before (any time,
// if before is zero), and says whether it did: a blob uploaded again since
// it was listed stays.
func (b *Blobs) DeleteOlder(digest string, before time.Time) (bool, error) {
	if !ValidDigest(digest) {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	fi, err := os.Stat(b.Path(digest))
	if err != nil || !before.IsZero() && !fi.ModTime().Before(before) {
		return false, nil
	}
	err = os.Remove(b.Path(digest))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	b.used -= fi.Size()
	return true, nil
}

// Sweep removes unfinished uploads left by a crash.
func (b *Blobs) Sweep() {
	tmps, _ := filepath.Glob(filepath.Join(b.dir, "sha384", ".upload-*"))
	for _, t := range tmps {
		os.Remove(t)
	}
}

// Stored is one stored blob.
type Stored struct {
	Digest   string
	Size     int64
	Uploaded time.Time
}

// List returns the stored blobs (not uploads in progress).
func (b *Blobs) List() ([]Stored, error) {
	ents, err := os.ReadDir(filepath.Join(b.dir, "sha384"))
	if err != nil {
		return nil, err
	}
	var out []Stored
	for _, e := range ents {
		if !ValidDigest(e.Name()) {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			out = append(out, Stored{Digest: e.Name(), Size: fi.Size(), Uploaded: fi.ModTime()})
		}
	}
	return out, nil
}
