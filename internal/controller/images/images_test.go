package images

import (
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/image"
	"github.com/azote/azote/internal/store"
)

func newService(t *testing.T) (*Service, *image.Blobs) {
	t.Helper()
	dir := t.TempDir()
	db, err := store.OpenBolt(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	blobs, err := image.OpenBlobs(filepath.Join(dir, "images"), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return New(db, blobs, slog.New(slog.NewTextHandler(io.Discard, nil))), blobs
}

func (s *Service) put(t *testing.T, content string) string {
	t.Helper()
	d := image.SHA384Hex([]byte(content))
	if err := s.PutBlob(d, strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCreateIsContentAddressed(t *testing.T) {
	s, _ := newService(t)
	k, i := s.put(t, "kernel"), s.put(t, "initrd")
	req := api.CreateImageRequest{Name: "web", KernelSHA384: k, InitrdSHA384: i, Cmdline: "console=ttyS0"}
	first, err := s.Create(req)
	if err != nil || !first.Created {
		t.Fatalf("first create: %+v %v", first, err)
	}
	again, err := s.Create(req)
	if err != nil || again.Created || again.Image.ID != first.Image.ID {
		t.Fatalf("the same content under the same name: %+v %v, want the existing image", again, err)
	}
	other := req
	other.Name = "web2"
	if _, err := s.Create(other); !errors.Is(err, refusal.ErrNameInUse) {
		t.Fatalf("the same content under another name: %v", err)
	}
	changed := req
	changed.Cmdline = "console=ttyS0 quiet"
	if _, err := s.Create(changed); !errors.Is(err, refusal.ErrNameInUse) {
		t.Fatalf("other content under a name in use: %v", err)
	}
	for _, bad := range []api.CreateImageRequest{
		{Name: "img-0123456789abcdef0", KernelSHA384: k, InitrdSHA384: i},
		{Name: "x", KernelSHA384: "nothex", InitrdSHA384: i},
		{Name: "x", KernelSHA384: k, InitrdSHA384: image.SHA384Hex([]byte("never uploaded"))},
	} {
		if _, err := s.Create(bad); err == nil {
			t.Errorf("%+v was accepted", bad)
		}
	}
	if _, err := s.Create(api.CreateImageRequest{Name: "x", KernelSHA384: k, InitrdSHA384: image.SHA384Hex([]byte("never uploaded"))}); !errors.Is(err, ErrBlobNotFound) {
		t.Errorf("a blob never uploaded: %v", err)
	}
	if got, err := s.Resolve("web"); err != nil || got.ID != first.Image.ID {
		t.Errorf("resolve by name: %+v %v", got, err)
	}
	if _, err := s.Resolve("nothing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("resolve of nothing: %v", err)
	}
}

// An image in use is kept; deleting one removes the blobs no other image
// shares, and keeps the shared ones.
func TestDeleteKeepsUsedAndSharedBlobs(t *testing.T) {
	s, blobs := newService(t)
	k, i1, i2 := s.put(t, "kernel"), s.put(t, "initrd one"), s.put(t, "initrd two")
	one, err := s.Create(api.CreateImageRequest{Name: "one", KernelSHA384: k, InitrdSHA384: i1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(api.CreateImageRequest{Name: "two", KernelSHA384: k, InitrdSHA384: i2}); err != nil {
		t.Fatal(err)
	}
	busy := func(store.Tx, string) (string, error) { return "instance i-1 (running)", nil }
	if _, err := s.Delete("one", busy); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "i-1") {
		t.Fatalf("delete of an image in use: %v", err)
	}
	free := func(store.Tx, string) (string, error) { return "", nil }
	id, err := s.Delete("one", free)
	if err != nil || id != one.Image.ID {
		t.Fatalf("delete: %q %v", id, err)
	}
	if blobs.Has(i1) || !blobs.Has(k) || !blobs.Has(i2) {
		t.Fatalf("after delete: own initrd kept %v, shared kernel kept %v, other image's initrd kept %v", blobs.Has(i1), blobs.Has(k), blobs.Has(i2))
	}
}

// TestRootfsBlob: a distribution image's root filesystem archive is part
// of its identity, is what root volumes are made from, must have been
// uploaded, and goes with the image when it is deleted.
func TestRootfsBlob(t *testing.T) {
	s, blobs := newService(t)
	k, i, r := s.put(t, "kernel"), s.put(t, "initrd"), s.put(t, "rootfs archive")
	plain, err := s.Create(api.CreateImageRequest{Name: "plain", KernelSHA384: k, InitrdSHA384: i, Cmdline: "console=ttyS0"})
	if err != nil {
		t.Fatal(err)
	}
	if plain.Image.ID != image.ID(k, i, image.SHA384Hex([]byte("console=ttyS0"))) {
		t.Fatalf("an image without a root filesystem changed its id: %s", plain.Image.ID)
	}
	if _, err := s.Create(api.CreateImageRequest{Name: "deb", KernelSHA384: k, InitrdSHA384: i, Cmdline: "console=ttyS0",
		RootfsSHA384: image.SHA384Hex([]byte("never uploaded"))}); !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("missing rootfs blob: %v", err)
	}
	deb, err := s.Create(api.CreateImageRequest{Name: "deb", KernelSHA384: k, InitrdSHA384: i, Cmdline: "console=ttyS0", RootfsSHA384: r})
	if err != nil || deb.Image.ID == plain.Image.ID || deb.Image.RootfsSHA384 != r || deb.Image.RootfsSize != int64(len("rootfs archive")) {
		t.Fatalf("%+v %v", deb, err)
	}
	f, err := s.OpenRootArchive(deb.Image)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "rootfs archive" {
		t.Fatalf("root volumes would be made from %q", b)
	}
	none := func(store.Tx, string) (string, error) { return "", nil }
	if _, err := s.Delete("deb", none); err != nil {
		t.Fatal(err)
	}
	if blobs.Has(r) || !blobs.Has(k) || !blobs.Has(i) {
		t.Fatalf("after delete: rootfs kept %v, shared kernel %v, initrd %v", blobs.Has(r), blobs.Has(k), blobs.Has(i))
	}
}
