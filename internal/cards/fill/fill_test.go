package fill

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azote/azote/internal/cardhost"
	"github.com/azote/azote/internal/xts"
)

// The test binary is its own card: RunFill starts it as `fill.test fill
// …`, as azoted starts `azote-card fill …`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "fill" {
		os.Exit(Main(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// testUID is the uid the card drops to when the tests run as root.
const testUID = cardhost.DefaultRootfsUID

func spec(t *testing.T, size int64, key []byte, in io.Reader, length int64, digest string) cardhost.FillSpec {
	t.Helper()
	if xts.Available() != nil && key != nil {
		t.Skip("needs AES-NI: encrypted volumes are refused without it")
	}
	out, err := os.OpenFile(filepath.Join(t.TempDir(), "vol.img"), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	if err := out.Truncate(size); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	uid := -1
	if os.Geteuid() == 0 {
		uid = testUID
	}
	return cardhost.FillSpec{Command: []string{self, "fill"}, UID: uid, Out: out, Key: key, Length: length, SHA256: digest, In: in}
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func readVolume(t *testing.T, s cardhost.FillSpec) []byte {
	t.Helper()
	b, err := os.ReadFile(s.Out.Name())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The card writes the stream encrypted in the blk card's format: the
// volume file decrypts, with the xts package and the volume's key, to the
// stream, then zeros to the end (a partial last sector padded, every
// sector past the disk written as encrypted zeros, none left a hole).
func TestEncryptsTheStream(t *testing.T) {
	key := random(64)
	for _, length := range []int{1 << 20, 3<<20 + 1000, 512} {
		disk := random(length)
		s := spec(t, 8<<20, key, bytes.NewReader(disk), int64(length), sum(disk))
		var seen int64
		s.Progress = func(n int64) { seen = n }
		res, err := cardhost.RunFill(context.Background(), s)
		if err != nil {
			t.Fatalf("%d bytes: %v", length, err)
		}
		if !res.Encrypted || res.Bytes != int64(length) || seen != int64(length) {
			t.Errorf("%d bytes: result %+v, progress %d", length, res, seen)
		}
		ct := readVolume(t, s)
		if len(ct) != 8<<20 {
			t.Fatalf("volume of %d bytes, want %d", len(ct), 8<<20)
		}
		if bytes.Contains(ct, disk[:256]) {
			t.Errorf("%d bytes: plaintext found in the volume file", length)
		}
		c, err := xts.New(key)
		if err != nil {
			t.Fatal(err)
		}
		pt := make([]byte, len(ct))
		if err := c.DecryptSectors(pt, ct, 0, 512); err != nil {
			t.Fatal(err)
		}
		want := append(disk, make([]byte, len(ct)-length)...)
		if !bytes.Equal(pt, want) {
			t.Errorf("%d bytes: the volume does not decrypt to the stream followed by zeros", length)
		}
	}
}

// A plaintext volume gets the stream as it is, and its tail stays a
// hole (zeros).
func TestPlaintext(t *testing.T) {
	disk := random(1<<20 + 7)
	s := spec(t, 4<<20, nil, bytes.NewReader(disk), int64(len(disk)), sum(disk))
	res, err := cardhost.RunFill(context.Background(), s)
	if err != nil || res.Encrypted {
		t.Fatalf("%+v, %v", res, err)
	}
	got := readVolume(t, s)
	if !bytes.Equal(got[:len(disk)], disk) || !bytes.Equal(got[len(disk):], make([]byte, len(got)-len(disk))) {
		t.Error("the volume is not the stream followed by zeros")
	}
}

// A stream that is not what was declared is refused with the error that
// says how: cut short, too long, another digest.
func TestRefusesABadStream(t *testing.T) {
	key := random(64)
	disk := random(2 << 20)
	for _, tc := range []struct {
		name   string
		in     []byte
		length int64
		digest string
		want   error
		msg    string
	}{
		{"short", disk[:1<<20], int64(len(disk)), sum(disk), cardhost.ErrFillLength, "ended after 1048576 of 2097152"},
		{"long", disk, int64(len(disk)) - 512, sum(disk[:len(disk)-512]), cardhost.ErrFillLength, "more than the declared"},
		{"digest", disk, int64(len(disk)), sum(disk[1:]), cardhost.ErrFillDigest, "SHA-256"},
		{"empty", nil, int64(len(disk)), sum(disk), cardhost.ErrFillLength, "ended after 0 of"},
	} {
		s := spec(t, 4<<20, key, bytes.NewReader(tc.in), tc.length, tc.digest)
		_, err := cardhost.RunFill(context.Background(), s)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %v (%q)", tc.name, err, tc.want, tc.msg)
		}
	}
}

// A stream whose reader fails (a client gone mid-upload) is refused as
// cut short, and the card does not outlive RunFill.
func TestBrokenUpload(t *testing.T) {
	disk := random(1 << 20)
	pr, pw := io.Pipe()
	go func() {
		pw.Write(disk[:300<<10])
		pw.CloseWithError(io.ErrUnexpectedEOF)
	}()
	s := spec(t, 2<<20, random(64), pr, int64(len(disk)), sum(disk))
	_, err := cardhost.RunFill(context.Background(), s)
	if !errors.Is(err, cardhost.ErrFillLength) || !strings.Contains(err.Error(), "upload ended") {
		t.Errorf("%v, want the upload reported cut short", err)
	}
}

// Cancelling the context kills a card that is waiting for its stream.
func TestCancel(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	s := spec(t, 2<<20, random(64), pr, 1<<20, sum(nil))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		pw.Write(make([]byte, 4096))
		time.Sleep(200 * time.Millisecond)
		cancel()
		// The copy holds RunFill until its reader returns.
		pw.CloseWithError(context.Canceled)
	}()
	start := time.Now()
	_, err := cardhost.RunFill(ctx, s)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 10*time.Second {
		t.Errorf("%v after %v, want cancelled at once", err, time.Since(start))
	}
}

// A bad configuration is refused before any byte is read.
func TestBadConfig(t *testing.T) {
	s := spec(t, 1<<20, random(64), bytes.NewReader(nil), 2<<20, sum(nil))
	if _, err := cardhost.RunFill(context.Background(), s); err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Errorf("a stream longer than the volume: %v", err)
	}
	s = spec(t, 1<<20, random(64), bytes.NewReader(nil), 512, "not-hex")
	if _, err := cardhost.RunFill(context.Background(), s); err == nil || !strings.Contains(err.Error(), "not a hex") {
		t.Errorf("a bad digest: %v", err)
	}
}

// Before it reads the stream the card has dropped to its own uid with no
// groups and is under the seccomp filter (read from /proc while it waits
// for its first byte).
func TestConfinedBeforeReading(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root can start the card as root and see it drop to another uid")
	}
	pr, pw := io.Pipe()
	s := spec(t, 2<<20, random(64), pr, 1<<20, sum(nil))
	done := make(chan error, 1)
	go func() { _, err := cardhost.RunFill(context.Background(), s); done <- err }()
	self, _ := os.Executable()
	var status string
	deadline := time.Now().Add(10 * time.Second)
	for status == "" && time.Now().Before(deadline) {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			cmd, _ := os.ReadFile(p)
			if !bytes.HasPrefix(cmd, []byte(self+"\x00fill\x00")) {
				continue
			}
			st, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "status"))
			// Confine runs before the first read: wait until it did.
			if bytes.Contains(st, []byte("\nSeccomp:\t2")) {
				status = string(st)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	pw.CloseWithError(io.ErrUnexpectedEOF)
	<-done
	want := fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", testUID, testUID, testUID, testUID)
	groups := ""
	for _, l := range strings.Split(status, "\n") {
		if g, ok := strings.CutPrefix(l, "Groups:"); ok {
			groups = strings.TrimSpace(g)
		}
	}
	if !strings.Contains(status, want) || groups != "" {
		t.Errorf("the card waiting for its stream is not confined:\n%s", status)
	}
}
