package image

import (
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ErrDigestMismatch is returned when uploaded bytes do not hash to the
// digest they were sent under.
var ErrDigestMismatch = errors.New("image: digest mismatch")

// ErrBlobTooLarge is returned for uploads over the size limit.
var ErrBlobTooLarge = errors.New("image: blob too large")

// MaxBlobSize bounds one kernel or initramfs.
const MaxBlobSize = 512 << 20

// Blobs is a content-addressed file store: each blob lives at
// <dir>/sha384/<hex> and is written by rename after its digest checked out.
//
// The directory is root's (0700); a blob itself is mode 0644, so that an
// engine running as a uid of its own can read one it was handed a
// descriptor of (through /proc/self/fd), and no other.
type Blobs struct{ dir string }

// blobMode is the mode of a stored blob.
const blobMode = 0o644

// OpenBlobs prepares dir; blobs stored by an older version (0600) are
// given blobMode.
func OpenBlobs(dir string) (*Blobs, error) {
	if err := os.MkdirAll(filepath.Join(dir, "sha384"), 0o700); err != nil {
		return nil, err
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "sha384"))
	for _, e := range ents {
		if ValidDigest(e.Name()) && e.Type().IsRegular() {
			os.Chmod(filepath.Join(dir, "sha384", e.Name()), blobMode)
		}
	}
	return &Blobs{dir: dir}, nil
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
	tmp, err := os.CreateTemp(filepath.Join(b.dir, "sha384"), ".upload-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha512.New384()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, MaxBlobSize+1))
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
	if err := os.Rename(tmp.Name(), b.Path(digest)); err != nil {
		return 0, err
	}
	return n, nil
}

// Delete removes a blob; a missing blob is not an error.
func (b *Blobs) Delete(digest string) error {
	if !ValidDigest(digest) {
		return nil
	}
	err := os.Remove(b.Path(digest))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Sweep removes unfinished uploads left by a crash.
func (b *Blobs) Sweep() {
	tmps, _ := filepath.Glob(filepath.Join(b.dir, "sha384", ".upload-*"))
	for _, t := range tmps {
		os.Remove(t)
	}
}
