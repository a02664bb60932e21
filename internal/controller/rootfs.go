package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/cards/rootfs"
	"github.com/azote/azote/internal/xts"
)

// rootfsWorkPrefix names fillRootfs's work directories (removed at start-up
// if a crash left one).
const rootfsWorkPrefix = ".rootfs-"

// fillRootfs writes an ext4 filesystem holding the image's initramfs tree
// into f, encrypting it with key (nil: plaintext). The initramfs is the
// image author's and hostile: azoted never unpacks it itself. The
// unprivileged one-shot helper (azote-card rootfs, see package rootfs)
// extracts it and runs mke2fs into a plaintext file in a private work
// directory under the state directory, which azoted then reads through
// the descriptor it kept, encrypts into f and removes. A caller that goes
// away (ctx) stops it; CreateVolume then removes the file.
func (c *Controller) fillRootfs(ctx context.Context, f *os.File, img api.Image, size int64, key []byte) error {
	mke2fs, err := exec.LookPath("mke2fs")
	if err != nil {
		return api.Errorf(api.CodeInvalidParameter, "making a root volume needs mke2fs (Debian package e2fsprogs) on the host")
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
	archive, err := os.Open(c.blobs.Path(img.InitrdSHA384))
	if err != nil {
		return err
	}
	defer archive.Close()
	src, err := os.OpenFile(filepath.Join(tmp, "plain.img"), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := src.Truncate(size); err != nil {
		return err
	}
	res, err := rootfs.Run(ctx, rootfs.Spec{
		Command: []string{card, "rootfs"}, Mke2fs: mke2fs, UID: c.cfg.RootfsUID,
		Archive: archive, Out: src, WorkDir: tmp,
	})
	if errors.Is(err, rootfs.ErrRefused) {
		return api.Errorf(api.CodeInvalidParameter, "image %s cannot become a root volume: %v", img.ID, err)
	}
	if err != nil {
		return err
	}
	c.log.Info("root filesystem built", "image", img.ID, "entries", res.Entries, "bytes", res.Bytes,
		"skipped_devices", res.SkippedDevices, "builder_uid_map", res.UIDMap)
	// What the helper left in the file is read through the descriptor
	// azoted opened, never by name again, at explicit offsets (the helper
	// shared the descriptor, and its offset), and only size bytes of it.
	var cipher *xts.Cipher
	if key != nil {
		if cipher, err = xts.New(key); err != nil {
			return err
		}
		defer cipher.Wipe()
	}
	buf := make([]byte, 1<<20)
	next := size / 10
	for off := int64(0); off < size; off += int64(len(buf)) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("writing the root volume: %w", err)
		}
		if off >= next {
			c.log.Info("writing root volume", "image", img.ID, "done_mib", off>>20, "size_mib", size>>20)
			next += size / 10
		}
		chunk := buf[:min(int64(len(buf)), size-off)]
		if _, err := src.ReadAt(chunk, off); err == io.EOF {
			return fmt.Errorf("the root filesystem builder left a file shorter than %d bytes", size)
		} else if err != nil {
			return err
		}
		if cipher != nil {
			if err := cipher.EncryptSectors(chunk, chunk, uint64(off/512), 512); err != nil {
				return err
			}
		}
		if _, err := f.WriteAt(chunk, off); err != nil {
			return err
		}
	}
	return nil
}
