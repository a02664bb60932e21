package controller

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/image"
	"github.com/azote/azote/internal/xts"
)

// rootfsWorkPrefix names fillRootfs's work directories (removed at start-up
// if a crash left one).
const rootfsWorkPrefix = ".rootfs-"

// fillRootfs writes an ext4 filesystem holding the image's initramfs tree
// into f, encrypting it with key (nil: plaintext). The plaintext
// filesystem is built by mke2fs in a private temporary directory under the
// state directory and removed as soon as it is encrypted. A caller that goes
// away (ctx) stops it; CreateVolume then removes the file.
func (c *Controller) fillRootfs(ctx context.Context, f *os.File, img api.Image, size int64, key []byte) error {
	mke2fs, err := exec.LookPath("mke2fs")
	if err != nil {
		return api.Errorf(api.CodeInvalidParameter, "making a root volume needs mke2fs (Debian package e2fsprogs) on the host")
	}
	tmp, err := os.MkdirTemp(c.cfg.StateDir, rootfsWorkPrefix)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	if err := image.ExtractInitramfs(c.blobs.Path(img.InitrdSHA384), root); err != nil {
		return err
	}
	plain := filepath.Join(tmp, "plain.img")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		return err
	}
	if err := os.Truncate(plain, size); err != nil {
		return err
	}
	out, err := exec.Command(mke2fs, "-q", "-F", "-t", "ext4", "-L", "azote-root", "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", root, plain).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mke2fs: %v: %s", err, out)
	}
	src, err := os.Open(plain)
	if err != nil {
		return err
	}
	defer src.Close()
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
		n, err := io.ReadFull(src, buf)
		if err != nil && err != io.ErrUnexpectedEOF {
			return err
		}
		chunk := buf[:n]
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
