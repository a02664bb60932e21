package controller

import (
	"context"
	"errors"
	"io"
	"regexp"
	"sort"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/image"
	"github.com/azote/azote/internal/store"
)

const tableImages = "images"

// PutBlob implements api.Backend.
func (c *Controller) PutBlob(_ context.Context, digest string, r io.Reader) error {
	if !image.ValidDigest(digest) {
		return api.Errorf(api.CodeInvalidParameter, "%q is not a lowercase hex SHA-384 digest", digest)
	}
	// Even a blob that is already stored is hashed again: a client that
	// sends the wrong bytes must hear so.
	_, err := c.blobs.Put(digest, r)
	switch {
	case errors.Is(err, image.ErrDigestMismatch):
		return api.Errorf(api.CodeDigestMismatch, "%v", err)
	case errors.Is(err, image.ErrBlobTooLarge):
		return api.Errorf(api.CodeRequestTooLarge, "%v", err)
	case errors.Is(err, image.ErrQuota):
		return api.Errorf(api.CodeQuotaExceeded, "%v (azoted --blob-quota sets it; deleting images frees their blobs)", err)
	}
	return err
}

// CreateImage implements api.Backend. Images are content-addressed: the
// same kernel, initramfs and command line give the same id, and creating
// one that exists under the same name is not an error.
func (c *Controller) CreateImage(_ context.Context, req api.CreateImageRequest) (api.CreateImageResponse, error) {
	if !image.ValidName(req.Name) || looksLikeID(req.Name) {
		return api.CreateImageResponse{}, api.Errorf(api.CodeInvalidName, "image name %q: %s", req.Name, nameRule)
	}
	if err := image.ValidCmdline(req.Cmdline); err != nil {
		return api.CreateImageResponse{}, api.Errorf(api.CodeInvalidParameter, "%v", err)
	}
	for _, d := range []string{req.KernelSHA384, req.InitrdSHA384} {
		if !image.ValidDigest(d) {
			return api.CreateImageResponse{}, api.Errorf(api.CodeInvalidParameter, "%q is not a lowercase hex SHA-384 digest", d)
		}
	}
	if len(req.Cmdline)+len(" azote.instance=")+len(newID("i-"))+len(" azote.root=/dev/vda") > image.MaxCmdline {
		return api.CreateImageResponse{}, api.Errorf(api.CodeInvalidParameter, "command line of %d bytes leaves no room for the instance id (limit %d)", len(req.Cmdline), image.MaxCmdline)
	}
	// Creating and deleting images exclude each other, so a delete cannot
	// remove blobs that a concurrent create has just referenced.
	c.imageMu.Lock()
	defer c.imageMu.Unlock()
	cmdSHA := image.SHA384Hex([]byte(req.Cmdline))
	img := api.Image{
		ID:   image.ID(req.KernelSHA384, req.InitrdSHA384, cmdSHA),
		Name: req.Name, KernelSHA384: req.KernelSHA384, InitrdSHA384: req.InitrdSHA384,
		Cmdline: req.Cmdline, CmdlineSHA384: cmdSHA, KernelVersion: req.KernelVersion,
		KernelSize: fileSize(c.blobs.Path(req.KernelSHA384)), InitrdSize: fileSize(c.blobs.Path(req.InitrdSHA384)),
		CreatedAt: time.Now().UTC(),
	}
	for _, d := range []string{req.KernelSHA384, req.InitrdSHA384} {
		if !c.blobs.Has(d) {
			return api.CreateImageResponse{}, api.Errorf(api.CodeBlobNotFound, "blob %s was not uploaded", d)
		}
	}
	created := false
	err := c.store.Update(func(tx store.Tx) error {
		var existing api.Image
		if err := tx.Get(tableImages, img.ID, &existing); err == nil {
			if existing.Name != img.Name {
				return api.Errorf(api.CodeNameInUse, "this content is already image %s named %q", existing.ID, existing.Name)
			}
			img = existing
			return nil
		}
		others, err := store.All[api.Image](tx, tableImages)
		if err != nil {
			return err
		}
		for _, other := range others {
			if other.Name == img.Name {
				return api.Errorf(api.CodeNameInUse, "an image named %q exists (%s); delete it first or choose another name", img.Name, other.ID)
			}
		}
		created = true
		return tx.Create(tableImages, img.ID, &img)
	})
	if err != nil {
		return api.CreateImageResponse{}, err
	}
	if created {
		c.log.Info("image created", "id", img.ID, "name", img.Name, "kernel_sha384", img.KernelSHA384, "initrd_sha384", img.InitrdSHA384)
	}
	return api.CreateImageResponse{Image: img, Created: created}, nil
}

