package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	enchex "encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/client"
	"github.com/azote/azote/internal/testutil"
)

// importServer is azoted's import route as the CLI sees it: it reads the
// whole body and checks it against the declared length and digest, as
// the fill card does, keeping what it got.
type importServer struct {
	sock     string
	requests atomic.Int32
	got      []byte
	query    map[string]string
	block    bool // read 1 MiB, then wait for the client to go
	// released is closed by the test once the client was cancelled; a
	// blocking server reads on only then, so that the client cannot have
	// sent the whole body before it is cancelled, however fast it is.
	released chan struct{}
	gone     chan struct{}
}

func newImportServer(t *testing.T) *importServer {
	s := &importServer{sock: filepath.Join(t.TempDir(), "s"), gone: make(chan struct{}, 1), released: make(chan struct{})}
	l, err := net.Listen("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != api.VolumeImportPath {
			http.Error(w, `{"Code":"VolumeNotFound","Message":"no volume"}`, 404)
			return
		}
		s.requests.Add(1)
		s.query = map[string]string{}
		for k, v := range r.URL.Query() {
			s.query[k] = v[0]
		}
		if s.block {
			io.CopyN(io.Discard, r.Body, 1<<20)
			<-s.released
			_, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				s.gone <- struct{}{}
			}
			return
		}
		body, err := io.ReadAll(r.Body)
		sum := sha256.Sum256(body)
		n, _ := strconv.ParseInt(s.query["length"], 10, 64)
		if err != nil || int64(len(body)) != n || enchex.EncodeToString(sum[:]) != s.query["sha256"] || r.ContentLength != n {
			http.Error(w, `{"Code":"DigestMismatch","Message":"not what was declared"}`, 400)
			return
		}
		s.got = body
		json.NewEncoder(w).Encode(api.Volume{ID: "vol-1", Name: s.query["name"], State: api.VolumeAvailable, SizeBytes: n})
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func writeDisk(t *testing.T, n int) (string, []byte) {
	b := make([]byte, n)
	for off := 0; off < n; off += 3 << 20 {
		rand.Read(b[off:min(off+1<<20, n)])
	}
	p := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// A raw file is uploaded as it is; a qcow2 image made from it by
// qemu-img is uploaded as the same raw disk; progress is shown for a
// disk of some size.
func TestVolumeImportRawAndQcow2(t *testing.T) {
	testutil.RequiresCommand(t, "qemu-img", "qemu-utils")
	old := importProgressEvery
	importProgressEvery = time.Millisecond
	defer func() { importProgressEvery = old }()
	s := newImportServer(t)
	raw, disk := writeDisk(t, 9<<20)
	qc := filepath.Join(filepath.Dir(raw), "disk.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", raw, qc).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	for _, file := range []string{raw, qc} {
		s.got = nil
		code, out, errs := runArgs("volume", "import", "--file", file, "--name", "d", "--size", "16M", "--socket", s.sock)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", file, code, errs)
		}
		if !bytes.Equal(s.got, disk) {
			t.Errorf("%s: the upload is not the raw disk (%d bytes of %d)", file, len(s.got), len(disk))
		}
		if s.query["size_bytes"] != strconv.Itoa(16<<20) || s.query["name"] != "d" {
			t.Errorf("%s: query %v", file, s.query)
		}
		if !strings.Contains(errs, "importing "+file+": ") || !strings.Contains(errs, "/ 9.0 MiB") || !strings.Contains(out, "vol-1") {
			t.Errorf("%s: no progress or answer:\nstderr %s\nstdout %s", file, errs, out)
		}
	}
}

// Refusals before anything is sent: a size below the disk's, a corrupt
// or truncated qcow2, an empty file.
func TestVolumeImportRefusals(t *testing.T) {
	s := newImportServer(t)
	raw, _ := writeDisk(t, 2<<20)
	dir := filepath.Dir(raw)
	trunc := filepath.Join(dir, "t.qcow2")
	testutil.RequiresCommand(t, "qemu-img", "qemu-utils")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, trunc).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	fi, _ := os.Stat(trunc)
	os.Truncate(trunc, fi.Size()/2)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--file", raw, "--size", "1M"}, "smaller than the disk's"},
		{[]string{"--file", trunc}, "corrupt or truncated"},
		{[]string{"--file", empty}, "the disk is empty"},
		{[]string{"--file", raw, "--format", "vmdk"}, "want auto, raw or qcow2"},
		{[]string{}, "--file is required"},
	} {
		code, _, errs := runArgs(append([]string{"volume", "import", "--socket", s.sock}, tc.args...)...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, %q; want %q", tc.args, code, errs, tc.want)
		}
	}
	if n := s.requests.Load(); n != 0 {
		t.Errorf("%d requests sent for refused imports", n)
	}
}

// Ctrl-C during the upload breaks it off (the server sees the body end
// early, and removes the volume).
func TestVolumeImportCancel(t *testing.T) {
	s := newImportServer(t)
	s.block = true
	raw, _ := writeDisk(t, 64<<20)
	var stderr bytes.Buffer
	e := &env{stderr: &stderr, output: "table"}
	ctx, cancel := context.WithCancel(context.Background())
	f, _ := os.Open(raw)
	defer f.Close()
	src, err := openDisk(f, "auto")
	if err != nil {
		t.Fatal(err)
	}
	e.client = client.New(s.sock)
	go func() {
		for s.requests.Load() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		cancel()
		time.Sleep(50 * time.Millisecond)
		close(s.released)
	}()
	_, err = e.importDisk(ctx, raw, src, api.ImportVolumeRequest{Length: src.length})
	if err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Errorf("cancelled import: %v", err)
	}
	select {
	case <-s.gone:
	case <-time.After(10 * time.Second):
		t.Error("the server did not see the upload break off")
	}
}
