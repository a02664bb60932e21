package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azote/azote/internal/api"
	"github.com/azote/azote/internal/api/client"
)

// A cancelled volume create --image leaves no volume behind, even when
// azoted recorded it as the cancel arrived.
func TestVolumeCreateFromImageCancel(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var deleted atomic.Bool
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "POST" && r.URL.Path == "/v1/volumes":
			<-r.Context().Done() // the fill outlives the client
		case r.Method == "GET" && r.URL.Path == "/v1/volumes/root":
			json.NewEncoder(w).Encode(api.Volume{ID: "vol-1", Name: "root", SourceImage: "img-1", CreatedAt: time.Now()})
		case r.Method == "DELETE" && r.URL.Path == "/v1/volumes/vol-1" && r.URL.Query().Get("now") == "1":
			deleted.Store(true)
			json.NewEncoder(w).Encode(api.Volume{ID: "vol-1"})
		default:
			http.Error(w, `{"Code":"InternalError","Message":"unexpected"}`, 500)
		}
	})}
	go srv.Serve(l)
	defer srv.Close()
	var stderr bytes.Buffer
	e := &env{stderr: &stderr, output: "table", client: client.New(sock)}
	old := progressEvery
	progressEvery = 20 * time.Millisecond
	defer func() { progressEvery = old }()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = e.createFromImage(ctx, api.CreateVolumeRequest{Name: "root", Image: "default", SizeBytes: 64 << 20})
	if err == nil || !strings.Contains(err.Error(), "was deleted") || !deleted.Load() {
		t.Fatalf("err %v, deleted %v", err, deleted.Load())
	}
	if !strings.Contains(stderr.String(), "filling the volume from image default") {
		t.Errorf("no progress: %q", stderr.String())
	}
}
