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
	"github.com/azote/azote/internal/cardhost"
	"github.com/azote/azote/internal/controller/refusal"
	"github.com/azote/azote/internal/controller/volumes"
)

// fillImport has the one-shot fill card write an imported disk into the
// new volume f, encrypted under key (nil: plaintext). azoted passes the
// request body through to the card's pipe, a buffer at a time, and keeps
// none of it: it sees the disk's plaintext in transit only, as it sees
// an image's content, and never the cipher (internal/cards/fill). The
// card runs as the root filesystem builder's uid, confined by the cards'
// seccomp filter; the key reaches it over a private socketpair.
func (c *Controller) fillImport(ctx context.Context, f *os.File, key []byte, length int64, digest string, r io.Reader) error {
	card, err := exec.LookPath(c.cfg.CardBinary)
	if err != nil {
		return fmt.Errorf("the fill card: %w", err)
	}
	if card, err = filepath.Abs(card); err != nil {
		return err
	}
	uid := c.cfg.RootfsUID
	if os.Geteuid() != 0 {
		uid = -1 // only root can give its uid away
	}
	res, err := cardhost.RunFill(ctx, cardhost.FillSpec{
		Command: []string{card, "fill"}, UID: uid, Out: f, Key: key,
		Length: length, SHA256: digest, In: r,
	})
	switch {
	case errors.Is(err, cardhost.ErrFillLength):
		return refusal.New(volumes.ErrIncompleteUpload, "%v", err)
	case errors.Is(err, cardhost.ErrFillDigest):
		return refusal.New(volumes.ErrDigestMismatch, "%v", err)
	case err != nil:
		return err
	}
	c.log.Info("imported disk written", "bytes", res.Bytes, "encrypted", res.Encrypted)
	return nil
}

// ImportVolume implements gateway.Backend.
func (c *Controller) ImportVolume(ctx context.Context, r api.ImportVolumeRequest, body io.Reader) (api.Volume, error) {
	return c.volumes.Import(ctx, r, body)
}