func (c *Controller) allImages() ([]api.Image, error) {
	var out []api.Image
	err := c.store.View(func(tx store.Tx) error {
		var err error
		out, err = store.All[api.Image](tx, tableImages)
		return err
	})
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, err
}

// resolveImage finds an image by id or name.
func (c *Controller) resolveImage(ref string) (api.Image, error) {
	imgs, err := c.allImages()
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
	return api.Image{}, api.Errorf(api.CodeImageNotFound, "no image %q", ref)
}

// ListImages implements api.Backend.
func (c *Controller) ListImages(context.Context) ([]api.Image, error) {
	imgs, err := c.allImages()
	if imgs == nil {
		imgs = []api.Image{}
	}
	return imgs, err
}

// DescribeImage implements api.Backend.
func (c *Controller) DescribeImage(_ context.Context, ref string) (api.Image, error) {
	return c.resolveImage(ref)
}

// DeleteImage implements api.Backend. An image that any instance other
// than a terminated one uses cannot be deleted; blobs no other image
// shares are removed with it.
func (c *Controller) DeleteImage(_ context.Context, ref string) (string, error) {
	c.imageMu.Lock()
	defer c.imageMu.Unlock()
	img, err := c.resolveImage(ref)
	if err != nil {
		return "", err
	}
	var keep = map[string]bool{}
	err = c.store.Update(func(tx store.Tx) error {
		insts, err := store.All[instanceRecord](tx, tableInstances)
		if err != nil {
			return err
		}
		for _, r := range insts {
			if r.ImageID == img.ID && r.State != api.StateTerminated {
				return api.Errorf(api.CodeImageInUse, "image %s is used by instance %s (%s)", img.ID, r.ID, r.State)
			}
		}
		others, err := store.All[api.Image](tx, tableImages)
		if err != nil {
			return err
		}
		for _, other := range others {
			if other.ID != img.ID {
				keep[other.KernelSHA384], keep[other.InitrdSHA384] = true, true
			}
		}
		return tx.Delete(tableImages, img.ID)
	})
	if err != nil {
		return "", err
	}
	for _, d := range []string{img.KernelSHA384, img.InitrdSHA384} {
		if !keep[d] {
			c.blobs.Delete(d)
		}
	}
	c.log.Info("image deleted", "id", img.ID, "name", img.Name)
	return img.ID, nil
}

// OrphanBlobRetention is how long an uploaded blob that no image uses is
// kept (for the CreateImage that should follow its upload) before the
// janitor deletes it, so that uploads nobody turns into an image do not
// hold the blob quota for ever.
const OrphanBlobRetention = time.Hour

// sweepOrphanBlobs deletes blobs no image uses that were uploaded before
// before. It runs at start-up (repair) and from the janitor.
func (c *Controller) sweepOrphanBlobs(before time.Time) {
	c.imageMu.Lock()
	defer c.imageMu.Unlock()
	imgs, err := c.allImages()
	if err != nil {
		return
	}
	used := map[string]bool{}
	for _, img := range imgs {
		used[img.KernelSHA384], used[img.InitrdSHA384] = true, true
	}
	blobs, err := c.blobs.List()
	if err != nil {
		return
	}
	for _, b := range blobs {
		if !used[b.Digest] && b.Uploaded.Before(before) {
			if ok, _ := c.blobs.DeleteOlder(b.Digest, before); ok {
				c.log.Info("deleted a blob no image uses", "sha384", b.Digest, "size", b.Size)
			}
		}
	}
}

const nameRule = "use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit, and not in the form of an id"

var idLike = regexp.MustCompile(`^(i|img|vol)-[0-9a-f]{17}$`)

// looksLikeID refuses names that could be mistaken for an instance or image
// id, so that a reference by id can never be shadowed by a name.
func looksLikeID(name string) bool { return idLike.MatchString(name) }
