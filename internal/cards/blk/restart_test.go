package blk

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/vhostuser"
	"github.com/azote/azote/internal/xts"
)

// TestCardKilledWithWritesInFlight kills the card with SIGKILL while the
// frontend has 32 writes in flight, starts a new card, reconnects, and
// checks that every write is acknowledged exactly once, that every
// acknowledged write is on disk, and that none was applied twice: each
// request overwrites one sector with its own sequence number, so a
// replayed older write would leave an older number.
//
// On the page cache the card serves a queue one request at a time.
func TestCardKilledWithWritesInFlight(t *testing.T) { cardKilledWithWritesInFlight(t, 0, true) }

// TestDirectCardKilledWithWritesInFlight is the same over O_DIRECT, where
// the card keeps 32 requests of the queue in flight and, with inflight
// tracking negotiated, completes them as they finish: the new card learns
// from the inflight area which ones to serve again.
func TestDirectCardKilledWithWritesInFlight(t *testing.T) {
	cardKilledWithWritesInFlight(t, unix.O_DIRECT, true)
}

// TestDirectCardKilledInRingOrder is the O_DIRECT case for a frontend
// that declines inflight tracking: the card then completes in ring order
// and resumes from the used index.
func TestDirectCardKilledInRingOrder(t *testing.T) {
	cardKilledWithWritesInFlight(t, unix.O_DIRECT, false)
}

func cardKilledWithWritesInFlight(t *testing.T, flags int, inflight bool) {
	bin := buildCard(t)
	dir := t.TempDir()
	backing := filepath.Join(dir, "vol.img")
	os.WriteFile(backing, make([]byte, 4<<20), 0o600)
	key := make([]byte, 64)
	rand.Read(key)
	sock := filepath.Join(dir, "blk.sock")
	card := startCardProcess(t, bin, sock, backing, key, cardOpts{flags: flags})
	defer func() { card.Process.Kill(); card.Wait() }()

	fe, err := vhostuser.Dial(sock, vhostuser.FrontendConfig{MemSize: 8 << 20, NumQueues: 1, QueueSize: 128, NoInflight: !inflight})
	if err != nil {
		t.Fatal(err)
	}
	defer fe.Close()
	q := fe.Queues[0]
	const depth, total = 32, 4000
	// Per slot: header, one 4 KiB data buffer, status.
	type slot struct {
		hdr, data, st          []byte
		hdrGPA, dataGPA, stGPA uint64
		seq                    uint64
	}
	slots := make([]slot, depth)
	for i := range slots {
		s := &slots[i]
		s.hdrGPA, s.hdr, _ = fe.Alloc(16)
		s.dataGPA, s.data, _ = fe.Alloc(4096)
		s.stGPA, s.st, _ = fe.Alloc(1)
	}
	byHead := map[uint16]*slot{}
	var acked []uint64 // sequence numbers acknowledged, in order
	submit := func(s *slot, seq uint64) {
		s.seq = seq
		binary.LittleEndian.PutUint32(s.hdr, typeOut)
		// Each write goes to its own sector, plus sector 0 records the
		// sequence number of the request itself.
		sector := 8 + (seq%500)*8
		binary.LittleEndian.PutUint64(s.hdr[8:], sector)
		binary.LittleEndian.PutUint64(s.data, seq)
		s.st[0] = 0xff
		head, err := q.Add([]vhostuser.Buf{{Addr: s.hdrGPA, Len: 16}, {Addr: s.dataGPA, Len: 4096}, {Addr: s.stGPA, Len: 1, Write: true}})
		if err != nil {
			t.Fatal(err)
		}
		byHead[head] = s
	}
	next := uint64(1)
	free := make([]*slot, 0, depth)
	for i := range slots {
		free = append(free, &slots[i])
	}
	killed := false
	var second logBuffer // the restarted card's log
	for len(acked) < total {
		for len(free) > 0 && next <= total {
			submit(free[len(free)-1], next)
			free = free[:len(free)-1]
			next++
		}
		q.Kick()
		if !killed && len(acked) > total/3 {
			// Kill mid-stream, with writes in flight.
			if q.InFlight() == 0 {
				t.Fatal("no write in flight at the kill")
			}
			card.Process.Signal(syscall.SIGKILL)
			card.Wait()
			killed = true
			card = startCardProcess(t, bin, sock, backing, key, cardOpts{flags: flags, log: &second})
			if err := fe.Reconnect(sock, 5*time.Second); err != nil {
				t.Fatalf("reconnect: %v", err)
			}
			q = fe.Queues[0]
			q.Kick()
		}
		q.Wait(50 * time.Millisecond)
		for _, c := range q.Reap(nil) {
			s := byHead[c.Head]
			delete(byHead, c.Head)
			if s.st[0] != statusOK {
				t.Fatalf("write %d: status %d", s.seq, s.st[0])
			}
			acked = append(acked, s.seq)
			free = append(free, s)
		}
	}
	if !killed {
		t.Fatal("the card was never killed")
	}
	// Each write completes exactly once; in ring order unless the card
	// may complete out of order.
	inOrder := !inflight || flags&unix.O_DIRECT == 0
	seen := make([]bool, total+1)
	outOfOrder := 0
	for i, s := range acked {
		if s == 0 || s > total || seen[s] {
			t.Fatalf("completion %d is write %d: repeated or unknown", i, s)
		}
		seen[s] = true
		if s != uint64(i+1) {
			if inOrder {
				t.Fatalf("completion %d is write %d: out of ring order", i, s)
			}
			outOfOrder++
		}
	}
	t.Logf("%d of %d completions out of ring order", outOfOrder, total)
	if inflight {
		// The restarted card must have taken the area the first one left;
		// going on in ring order from the used index would lose requests
		// and repeat others after out-of-order completion.
		// The card's log reaches the buffer through a pipe and a copying
		// goroutine; the writes can be done before the line arrives.
		if !second.waitFor("inflight tracking area in use", 5*time.Second) {
			t.Fatalf("the restarted card did not take the inflight area; its log:\n%s", second.String())
		}
		if !inOrder && outOfOrder == 0 {
			t.Fatal("32 requests in flight on O_DIRECT never completed out of ring order: out-of-order completion is not in use")
		}
	}
	// Every sector holds the last write aimed at it.
	f, _ := os.Open(backing)
	defer f.Close()
	c, err := xts.New(key)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for k := uint64(0); k < 500; k++ {
		sector := 8 + k*8
		f.ReadAt(buf, int64(sector*512))
		c.DecryptSectors(buf, buf, sector, 512)
		// The last sequence number s ≤ total with s%500 == k.
		last := uint64(total) - (uint64(total)-k)%500
		if got := binary.LittleEndian.Uint64(buf); got != last {
			t.Fatalf("sector %d holds write %d, want %d", sector, got, last)
		}
		if !bytes.Equal(buf[8:16], make([]byte, 8)) {
			t.Fatalf("sector %d: unexpected bytes", sector)
		}
	}
}
