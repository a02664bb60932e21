package images

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/image"
	"github.com/azote/azote/internal/store"
)

// Table is the store table of image records (api.Image, by id).
const Table = "images"

// OrphanBlobRetention is how long an uploaded blob that no image uses is
// kept (for the CreateImage that should follow its upload) before the
// sweep deletes it, so that uploads nobody turns into an image do not
// hold the blob quota for ever.
const OrphanBlobRetention = time.Hour

// Refusals of this package.
var (
	ErrNotFound     = errors.New("image not found")
	ErrInUse        = errors.New("image in use")
	ErrBlobNotFound = errors.New("blob not uploaded")
	// ErrMissingBlob: an image's blob is gone from the store (damage on
	// the host, not the caller's doing).
	ErrMissingBlob = errors.New("image blob missing")
)

// Service is the owner of image records and blobs.
type Service struct {
	log   *slog.Logger
	db    store.Store
	blobs *image.Blobs

	// mu serialises creation, deletion and the orphan sweep, so that a
	// delete or a sweep cannot remove a blob a concurrent create has just
	// referenced.
	mu sync.Mutex
}

// New returns the image owner over db and blobs.
func New(db store.Store, blobs *image.Blobs, log *slog.Logger) *Service {
	return &Service{log: log, db: db, blobs: blobs}
}

// PutBlob stores an uploaded blob under its SHA-384. Even a blob that is
// already stored is hashed again: a client that sends the wrong bytes must
// hear so.
func (s *Service) PutBlob(digest string, r io.Reader) error {
	if !image.ValidDigest(digest) {
		return refusal.New(refusal.ErrInvalidParameter, "%q is not a lowercase hex SHA-384 digest", digest)
	}
	_, err := s.blobs.Put(digest, r)
	if errors.Is(err, image.ErrQuota) {
		return fmt.Errorf("%w (azoted --blob-quota sets it; deleting images frees their blobs)", err)
	}
	return err
}

