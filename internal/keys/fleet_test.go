package keys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestFleet: a fleet key made once opens, on another host that holds a
// copy, what the first wrapped; a host key does not; it wraps Network
// alone; it is never overwritten, never made by opening, and refused
// when others may read it.
func TestFleet(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fleet.key")
	if _, err := OpenFleet(path); err == nil {
		t.Fatal("a missing fleet key was opened")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("opening made the fleet key: %v", err)
	}
	if err := CreateFleetKey(path); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil || len(raw) != 32 {
		t.Fatalf("fleet key file: %d bytes, %v", len(raw), err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o400 {
		t.Errorf("fleet key mode %o, want 400", st.Mode().Perm())
	}
	if err := CreateFleetKey(path); err == nil {
		t.Error("an existing fleet key was overwritten")
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, raw) {
		t.Error("a refused create changed the fleet key")
	}
	// Another host: a copy of the file.
	copyPath := filepath.Join(dir, "copy.key")
	if err := os.WriteFile(copyPath, raw, 0o400); err != nil {
		t.Fatal(err)
	}
	a, err := OpenFleet(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenFleet(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	secret, ctx := []byte("a VPC traffic key"), []byte("vpc-1/1")
	w, err := a.Wrap(Network, secret, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Unwrap(Network, w, ctx); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("the other host does not open it: %v", err)
	}
	if _, err := b.Unwrap(Network, w, []byte("vpc-2/1")); !errors.Is(err, ErrUnwrap) {
		t.Errorf("another context: %v, want ErrUnwrap", err)
	}
	host, esc, err := OpenHost(filepath.Join(dir, "host.key"))
	if err != nil {
		t.Fatal(err)
	}
	esc.Free()
	if _, err := host.Unwrap(Network, w, ctx); !errors.Is(err, ErrUnwrap) {
		t.Errorf("a host key opened a fleet-wrapped key: %v", err)
	}
	for _, name := range []Name{Volumes, IAM, "kms/other"} {
		if _, err := a.Wrap(name, secret, ctx); !errors.Is(err, ErrUnknownKey) {
			t.Errorf("%s under the fleet key: %v, want ErrUnknownKey", name, err)
		}
	}
	if err := os.Chmod(copyPath, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFleet(copyPath); err == nil {
		t.Error("a fleet key readable by its group was accepted")
	}
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, raw[:16], 0o400)
	if _, err := OpenFleet(short); err == nil {
		t.Error("a 16-byte fleet key was accepted")
	}
}
