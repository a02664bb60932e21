package cli

import (
	"context"
	"crypto/sha256"
	enchex "encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/qcow2"
)

// volumeImportCommand is `azote volume import`.
var volumeImportCommand = command{use: "import", short: "make a volume from a raw or qcow2 disk image (--file), encrypted as it is copied",
	long: `Reads the disk image, converting a qcow2 image (version 2 or 3, no backing file, not
encrypted; zlib-compressed clusters are read) to the raw disk it holds, without writing any
copy of it. A first pass computes the disk's SHA-256, the second streams it to azoted, which
passes it to a one-shot card that encrypts it under the new volume's key as it writes and
checks the length and digest at the end. The volume is the disk's virtual size rounded up to
4 KiB (at least 1 MiB); --size may make it larger, never smaller. Progress goes to stderr;
Ctrl-C cancels, and azoted removes the unfinished volume. A truncated or corrupt image is
refused, and nothing is left: a damaged header before anything is sent,
damage further in by breaking the upload off.`,
	build:   volumeImport,
	example: "azote volume import --file debian.qcow2 --name root1 --size 4G"}

// importProgressMin is the disk size from which an import reports its
// progress; importProgressEvery how often.
const importProgressMin = 8 << 20

var importProgressEvery = 2 * time.Second

// diskSource is an image opened for import: the raw disk's length and a
// way to read it from the start, once per pass.
type diskSource struct {
	format string // raw or qcow2
	length int64
	open   func() io.Reader
}

// openDisk opens path as format (auto: qcow2 when it starts with the
// qcow2 magic, raw otherwise). A qcow2 image is checked now (header and
// L1 table) and as it is read (every table and cluster).
func openDisk(f *os.File, format string) (diskSource, error) {
	fi, err := f.Stat()
	if err != nil {
		return diskSource{}, err
	}
	if !fi.Mode().IsRegular() {
		return diskSource{}, fmt.Errorf("%s is not a regular file", f.Name())
	}
	if format == "auto" {
		format = "raw"
		if qcow2.Probe(f) {
			format = "qcow2"
		}
	}
	switch format {
	case "raw":
		return diskSource{format: "raw", length: fi.Size(), open: func() io.Reader { return io.NewSectionReader(f, 0, fi.Size()) }}, nil
	case "qcow2":
		im, err := qcow2.Open(f, fi.Size())
		if err != nil {
			return diskSource{}, fmt.Errorf("%s: %w", f.Name(), err)
		}
		return diskSource{format: "qcow2", length: im.Size(), open: im.NewReader}, nil
	}
	return diskSource{}, usageError{msg: fmt.Sprintf("--format %q: want auto, raw or qcow2", format)}
}

func volumeImport(e *env, fs *pflag.FlagSet) runFunc {
	var req api.ImportVolumeRequest
	file := fs.String("file", "", "the disk image: raw, or qcow2 (required)")
	format := fs.String("format", "auto", "auto (qcow2 if the file says so, else raw), raw or qcow2")
	size := fs.String("size", "", "volume size, e.g. 4G (default: the disk's size, rounded up to 4 KiB)")
	fs.StringVar(&req.Name, "name", "", "volume name (default: its id)")
	fs.BoolVar(&req.DeletionProtection, "deletion-protection", false, "refuse delete until turned off")
	fs.BoolVar(&req.Plaintext, "plaintext", false, "store sectors unencrypted (benchmarks only)")
	fs.StringVar(&req.KMSKeyID, "kms-key-id", "", "KMS key (id, ARN or alias) the volume's data key is made under (default: the account's alias/azote/volumes, made on first use)")
	return callThenShow(e, func(ctx context.Context, _ []string) (api.Volume, error) {
		if *file == "" {
			return api.Volume{}, usageError{msg: "--file is required"}
		}
		f, err := os.Open(*file)
		if err != nil {
			return api.Volume{}, err
		}
		defer f.Close()
		src, err := openDisk(f, *format)
		if err != nil {
			return api.Volume{}, err
		}
		if src.length == 0 {
			return api.Volume{}, fmt.Errorf("%s: the disk is empty", *file)
		}
		req.Length = src.length
		if *size != "" {
			n, err := parseSize(*size)
			if err != nil {
				return api.Volume{}, usageError{msg: err.Error()}
			}
			if n < src.length {
				return api.Volume{}, usageError{msg: fmt.Sprintf("--size %s is smaller than the disk's %d bytes", *size, src.length)}
			}
			req.SizeBytes = (n + 4095) &^ 4095
		}
		return e.importDisk(ctx, *file, src, req)
	}, showVolume)
}