// Create makes the image of req. Images are content-addressed: the same
// kernel, initramfs and command line give the same id, and creating one
// that exists under the same name is not an error (Created is false).
func (s *Service) Create(req api.CreateImageRequest) (api.CreateImageResponse, error) {
	if !api.ValidName(req.Name) {
		return api.CreateImageResponse{}, refusal.New(refusal.ErrInvalidName, "image name %q: %s", req.Name, api.NameRule)
	}
	if err := image.ValidCmdline(req.Cmdline); err != nil {
		return api.CreateImageResponse{}, refusal.New(refusal.ErrInvalidParameter, "%v", err)
	}
	digests := []string{req.KernelSHA384, req.InitrdSHA384}
	if req.RootfsSHA384 != "" {
		digests = append(digests, req.RootfsSHA384)
	}
	for _, d := range digests {
		if !image.ValidDigest(d) {
			return api.CreateImageResponse{}, refusal.New(refusal.ErrInvalidParameter, "%q is not a lowercase hex SHA-384 digest", d)
		}
	}
	// An instance's launch appends its id and root device (instances).
	if len(req.Cmdline)+len(" azote.instance=")+api.IDLen(api.InstanceIDPrefix)+len(" azote.root=/dev/vda") > image.MaxCmdline {
		return api.CreateImageResponse{}, refusal.New(refusal.ErrInvalidParameter, "command line of %d bytes leaves no room for the instance id (limit %d)", len(req.Cmdline), image.MaxCmdline)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cmdSHA := image.SHA384Hex([]byte(req.Cmdline))
	img := api.Image{
		ID:   image.IDWithRootfs(req.KernelSHA384, req.InitrdSHA384, cmdSHA, req.RootfsSHA384),
		Name: req.Name, KernelSHA384: req.KernelSHA384, InitrdSHA384: req.InitrdSHA384,
		Cmdline: req.Cmdline, CmdlineSHA384: cmdSHA, KernelVersion: req.KernelVersion,
		KernelSize: fileSize(s.blobs.Path(req.KernelSHA384)), InitrdSize: fileSize(s.blobs.Path(req.InitrdSHA384)),
		CreatedAt: time.Now().UTC(),
	}
	if req.RootfsSHA384 != "" {
		img.RootfsSHA384, img.RootfsSize = req.RootfsSHA384, fileSize(s.blobs.Path(req.RootfsSHA384))
	}
	for _, d := range digests {
		if !s.blobs.Has(d) {
			return api.CreateImageResponse{}, refusal.New(ErrBlobNotFound, "blob %s was not uploaded", d)
		}
	}
	created := false
	err := s.db.Update(func(tx store.Tx) error {
		var existing api.Image
		if err := tx.Get(Table, img.ID, &existing); err == nil {
			if existing.Name != img.Name {
				return refusal.New(refusal.ErrNameInUse, "this content is already image %s named %q", existing.ID, existing.Name)
			}
			img = existing
			return nil
		}
		others, err := store.All[api.Image](tx, Table)
		if err != nil {
			return err
		}
		for _, other := range others {
			if other.Name == img.Name {
				return refusal.New(refusal.ErrNameInUse, "an image named %q exists (%s); delete it first or choose another name", img.Name, other.ID)
			}
		}
		created = true
		return tx.Create(Table, img.ID, &img)
	})
	if err != nil {
		return api.CreateImageResponse{}, err
	}
	if created {
		s.log.Info("image created", "id", img.ID, "name", img.Name, "kernel_sha384", img.KernelSHA384, "initrd_sha384", img.InitrdSHA384)
	}
	return api.CreateImageResponse{Image: img, Created: created}, nil
}

// List returns every image, oldest first.
func (s *Service) List() ([]api.Image, error) {
	out := []api.Image{}
	err := s.db.View(func(tx store.Tx) error {
		all, err := store.All[api.Image](tx, Table)
		out = append(out, all...)
		return err
	})
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, err
}

// Resolve finds an image by id, then by name.
func (s *Service) Resolve(ref string) (api.Image, error) {
	imgs, err := s.List()
	if err != nil {
		return api.Image{}, err
	}
	for _, img := range imgs {
		if img.ID == ref {
			return img, nil
		}
	}
	for _, img := range imgs {
		if img.Name == ref {
			return img, nil
		}
	}
	return api.Image{}, refusal.New(ErrNotFound, "no image %q", ref)
}

// Boot returns the paths of the kernel and initramfs of the image id, for
// a launch.
func (s *Service) Boot(id string) (img api.Image, kernel, initrd string, err error) {
	if img, err = s.Resolve(id); err != nil {
		return img, "", "", err
	}
	if !s.blobs.Has(img.KernelSHA384) || !s.blobs.Has(img.InitrdSHA384) {
		return img, "", "", refusal.New(ErrMissingBlob, "image %s: a blob is missing from the store", img.ID)
	}
	return img, s.blobs.Path(img.KernelSHA384), s.blobs.Path(img.InitrdSHA384), nil
}

// OpenRootArchive opens the archive root volumes of img are made from
// (for the rootfs card, which reads it through the descriptor): its root
// filesystem archive when it has one, else its initramfs.
func (s *Service) OpenRootArchive(img api.Image) (*os.File, error) {
	if img.RootfsSHA384 != "" {
		return os.Open(s.blobs.Path(img.RootfsSHA384))
	}
	return os.Open(s.blobs.Path(img.InitrdSHA384))
}

// UserFunc tells, inside the delete's transaction, what still uses the
// image id ("" for nothing), such as "instance i-… (running)".
type UserFunc func(tx store.Tx, imageID string) (string, error)

// Delete deletes the image ref unless users names something that uses it,
// and the blobs no other image shares. It returns the image's id.
func (s *Service) Delete(ref string, users UserFunc) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, err := s.Resolve(ref)
	if err != nil {
		return "", err
	}
	var keep = map[string]bool{}
	err = s.db.Update(func(tx store.Tx) error {
		user, err := users(tx, img.ID)
		if err != nil {
			return err
		}
		if user != "" {
			return refusal.New(ErrInUse, "image %s is used by %s", img.ID, user)
		}
		others, err := store.All[api.Image](tx, Table)
		if err != nil {
			return err
		}
		for _, other := range others {
			if other.ID != img.ID {
				keep[other.KernelSHA384], keep[other.InitrdSHA384] = true, true
				if other.RootfsSHA384 != "" {
					keep[other.RootfsSHA384] = true
				}
			}
		}
		return tx.Delete(Table, img.ID)
	})
	if err != nil {
		return "", err
	}
	for _, d := range []string{img.KernelSHA384, img.InitrdSHA384, img.RootfsSHA384} {
		if d != "" && !keep[d] {
			s.blobs.Delete(d)
		}
	}
	s.log.Info("image deleted", "id", img.ID, "name", img.Name)
	return img.ID, nil
}

// SweepOrphans deletes blobs no image uses that were uploaded before
// before. It runs at start-up and from azoted's janitor.
func (s *Service) SweepOrphans(before time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	imgs, err := s.List()
	if err != nil {
		return
	}
	used := map[string]bool{}
	for _, img := range imgs {
		used[img.KernelSHA384], used[img.InitrdSHA384] = true, true
		if img.RootfsSHA384 != "" {
			used[img.RootfsSHA384] = true
		}
	}
	blobs, err := s.blobs.List()
	if err != nil {
		return
	}
	for _, b := range blobs {
		if !used[b.Digest] && b.Uploaded.Before(before) {
			if ok, _ := s.blobs.DeleteOlder(b.Digest, before); ok {
				s.log.Info("deleted a blob no image uses", "sha384", b.Digest, "size", b.Size)
			}
		}
	}
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}
