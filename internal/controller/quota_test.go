package controller

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/images"
	"github.com/azote/azote/internal/image"
)

func (fx *fixture) volumeFiles() []string {
	m, _ := filepath.Glob(filepath.Join(fx.cfg.StateDir, "volumes", "*"))
	return m
}

// Volumes are refused with QuotaExceeded once their provisioned sizes
// would pass the quota; a refusal leaves no file and no record, a deleted
// volume counts until it is purged, and the default quota is the state
// directory's file system.
func TestVolumeQuota(t *testing.T) {
	fx := newFixture(t)
	if fs, err := fileSystemBytes(fx.cfg.StateDir); err != nil || fx.c.cfg.VolumeQuota != fs {
		t.Fatalf("default volume quota %d, want the file system's %d (%v)", fx.c.cfg.VolumeQuota, fs, err)
	}
	fx.c.Close()
	fx.cfg.VolumeQuota = 20 << 20
	fx.start()
	ctx := context.Background()
	mk := func(name string) error {
		_, err := fx.c.CreateVolume(ctx, api.CreateVolumeRequest{Name: name, SizeBytes: 8 << 20, Kind: api.VolumePersistent})
		return err
	}
	if err := mk("a"); err != nil {
		t.Fatal(err)
	}
	if err := mk("b"); err != nil {
		t.Fatal(err)
	}
	files := fx.volumeFiles()
	if err := mk("c"); !isCode(err, api.CodeQuotaExceeded) {
		t.Fatalf("a volume past the quota: %v, want QuotaExceeded", err)
	}
	if got := fx.volumeFiles(); len(got) != len(files) {
		t.Fatalf("a refused volume left files: %v", got)
	}
	if vols, _ := fx.c.ListVolumes(ctx); len(vols) != 2 {
		t.Fatalf("%d volumes after a refusal, want 2", len(vols))
	}
	// Deleted but recoverable: still on disk, still counted.
	if _, err := fx.c.DeleteVolume(ctx, "a", false); err != nil {
		t.Fatal(err)
	}
	if err := mk("c"); !isCode(err, api.CodeQuotaExceeded) {
		t.Fatalf("with a deleted volume not yet purged: %v, want QuotaExceeded", err)
	}
	if _, err := fx.c.DeleteVolume(ctx, "a", true); err != nil {
		t.Fatal(err)
	}
	if err := mk("c"); err != nil {
		t.Fatalf("after purging: %v", err)
	}
}

// Blob uploads past the quota are refused with QuotaExceeded, and blobs no
// image uses are deleted by the janitor after OrphanBlobRetention, so that
// uploads nobody turns into an image do not hold the quota.
func TestBlobQuotaAndOrphans(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	// The blobs as the host's file system has them.
	blobs, err := image.OpenBlobs(filepath.Join(fx.cfg.StateDir, "images"), 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	fx.c.Close()
	fx.cfg.BlobQuota = blobs.Used() + 1000
	fx.start()
	orphan := bytes.Repeat([]byte("o"), 900)
	if err := fx.c.PutBlob(ctx, image.SHA384Hex(orphan), bytes.NewReader(orphan)); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("b"), 900)
	if err := fx.c.PutBlob(ctx, image.SHA384Hex(big), bytes.NewReader(big)); !isCode(err, api.CodeQuotaExceeded) {
		t.Fatalf("an upload past the quota: %v, want QuotaExceeded", err)
	}
	// Recently uploaded: kept for the CreateImage that should follow.
	fx.c.images.SweepOrphans(time.Now().Add(-images.OrphanBlobRetention))
	if !blobs.Has(image.SHA384Hex(orphan)) {
		t.Fatal("a fresh upload was swept")
	}
	img, err := fx.c.DescribeImage(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * images.OrphanBlobRetention)
	for _, d := range []string{image.SHA384Hex(orphan), img.KernelSHA384, img.InitrdSHA384} {
		os.Chtimes(blobs.Path(d), old, old)
	}
	fx.c.images.SweepOrphans(time.Now().Add(-images.OrphanBlobRetention))
	if blobs.Has(image.SHA384Hex(orphan)) {
		t.Fatal("an old blob no image uses was kept")
	}
	// The default image's blobs are as old, but used: kept.
	if !blobs.Has(img.KernelSHA384) || !blobs.Has(img.InitrdSHA384) {
		t.Fatal("an image's blobs were swept")
	}
	if err := fx.c.PutBlob(ctx, image.SHA384Hex(big), bytes.NewReader(big)); err != nil {
		t.Fatalf("after the sweep: %v", err)
	}
}

func TestByteSizeFlag(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		str  string
	}{{"16G", 16 << 30, "16G"}, {"1536", 1536, "1536"}, {"1M", 1 << 20, "1M"}, {"2T", 2 << 40, "2T"}, {"0", 0, "0"}} {
		var n int64
		if err := (byteSize{&n}).Set(c.in); err != nil || n != c.want || (byteSize{&n}).String() != c.str {
			t.Errorf("%q: %d %v %q", c.in, n, err, (byteSize{&n}).String())
		}
	}
	for _, bad := range []string{"", "-1", "1P", "x", "9999999T"} {
		var n int64
		if (byteSize{&n}).Set(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