// importDisk hashes the disk, then uploads it. Ctrl-C (ctx) stops either
// pass; azoted removes a volume whose upload broke off. Should the cancel
// arrive after azoted recorded the volume as made, the named volume this
// call made is deleted, so nothing is left half-made.
func (e *env) importDisk(ctx context.Context, path string, src diskSource, req api.ImportVolumeRequest) (api.Volume, error) {
	start := time.Now()
	show := src.length >= importProgressMin
	h := sha256.New()
	if _, err := e.withProgress(ctx, show, "checksumming "+path, src.length, h, src.open()); err != nil {
		if ctx.Err() != nil {
			return api.Volume{}, errors.New("cancelled before the upload: nothing was made")
		}
		return api.Volume{}, fmt.Errorf("%s: %w", path, err)
	}
	req.SHA256 = enchex.EncodeToString(h.Sum(nil))
	pr, pw := io.Pipe()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		_, err := e.withProgress(ctx, show, "importing "+path, src.length, pw, src.open())
		pw.CloseWithError(err)
	}()
	v, err := e.client.ImportVolume(ctx, req, pr)
	pr.CloseWithError(io.ErrClosedPipe) // stops the sender if the server answered first
	<-sent
	if err != nil && ctx.Err() != nil {
		return v, e.undoImport(req, start)
	}
	if err == nil && show {
		e.progress("%s imported in %.1f s", v.ID, time.Since(start).Seconds())
	}
	return v, err
}

// withProgress copies n bytes of r to w, saying every few seconds on
// stderr how far it got and how fast when show is set; it stops when ctx
// ends.
func (e *env) withProgress(ctx context.Context, show bool, what string, n int64, w io.Writer, r io.Reader) (int64, error) {
	var done atomic.Int64
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		if !show {
			return
		}
		start := time.Now()
		tick := time.NewTicker(importProgressEvery)
		defer tick.Stop()
		say := func(tail string) {
			d := done.Load()
			rate := float64(d) / time.Since(start).Seconds()
			e.progress("%s: %s / %s (%.0f%%), %s/s%s", what, human(d), human(n), 100*float64(d)/float64(n), human(int64(rate)), tail)
		}
		for {
			select {
			case <-stop:
				// Where it ended, however fast it went: a copy shorter
				// than a tick still says it happened.
				say("")
				return
			case <-tick.C:
				say(" (Ctrl-C cancels)")
			}
		}
	}()
	defer func() { close(stop); <-finished }()
	buf := make([]byte, 1<<20)
	var total int64
	for total < n {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		k, err := r.Read(buf[:min(int64(len(buf)), n-total)])
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return total, werr
			}
			total += int64(k)
			done.Store(total)
		}
		if err == io.EOF && total < n {
			return total, fmt.Errorf("the disk ended after %d of %d bytes (the file changed?)", total, n)
		}
		if err != nil && err != io.EOF {
			return total, err
		}
	}
	return total, nil
}

// human writes a byte count in KiB, MiB or GiB.
func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// undoImport removes what a cancelled import may have left: azoted
// removes an import whose upload broke off, but one whose last byte was
// in may have finished as the cancel arrived.
func (e *env) undoImport(req api.ImportVolumeRequest, start time.Time) error {
	cancelled := errors.New("cancelled: azoted removes a volume whose import did not finish")
	if req.Name == "" {
		return cancelled
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := e.client.DescribeVolume(ctx, req.Name)
	if err != nil || v.CreatedAt.Before(start) || v.State != api.VolumeAvailable {
		return cancelled // nothing was made (or not by this call), or azoted is removing it
	}
	if _, err := e.client.DeleteVolume(ctx, v.ID, true); err != nil {
		return fmt.Errorf("cancelled, but volume %s was made and could not be deleted: %w", v.ID, err)
	}
	return fmt.Errorf("cancelled: volume %s, made as the cancel arrived, was deleted", v.ID)
}
