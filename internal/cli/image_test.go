package cli

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/client"
	"github.com/azote/azote/internal/image"
)

// An image build cancelled after a blob reached the host says which
// blobs the host keeps and that azoted deletes them after an hour unless
// an image uses them; any other failure is reported as it is.
func TestImageUploadCancelNamesBlobs(t *testing.T) {
	art := &image.Artifacts{Kernel: []byte("kernel bytes"), Initrd: []byte("initramfs bytes"), Cmdline: "console=ttyS0", KernelVersion: "6.1"}
	ksha, isha := image.SHA384Hex(art.Kernel), image.SHA384Hex(art.Initrd)
	for _, tc := range []struct {
		name string
		// cutAt is the request during which the user cancels: "PUT
		// kernel", "PUT initramfs" or "POST images"; "quota" answers the
		// initramfs with an API error instead.
		cutAt string
		want  []string
		not   []string
	}{
		{name: "during the kernel upload", cutAt: "PUT kernel",
			want: []string{"image build cancelled before the image was created", "kernel     SHA-384 " + ksha + " (cut short: kept only if the host got all of it)"},
			not:  []string{isha}},
		{name: "during the initramfs upload", cutAt: "PUT initramfs",
			want: []string{"image build cancelled before the image was created", "\n  kernel     SHA-384 " + ksha + "\n",
				"initramfs  SHA-384 " + isha + " (cut short: kept only if the host got all of it)"}},
		{name: "during CreateImage", cutAt: "POST images",
			want: []string{"image build cancelled while the image was being created", "\n  kernel     SHA-384 " + ksha + "\n",
				"\n  initramfs  SHA-384 " + isha + "\n", "'azote image describe tools' shows it"},
			not: []string{"cut short"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var mu sync.Mutex
			var seen []string
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				req := r.Method + " " + strings.TrimPrefix(r.URL.Path, "/v1/")
				req = strings.NewReplacer("blobs/"+ksha, "kernel", "blobs/"+isha, "initramfs").Replace(req)
				mu.Lock()
				seen = append(seen, req)
				mu.Unlock()
				// Reading the body lets the server see the client go.
				io.Copy(io.Discard, r.Body)
				if req == tc.cutAt {
					cancel() // Ctrl-C while azoted is on this request
					<-r.Context().Done()
					return
				}
				json.NewEncoder(w).Encode(api.CreateImageResponse{})
			}))
			sock := filepath.Join(t.TempDir(), "s")
			l, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			srv.Listener = l
			srv.Start()
			defer srv.Close()
			e := &env{output: "table", client: client.New(sock), stderr: io.Discard}
			_, err = e.uploadImage(ctx, "tools", art)
			if !errors.Is(err, errUploadCancelled) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("requests %q: err %v, want the cancelled-upload note", seen, err)
			}
			for _, w := range append(tc.want, "azoted deletes blobs that no image uses an hour after their upload; running the same build again re-uses them.") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("note lacks %q:\n%v", w, err)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(err.Error(), n) {
					t.Errorf("note has %q:\n%v", n, err)
				}
			}
		})
	}
}

// A failure that is not a cancel is the API's error, without the note.
func TestImageUploadFailureIsNotCancel(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		w.Write([]byte(`{"Code":"QuotaExceeded","Message":"blob quota"}`))
	}))
	srv.Listener = l
	srv.Start()
	defer srv.Close()
	e := &env{output: "table", client: client.New(sock), stderr: io.Discard}
	_, err = e.uploadImage(context.Background(), "tools", &image.Artifacts{Kernel: []byte("k"), Initrd: []byte("i")})
	if !api.IsCode(err, "QuotaExceeded") || errors.Is(err, errUploadCancelled) {
		t.Errorf("err %v; want the QuotaExceeded error as it is", err)
	}
}
