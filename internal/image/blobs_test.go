package image

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func putBytes(b *Blobs, data []byte) error {
	_, err := b.Put(SHA384Hex(data), bytes.NewReader(data))
	return err
}

// uploads lists what an upload left in the store's directory.
func uploads(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "sha384", ".upload-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Blobs stay within their quota: an upload past it is refused with
// ErrQuota and leaves nothing; deleting frees room; storing a blob again
// does not count it twice; a reopened store counts what is on disk.
func TestBlobQuota(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBlobs(dir, 1000)
	if err != nil {
		t.Fatal(err)
	}
	a := bytes.Repeat([]byte("a"), 600)
	c := bytes.Repeat([]byte("c"), 600)
	if err := putBytes(b, a); err != nil {
		t.Fatal(err)
	}
	if err := putBytes(b, a); err != nil || b.Used() != 600 {
		t.Fatalf("storing a blob again: %v, %d bytes used", err, b.Used())
	}
	err = putBytes(b, c)
	if !errors.Is(err, ErrQuota) {
		t.Fatalf("an upload past the quota: %v, want ErrQuota", err)
	}
	if b.Has(SHA384Hex(c)) || len(uploads(t, dir)) != 0 || b.Used() != 600 {
		t.Fatalf("a refused upload left something: has %v, uploads %v, %d bytes used", b.Has(SHA384Hex(c)), uploads(t, dir), b.Used())
	}
	// An upload whose client never ends is cut off at the quota too.
	_, err = b.Put(SHA384Hex(c), io.LimitReader(neverEnding('z'), 10<<20))
	if !errors.Is(err, ErrQuota) || b.Used() != 600 {
		t.Fatalf("a long upload: %v, %d bytes used", err, b.Used())
	}
	reopened, err := OpenBlobs(dir, 1000)
	if err != nil || reopened.Used() != 600 {
		t.Fatalf("reopened: %v, %d bytes used", err, reopened.Used())
	}
	if err := b.Delete(SHA384Hex(a)); err != nil || b.Used() != 0 {
		t.Fatalf("delete: %v, %d bytes used", err, b.Used())
	}
	if err := putBytes(b, c); err != nil {
		t.Fatalf("after deleting: %v", err)
	}
	// A blob uploaded after the listing survives DeleteOlder.
	if ok, _ := b.DeleteOlder(SHA384Hex(c), time.Now().Add(-time.Hour)); ok || !b.Has(SHA384Hex(c)) {
		t.Fatal("DeleteOlder deleted a new blob")
	}
	// Uploading a stored blob again makes it new for the orphan sweep.
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(b.Path(SHA384Hex(c)), old, old)
	if err := putBytes(b, c); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.DeleteOlder(SHA384Hex(c), time.Now().Add(-time.Hour)); ok {
		t.Fatal("a blob uploaded again was swept as old")
	}
	list, err := b.List()
	if err != nil || len(list) != 1 || list[0].Digest != SHA384Hex(c) || list[0].Size != 600 {
		t.Fatalf("List: %v %+v", err, list)
	}
	os.Remove(filepath.Join(dir, "sha384", SHA384Hex(c)))
}

type neverEnding byte

func (n neverEnding) Read(p []byte) (int, error) {
	copy(p, strings.Repeat(string(n), len(p)))
	return len(p), nil
}
