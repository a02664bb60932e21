package controller

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/controller/volumes"
	"github.com/azote/azote/internal/store"
	"github.com/azote/azote/internal/xts"
)

func importDisk(t *testing.T, n int) ([]byte, string) {
	t.Helper()
	if xts.Available() != nil {
		t.Skip("needs AES-NI: encrypted volumes are refused without it")
	}
	b := make([]byte, n)
	rand.Read(b)
	s := sha256.Sum256(b)
	return b, hex.EncodeToString(s[:])
}

// nothingLeft checks that no volume record and no volume file remain.
func (fx *fixture) nothingLeft(t *testing.T) {
	t.Helper()
	list, err := fx.c.ListVolumes(context.Background())
	if err != nil || len(list) != 0 {
		t.Errorf("volumes left: %+v (%v)", list, err)
	}
	files, _ := os.ReadDir(filepath.Join(fx.cfg.StateDir, "volumes"))
	for _, f := range files {
		t.Errorf("volume file left: %s", f.Name())
	}
}

// An imported disk becomes an available persistent volume whose file
// holds, under its own key, the disk followed by zeros.
func TestImportVolume(t *testing.T) {
	fx := newFixture(t)
	disk, digest := importDisk(t, 3<<20+100)
	v, err := fx.c.ImportVolume(context.Background(), api.ImportVolumeRequest{Name: "disk", Length: int64(len(disk)), SHA256: digest}, bytes.NewReader(disk))
	if err != nil {
		t.Fatal(err)
	}
	if v.State != api.VolumeAvailable || v.Kind != api.VolumePersistent || !v.Encrypted || v.SizeBytes != (3<<20+100+4095)&^4095 {
		t.Fatalf("imported volume: %+v", v)
	}
	rec, err := fx.c.volumes.Get(v.ID)
	if err != nil || rec.State != api.VolumeAvailable {
		t.Fatalf("record: %+v, %v", rec, err)
	}
	key, err := fx.c.volumes.LaunchKey(rec, false)
	if err != nil {
		t.Fatal(err)
	}
	defer key.Free()
	ct, err := os.ReadFile(fx.c.volumes.File(v.ID))
	if err != nil {
		t.Fatal(err)
	}
	c, err := xts.New(key.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	pt := make([]byte, len(ct))
	c.DecryptSectors(pt, ct, 0, 512)
	if !bytes.Equal(pt, append(disk, make([]byte, len(ct)-len(disk))...)) {
		t.Error("the volume does not decrypt to the imported disk followed by zeros")
	}
	// The name is taken; a larger size is kept; a smaller one refused.
	_, err = fx.c.ImportVolume(context.Background(), api.ImportVolumeRequest{Name: "disk", Length: int64(len(disk)), SHA256: digest}, bytes.NewReader(disk))
	if !isCode(err, api.CodeNameInUse) {
		t.Errorf("a second import named disk: %v", err)
	}
	big, err := fx.c.ImportVolume(context.Background(), api.ImportVolumeRequest{Name: "big", SizeBytes: 8 << 20, Length: int64(len(disk)), SHA256: digest}, bytes.NewReader(disk))
	if err != nil || big.SizeBytes != 8<<20 {
		t.Errorf("--size 8M: %+v, %v", big, err)
	}
	_, err = fx.c.ImportVolume(context.Background(), api.ImportVolumeRequest{Name: "small", SizeBytes: 1 << 20, Length: int64(len(disk)), SHA256: digest}, bytes.NewReader(disk))
	if !isCode(err, api.CodeInvalidVolumeSize) {
		t.Errorf("a size below the disk's: %v", err)
	}
}

// failingReader gives n bytes of b, then err: an upload that broke off.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

// Every failure of an import leaves neither record nor file, and is
// answered with its own code.
func TestImportFailuresLeaveNothing(t *testing.T) {
	fx := newFixture(t)
	disk, digest := importDisk(t, 2<<20)
	req := api.ImportVolumeRequest{Name: "disk", Length: int64(len(disk)), SHA256: digest}
	ctx := context.Background()

	// A truncated upload: the body ends early.
	_, err := fx.c.ImportVolume(ctx, req, bytes.NewReader(disk[:1<<20]))
	if !isCode(err, api.CodeIncompleteUpload) {
		t.Errorf("truncated upload: %v", err)
	}
	fx.nothingLeft(t)
	// The connection breaks mid-body.
	_, err = fx.c.ImportVolume(ctx, req, &failingReader{bytes.NewReader(disk[:1<<20]), io.ErrUnexpectedEOF})
	if !isCode(err, api.CodeIncompleteUpload) {
		t.Errorf("broken upload: %v", err)
	}
	fx.nothingLeft(t)
	// A longer body than declared.
	_, err = fx.c.ImportVolume(ctx, api.ImportVolumeRequest{Name: "disk", Length: int64(len(disk)) - 1, SHA256: digest}, bytes.NewReader(disk))
	if !isCode(err, api.CodeIncompleteUpload) {
		t.Errorf("long upload: %v", err)
	}
	fx.nothingLeft(t)
	// A wrong digest.
	bad := req
	bad.SHA256 = hex.EncodeToString(make([]byte, 32))
	_, err = fx.c.ImportVolume(ctx, bad, bytes.NewReader(disk))
	if !isCode(err, api.CodeDigestMismatch) {
		t.Errorf("bad digest: %v", err)
	}
	fx.nothingLeft(t)
	// Bad parameters are refused before anything is made.
	for _, q := range []api.ImportVolumeRequest{
		{Length: 10, SHA256: "xyz"}, {Length: 0, SHA256: digest}, {Length: 10, SHA256: digest, SizeBytes: 4096},
		{Length: 10, SHA256: digest, Name: "bad name!"},
	} {
		if _, err := fx.c.ImportVolume(ctx, q, bytes.NewReader(nil)); err == nil {
			t.Errorf("%+v accepted", q)
		}
	}
	fx.nothingLeft(t)
}

// A client that goes away mid-upload (its request's context ends) stops
// the card; the volume, shown as creating meanwhile, is removed.
func TestImportCancelLeavesNothing(t *testing.T) {
	fx := newFixture(t)
	disk, digest := importDisk(t, 4<<20)
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := fx.c.ImportVolume(ctx, api.ImportVolumeRequest{Name: "disk", Length: int64(len(disk)), SHA256: digest}, pr)
		errc <- err
	}()
	pw.Write(disk[:1<<20])
	list, _ := fx.c.ListVolumes(context.Background())
	if len(list) != 1 || list[0].State != api.VolumeCreating {
		t.Errorf("during the import: %+v, want one volume creating", list)
	} else {
		// Neither attached nor deleted while it is being written.
		if _, err := fx.c.DeleteVolume(context.Background(), list[0].ID, true); !isCode(err, api.CodeIncorrectVolumeState) {
			t.Errorf("delete during the import: %v", err)
		}
	}
	cancel()
	// The HTTP server ends the body of a request whose client is gone.
	pw.CloseWithError(context.Canceled)
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled import: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the import did not end after its cancel")
	}
	fx.nothingLeft(t)
}

// A restarted azoted removes an import a crash interrupted: its record
// (creating) and its file.
func TestRepairRemovesUnfinishedImport(t *testing.T) {
	fx := newFixture(t)
	kept := fx.volume("kept", api.VolumePersistent)
	fx.c.Close()
	st, err := store.OpenBolt(filepath.Join(fx.cfg.StateDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	id := api.NewID(api.VolumeIDPrefix)
	rec := volumes.Record{Volume: api.Volume{ID: id, Name: "half", Kind: api.VolumePersistent, State: api.VolumeCreating, SizeBytes: 1 << 20, CreatedAt: time.Now()}}
	if err := st.Update(func(tx store.Tx) error { return tx.Create(volumes.Table, id, &rec) }); err != nil {
		t.Fatal(err)
	}
	st.Close()
	file := filepath.Join(fx.cfg.StateDir, "volumes", id+".img")
	os.WriteFile(file, []byte("half a disk"), 0o600)
	fx.start()
	if _, err := fx.c.volumes.Get(id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the interrupted import's record after restart: %v", err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the interrupted import's file after restart: %v", err)
	}
	if _, err := fx.c.volumes.Get(kept.ID); err != nil {
		t.Errorf("a finished volume after restart: %v", err)
	}
}
