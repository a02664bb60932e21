package blk

import (
	"crypto/rand"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/vhostuser"
)

// procField returns the fields after the line of /proc/pid/<file> that
// starts with prefix.
func procField(t *testing.T, pid int, file, prefix string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + file)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			return strings.Fields(rest)
		}
	}
	t.Fatalf("no %q in /proc/%d/%s", prefix, pid, file)
	return nil
}

// TestCardFileSizeLimit: a started card can write no file past the larger
// of its volume's size and its log room, hard limit included, and ignores
// SIGXFSZ, so a write past it fails with EFBIG instead of killing the
// card (regression: a compromised card could pwrite past the end of its
// backing file and grow its volume beyond the size the quota counted).
func TestCardFileSizeLimit(t *testing.T) {
	bin := buildCard(t)
	dir := t.TempDir()
	key := make([]byte, 64)
	rand.Read(key)
	// A volume larger than the default log room, then one smaller.
	for _, size := range []int64{DefaultLogRoom + 64<<20, 4 << 20} {
		backing := filepath.Join(dir, "vol.img")
		if err := os.WriteFile(backing, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(backing, size); err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(dir, "blk.sock")
		var log logBuffer
		card := startCardProcess(t, bin, sock, backing, key, cardOpts{log: &log})
		// The card listens before it limits itself; it logs "serving"
		// once limited and confined.
		if !log.waitFor("msg=serving", 5*time.Second) {
			card.Process.Kill()
			card.Wait()
			t.Fatalf("volume of %d bytes: the card does not serve; its log:\n%s", size, log.String())
		}
		want := strconv.FormatInt(max(size, DefaultLogRoom), 10)
		f := procField(t, card.Process.Pid, "limits", "Max file size")
		if len(f) < 2 || f[0] != want || f[1] != want {
			t.Errorf("volume of %d bytes: card's file size limit %v, want %s (soft and hard)", size, f, want)
		}
		ign, err := strconv.ParseUint(procField(t, card.Process.Pid, "status", "SigIgn:")[0], 16, 64)
		if err != nil || ign&(1<<(unix.SIGXFSZ-1)) == 0 {
			t.Errorf("card does not ignore SIGXFSZ: SigIgn %x %v", ign, err)
		}
		card.Process.Kill()
		card.Wait()
	}
}

// TestConfinedCardDiscards: the confined card still serves DISCARD (a
// hole punched in its backing file, the one fallocate its seccomp filter
// allows) and WRITE_ZEROES, and a write at the volume's last sector.
func TestConfinedCardDiscards(t *testing.T) {
	bin := buildCard(t)
	dir := t.TempDir()
	const size = 4 << 20
	backing := filepath.Join(dir, "vol.img")
	if err := os.WriteFile(backing, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 64)
	rand.Read(key)
	sock := filepath.Join(dir, "blk.sock")
	var log logBuffer
	card := startCardProcess(t, bin, sock, backing, key, cardOpts{log: &log})
	defer func() { card.Process.Kill(); card.Wait() }()
	fe, err := vhostuser.Dial(sock, vhostuser.FrontendConfig{MemSize: 8 << 20, NumQueues: 1, QueueSize: 128})
	if err != nil {
		t.Fatal(err)
	}
	defer fe.Close()
	q := fe.Queues[0]
	hdrGPA, hdr, _ := fe.Alloc(16)
	dataGPA, data, _ := fe.Alloc(4096)
	stGPA, st, _ := fe.Alloc(1)
	do := func(typ uint32, sector uint64, n int) byte {
		t.Helper()
		binary.LittleEndian.PutUint32(hdr, typ)
		binary.LittleEndian.PutUint64(hdr[8:], sector)
		st[0] = 0xff
		if _, err := q.Add([]vhostuser.Buf{{Addr: hdrGPA, Len: 16}, {Addr: dataGPA, Len: uint32(n)}, {Addr: stGPA, Len: 1, Write: true}}); err != nil {
			t.Fatal(err)
		}
		q.Kick()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			q.Wait(50 * time.Millisecond)
			if len(q.Reap(nil)) > 0 {
				return st[0]
			}
		}
		t.Fatalf("request %d got no answer; card log:\n%s", typ, log.String())
		return 0
	}
	segment := func(sector uint64, count uint32) {
		binary.LittleEndian.PutUint64(data, sector)
		binary.LittleEndian.PutUint32(data[8:], count)
		binary.LittleEndian.PutUint32(data[12:], 0)
	}
	if s := do(typeOut, size/SectorSize-8, 4096); s != statusOK {
		t.Fatalf("write of the last block: status %d", s)
	}
	before := blocksOf(t, backing)
	segment(0, 1024)
	if s := do(typeDiscard, 0, 16); s != statusOK {
		t.Fatalf("discard: status %d; card log:\n%s", s, log.String())
	}
	if after := blocksOf(t, backing); after >= before {
		t.Errorf("discard freed nothing: %d bytes allocated before, %d after", before, after)
	}
	segment(2048, 8)
	if s := do(typeWriteZeroes, 0, 16); s != statusOK {
		t.Fatalf("write zeroes: status %d; card log:\n%s", s, log.String())
	}
	if fi, err := os.Stat(backing); err != nil || fi.Size() != size {
		t.Fatalf("backing file size %d (%v), want %d", fi.Size(), err, size)
	}
	if err := card.Process.Signal(unix.Signal(0)); err != nil {
		t.Fatalf("card died: %v", err)
	}
}

func blocksOf(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
