package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cardhost"
	"github.com/azote/azote/internal/controller/refusal"
)

// rootfsWorkPrefix names fillRootfs's work directories (removed at start-up
// if a crash left one).
const rootfsWorkPrefix = ".rootfs-"

// fillRootfs has the one-shot rootfs card fill the new volume f with an
// ext4 filesystem holding the image's initramfs tree, encrypted under key
// (nil: plaintext). The initramfs is the image author's and hostile:
// azoted never unpacks it, and never sees the filesystem in plaintext.
// The card (unprivileged, confined: internal/cards/rootfs) extracts it in
// a private work directory, runs mke2fs into an unnamed file of its own
// and encrypts that into f, through the descriptor azoted hands it; the
// key reaches it over a private socketpair. A caller that goes away (ctx)
// stops it; CreateVolume then removes the file.
func (c *Controller) fillRootfs(ctx context.Context, f *os.File, img api.Image, key []byte) error {
	mke2fs, err := exec.LookPath("mke2fs")
	if err != nil {
		return refusal.New(refusal.ErrInvalidParameter, "making a root volume needs mke2fs (Debian package e2fsprogs) on the host")
	}
	if mke2fs, err = filepath.Abs(mke2fs); err != nil {
		return err
	}
	card, err := exec.LookPath(c.cfg.CardBinary)
	if err != nil {
		return fmt.Errorf("the root filesystem builder: %w", err)
	}
	if card, err = filepath.Abs(card); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(c.cfg.StateDir, rootfsWorkPrefix)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	archive, err := c.images.OpenRootArchive(img)
	if err != nil {
		return err
	}
	defer archive.Close()
	res, err := cardhost.RunRootfs(ctx, cardhost.RootfsSpec{
		Command: []string{card, "rootfs"}, Mke2fs: mke2fs, UID: c.cfg.RootfsUID,
		Archive: archive, Out: f, Key: key, WorkDir: tmp,
	})
	if errors.Is(err, cardhost.ErrRefused) {
		return refusal.New(refusal.ErrInvalidParameter, "image %s cannot become a root volume: %v", img.ID, err)
	}
	if err != nil {
		return err
	}
	c.log.Info("root volume filled", "image", img.ID, "entries", res.Entries, "bytes", res.Bytes,
		"skipped_devices", res.SkippedDevices, "encrypted", res.Encrypted, "builder_uid_map", res.UIDMap)
	return nil
}

// sweepRootfsWork removes the work directories of root volumes whose
// build a crash interrupted. It runs before the API serves, so no build is
// in flight.
func (c *Controller) sweepRootfsWork() {
	work, _ := filepath.Glob(filepath.Join(c.cfg.StateDir, rootfsWorkPrefix+"*"))
	for _, d := range work {
		os.RemoveAll(d)
		c.log.Info("removed an interrupted root volume's work directory", "dir", d)
	}
}
