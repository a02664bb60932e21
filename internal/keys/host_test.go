package keys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/azote/azote/internal/keywrap"
)

// TestHostFormatUnchanged: what Host wraps under any name azoted uses
// opens with the bare host-key wrapper (internal/keywrap) and the same
// context, and the other way round, so volumes and IAM state written
// before the key seam still open; an unknown name is refused.
func TestHostFormatUnchanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host.key")
	h, escrow, err := OpenHost(path)
	if err != nil {
		t.Fatal(err)
	}
	defer escrow.Free()
	raw, err := os.ReadFile(path)
	if err != nil || len(raw) != 32 {
		t.Fatalf("host key file: %d bytes, %v", len(raw), err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o400 {
		t.Errorf("host key mode %o, want 400", st.Mode().Perm())
	}
	old, err := keywrap.New(raw)
	if err != nil {
		t.Fatal(err)
	}
	secret, ctx := []byte("a data key"), []byte("vol-1")
	for _, name := range []Name{Volumes, IAM, Network} {
		w, err := h.Wrap(name, secret, ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := old.Unwrap(w, ctx); err != nil || !bytes.Equal(got, secret) {
			t.Errorf("%s: the old format does not open what Host wrapped: %v", name, err)
		}
		ow, _ := old.Wrap(secret, ctx)
		if got, err := h.Unwrap(name, ow, ctx); err != nil || !bytes.Equal(got, secret) {
			t.Errorf("%s: Host does not open the old format: %v", name, err)
		}
		if _, err := h.Unwrap(name, ow, []byte("vol-2")); !errors.Is(err, ErrUnwrap) {
			t.Errorf("%s: another context: %v, want ErrUnwrap", name, err)
		}
	}
	if _, err := h.Wrap("kms/other", secret, ctx); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("unknown name: %v, want ErrUnknownKey", err)
	}
	// Opened again, the same key and the same escrow key.
	h2, escrow2, err := OpenHost(path)
	if err != nil {
		t.Fatal(err)
	}
	defer escrow2.Free()
	w, _ := h.Wrap(Volumes, secret, ctx)
	if _, err := h2.Unwrap(Volumes, w, ctx); err != nil || !bytes.Equal(escrow.Bytes(), escrow2.Bytes()) {
		t.Errorf("reopened host key differs: %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenHost(path); err == nil {
		t.Error("a host key readable by others was accepted")
	}
}
