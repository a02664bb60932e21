package runtime

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestEscrowAnswersOnlyAzoted: the instance-store key goes only to a root
// peer that proves it is azoted with the escrow secret (regression: any
// uid-0 peer got the key, so an engine escaped as root could ask every
// card for its key).
func TestEscrowAnswersOnlyAzoted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the card answers root peers only")
	}
	path := filepath.Join(t.TempDir(), "key.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	key := bytes.Repeat([]byte{0x5a}, 64)
	secret := bytes.Repeat([]byte{0xa5}, 32)
	go ServeKey(l, key, secret, slog.New(slog.NewTextHandler(io.Discard, nil)))

	ask := func(send []byte) []byte {
		t.Helper()
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if len(send) > 0 {
			c.Write(send)
		}
		c.CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		return got
	}
	if got := ask(nil); len(got) != 0 {
		t.Errorf("a root peer without the secret got %d bytes", len(got))
	}
	wrong := bytes.Repeat([]byte{0xa5}, 32)
	wrong[31] ^= 1
	if got := ask(wrong); len(got) != 0 {
		t.Errorf("a root peer with a wrong secret got %d bytes", len(got))
	}
	if got := ask(secret[:16]); len(got) != 0 {
		t.Errorf("a root peer with half the secret got %d bytes", len(got))
	}
	if got := ask(secret); !bytes.Equal(got, key) {
		t.Errorf("azoted (root, with the secret) got %x, want the key", got)
	}
}
