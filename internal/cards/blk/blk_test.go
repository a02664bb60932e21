package blk

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	cardrt "github.com/azote/azote/internal/cards/runtime"
	"github.com/azote/azote/internal/vhostuser"
	"github.com/azote/azote/internal/virtio"
	"github.com/azote/azote/internal/xts"
	"golang.org/x/sys/unix"
)

// rig is a blk device served in-process and driven by the Go vhost-user
// frontend, the way QEMU would drive it.
type rig struct {
	t       testing.TB
	dev     *Device
	file    *os.File
	cipher  *xts.Cipher
	fe      *vhostuser.Frontend
	sock    string
	hdr     []byte // 16-byte header buffer in guest memory
	hdrGPA  uint64
	data    []byte
	dataGPA uint64
	st      []byte
	stGPA   uint64
}

func newRig(t testing.TB, size int64, queues int, encrypted, readOnly bool) *rig {
	t.Helper()
	return newRigFlags(t, size, queues, encrypted, readOnly, 0)
}

// newRigFlags opens the backing file with extra open flags (O_DIRECT).
func newRigFlags(t testing.TB, size int64, queues int, encrypted, readOnly bool, flags int) *rig {
	t.Helper()
	return newRigIn(t, t.TempDir(), size, queues, encrypted, readOnly, flags)
}

// newRigIn makes the backing file (and the socket) in dir.
func newRigIn(t testing.TB, dir string, size int64, queues int, encrypted, readOnly bool, flags int, opts ...func(*Config)) *rig {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "vol.img"), os.O_CREATE|os.O_RDWR|flags, 0o600)
	if err != nil {
		t.Skipf("cannot open a file with flags %#x in %s: %v", flags, dir, err)
	}
	f.Truncate(size)
	r := &rig{t: t, file: f, sock: filepath.Join(dir, "blk.sock")}
	cfg := Config{File: f, Queues: queues, ID: "vol-test", ReadOnly: readOnly}
	if encrypted {
		key := make([]byte, 64)
		rand.Read(key)
		r.cipher, err = xts.New(key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Cipher = r.cipher
	}
	for _, o := range opts {
		o(&cfg)
	}
	r.dev, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := cardrt.ListenVhostUser(r.sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		b := vhostuser.NewBackend(r.dev, log)
		cardrt.ServeVhostUser(b, l, log)
		b.Close()
		close(done)
	}()
	t.Cleanup(func() {
		if r.fe != nil {
			r.fe.Close()
		}
		l.Close()
		<-done
		r.dev.Close()
		f.Close()
	})
	r.fe, err = vhostuser.Dial(r.sock, vhostuser.FrontendConfig{MemSize: 8 << 20, NumQueues: queues, QueueSize: 128})
	if err != nil {
		t.Fatal(err)
	}
	r.hdrGPA, r.hdr, _ = r.fe.Alloc(16)
	r.dataGPA, r.data, _ = r.fe.Alloc(1 << 20)
	r.stGPA, r.st, _ = r.fe.Alloc(1)
	return r
}

// do sends one request on queue q, its data (n bytes, none if 0) at
// r.data, and waits for its status.
func (r *rig) do(q int, typ uint32, sector uint64, n int, write bool) byte {
	r.t.Helper()
	if n == 0 {
		return r.request(q, typ, sector, write, 0)
	}
	return r.request(q, typ, sector, write, 0, uint32(n))
}

// request sends one request on queue q with its data cut into segments of
// the given lengths, laid out back to back from r.data[off:], and waits
// for its status.
func (r *rig) request(q int, typ uint32, sector uint64, write bool, off uint64, lens ...uint32) byte {
	r.t.Helper()
	binary.LittleEndian.PutUint32(r.hdr, typ)
	binary.LittleEndian.PutUint64(r.hdr[8:], sector)
	r.st[0] = 0xff
	bufs := []vhostuser.Buf{{Addr: r.hdrGPA, Len: 16}}
	for _, n := range lens {
		bufs = append(bufs, vhostuser.Buf{Addr: r.dataGPA + off, Len: n, Write: !write})
		off += uint64(n)
	}
	bufs = append(bufs, vhostuser.Buf{Addr: r.stGPA, Len: 1, Write: true})
	dq := r.fe.Queues[q]
	if _, err := dq.Add(bufs); err != nil {
		r.t.Fatal(err)
	}
	dq.Kick()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c := dq.Reap(nil); len(c) == 1 {
			return r.st[0]
		}
		if time.Now().After(deadline) {
			r.t.Fatal("request not completed within 5 s")
		}
		dq.Wait(100 * time.Millisecond)
	}
}

func TestReadWriteEncrypted(t *testing.T) {
	for _, queues := range []int{1, 2} {
		r := newRig(t, 4<<20, queues, true, false)
		plain := make([]byte, 64<<10)
		rand.Read(plain)
		for q := 0; q < queues; q++ {
			copy(r.data, plain)
			sector := uint64(8 + q*256)
			if st := r.do(q, typeOut, sector, len(plain), true); st != statusOK {
				t.Fatalf("queues=%d q=%d write: status %d", queues, q, st)
			}
			clear(r.data[:len(plain)])
			if st := r.do(q, typeIn, sector, len(plain), false); st != statusOK {
				t.Fatalf("read: status %d", st)
			}
			if !bytes.Equal(r.data[:len(plain)], plain) {
				t.Fatalf("queues=%d q=%d: read back differs", queues, q)
			}
			// On disk: the dm-crypt aes-xts-plain64 ciphertext of plain.
			disk := make([]byte, len(plain))
			r.file.ReadAt(disk, int64(sector*512))
			want := make([]byte, len(plain))
			r.cipher.EncryptSectors(want, plain, sector, 512)
			if !bytes.Equal(disk, want) {
				t.Fatal("backing file is not the aes-xts-plain64 encryption of the data")
			}
		}
	}
}

// TestLargeEncryptedTransfers: large transfers cut into segments of many
// shapes, on the page cache (through the mapped file) and on O_DIRECT
// (through the bounce buffer, reads in place). Whatever the segments, the
// file must hold the aes-xts-plain64 encryption of the data, and it must
// read back through any other segmentation.
func TestLargeEncryptedTransfers(t *testing.T) {
	for _, flags := range []int{0, unix.O_DIRECT} {
		r := newRigFlags(t, 4<<20, 1, true, false, flags)
		const total = 1 << 20
		layouts := [][]uint32{
			{total},                              // one segment
			{512, total - 1024, 512},             // sector-sized ends
			{total / 2, total / 2},               // two halves
			{total/2 - 512, 1024, total/2 - 512}, // a small segment in the middle
			{4096 * 3, total - 4096*3},           // pages, then the rest
			{128 << 10},                          // a smaller transfer
		}
		for i, lens := range layouts {
			n := 0
			for _, l := range lens {
				n += int(l)
			}
			plain := make([]byte, n)
			rand.Read(plain)
			sector := uint64(16 + i*8)
			copy(r.data, plain)
			if st := r.request(0, typeOut, sector, true, 0, lens...); st != statusOK {
				t.Fatalf("O_DIRECT=%v layout %v: write status %d", flags != 0, lens, st)
			}
			disk := make([]byte, n)
			r.file.ReadAt(disk, int64(sector*512))
			want := make([]byte, n)
			r.cipher.EncryptSectors(want, plain, sector, 512)
			if !bytes.Equal(disk, want) {
				t.Fatalf("O_DIRECT=%v layout %v: the file is not the aes-xts-plain64 encryption of the data", flags != 0, lens)
			}
			for _, back := range [][]uint32{{uint32(n)}, slices.Concat([]uint32{512}, []uint32{uint32(n) - 512})} {
				clear(r.data[:n])
				if st := r.request(0, typeIn, sector, false, 0, back...); st != statusOK || !bytes.Equal(r.data[:n], plain) {
					t.Fatalf("O_DIRECT=%v layout %v read back as %v: status %d, data equal %v", flags != 0, lens, back, st, bytes.Equal(r.data[:n], plain))
				}
			}
		}
	}
}

func TestRequestTypes(t *testing.T) {
	r := newRig(t, 1<<20, 1, true, false)
	if st := r.do(0, typeFlush, 0, 0, false); st != statusOK {
		t.Errorf("flush: %d", st)
	}
	if st := r.do(0, typeGetID, 0, 20, false); st != statusOK || string(bytes.TrimRight(r.data[:20], "\x00")) != "vol-test" {
		t.Errorf("get id: %d %q", st, r.data[:20])
	}
	if st := r.do(0, 99, 0, 0, false); st != statusUnsupp {
		t.Errorf("unknown type: %d", st)
	}
	// Beyond capacity (2048 sectors), misaligned length, overflowing sector.
	if st := r.do(0, typeIn, 2047, 1024, false); st != statusIOErr {
		t.Errorf("read past the end: %d", st)
	}
	if st := r.do(0, typeIn, 0, 100, false); st != statusIOErr {
		t.Errorf("read of 100 bytes: %d", st)
	}
	if st := r.do(0, typeOut, ^uint64(0), 512, true); st != statusIOErr {
		t.Errorf("write at sector 2^64-1: %d", st)
	}
	// Write-zeroes on an encrypted volume reads back as zeros.
	rand.Read(r.data[:4096])
	r.do(0, typeOut, 16, 4096, true)
	seg := make([]byte, 16)
	binary.LittleEndian.PutUint64(seg, 16)
	binary.LittleEndian.PutUint32(seg[8:], 8)
	copy(r.data, seg)
	if st := r.do(0, typeWriteZeroes, 0, 16, true); st != statusOK {
		t.Fatalf("write zeroes: %d", st)
	}
	r.do(0, typeIn, 16, 4096, false)
	if !bytes.Equal(r.data[:4096], make([]byte, 4096)) {
		t.Error("write-zeroes did not read back as zeros")
	}
	copy(r.data, seg)
	if st := r.do(0, typeDiscard, 0, 16, true); st != statusOK {
		t.Errorf("discard: %d", st)
	}
	binary.LittleEndian.PutUint32(seg[12:], 2) // reserved flag bit
	copy(r.data, seg)
	if st := r.do(0, typeDiscard, 0, 16, true); st != statusIOErr {
		t.Errorf("discard with reserved flags: %d", st)
	}
	if got := r.dev.Metrics.ops[opWrite].Load(); got == 0 {
		t.Error("writes not counted")
	}
}

func TestReadOnly(t *testing.T) {
	r := newRig(t, 1<<20, 1, false, true)
	if st := r.do(0, typeOut, 0, 512, true); st != statusIOErr {
		t.Fatalf("write to a read-only volume: status %d", st)
	}
	seg := make([]byte, 16)
	binary.LittleEndian.PutUint32(seg[8:], 1)
	copy(r.data, seg)
	if st := r.do(0, typeWriteZeroes, 0, 16, true); st != statusIOErr {
		t.Fatalf("write-zeroes to a read-only volume: status %d", st)
	}
	if st := r.do(0, typeIn, 0, 512, false); st != statusOK {
		t.Fatalf("read of a read-only volume: status %d", st)
	}
	if r.dev.Features()&(1<<fRO) == 0 {
		t.Fatal("VIRTIO_BLK_F_RO not offered")
	}
}

func TestConfigSpace(t *testing.T) {
	r := newRig(t, 1<<20, 2, false, false)
	cfg, err := r.fe.GetConfig(configSize)
	if err != nil {
		t.Fatal(err)
	}
	if c := binary.LittleEndian.Uint64(cfg); c != 2048 {
		t.Errorf("capacity %d, want 2048", c)
	}
	if n := binary.LittleEndian.Uint16(cfg[34:]); n != 2 {
		t.Errorf("num_queues %d", n)
	}
	if b := binary.LittleEndian.Uint32(cfg[20:]); b != 512 {
		t.Errorf("blk_size %d", b)
	}
}

func TestTokenBucket(t *testing.T) {
	now := time.Unix(0, 0)
	var slept time.Duration
	tb := NewTokenBucket(100, 0)
	tb.now = func() time.Time { return now }
	tb.sleep = func(d time.Duration, _ <-chan struct{}) time.Duration { slept += d; now = now.Add(d); return d }
	tb.last = now
	tb.ops = tb.opsBurst
	for i := 0; i < 110; i++ {
		tb.Wait(1, 4096, nil)
	}
	// 110 ops at 100/s with a burst of 10: about one second of waiting.
	if slept < 900*time.Millisecond || slept > 1100*time.Millisecond {
		t.Fatalf("slept %v for 110 ops at 100 IOPS", slept)
	}
}

func BenchmarkEncryptedWrite4K(b *testing.B) {
	r := newRig(b, 64<<20, 1, true, false)
	rand.Read(r.data[:4096])
	b.SetBytes(4096)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r.do(0, typeOut, uint64(i%16000)*8, 4096, true)
	}
}

// TestUnalignedSegments sends data split at offsets that are not sector
// boundaries, which takes the bounce-buffer path, and reads it back whole.
func TestUnalignedSegments(t *testing.T) {
	for _, encrypted := range []bool{false, true} {
		r := newRig(t, 1<<20, 1, encrypted, false)
		plain := make([]byte, 1024)
		rand.Read(plain)
		copy(r.data, plain)
		r.unalignedWriteReadBack(t, plain, 0, 100, 700, 224)
	}
}

// unalignedWriteReadBack writes want to sector 40 from r.data[off:] cut
// into segments of the given lengths, then reads it back whole.
func (r *rig) unalignedWriteReadBack(t *testing.T, want []byte, off uint64, lens ...uint32) {
	t.Helper()
	if st := r.request(0, typeOut, 40, true, off, lens...); st != statusOK {
		t.Fatalf("encrypted=%v: unaligned write status %d", r.cipher != nil, st)
	}
	clear(r.data[:off+uint64(len(want))])
	if st := r.do(0, typeIn, 40, len(want), false); st != statusOK || !bytes.Equal(r.data[:len(want)], want) {
		t.Fatalf("encrypted=%v: read back after an unaligned write differs (status %d)", r.cipher != nil, st)
	}
}

// TestDirectIO: with a backing file opened O_DIRECT, aligned and
// unaligned guest segments, plaintext and encrypted, all reach the disk
// and come back intact.
func TestDirectIO(t *testing.T) {
	for _, encrypted := range []bool{false, true} {
		r := newRigFlags(t, 1<<20, 1, encrypted, false, unix.O_DIRECT)
		if !r.dev.direct || r.dev.IOPath() != "direct" {
			t.Fatal("the device did not notice O_DIRECT")
		}
		// Whole, aligned transfers.
		plain := make([]byte, 64<<10)
		rand.Read(plain)
		copy(r.data, plain)
		if st := r.do(0, typeOut, 16, len(plain), true); st != statusOK {
			t.Fatalf("encrypted=%v: aligned write status %d", encrypted, st)
		}
		clear(r.data[:len(plain)])
		if st := r.do(0, typeIn, 16, len(plain), false); st != statusOK || !bytes.Equal(r.data[:len(plain)], plain) {
			t.Fatalf("encrypted=%v: aligned read back differs (status %d)", encrypted, st)
		}
		onDisk := make([]byte, len(plain))
		if _, err := r.file.ReadAt(onDisk, 16*SectorSize); err == nil {
			if got := bytes.Equal(onDisk, plain); got == encrypted {
				t.Fatalf("encrypted=%v: the file holds plaintext = %v", encrypted, got)
			}
		}
		// Segments at odd addresses and lengths go through the bounce
		// buffer.
		part := make([]byte, 1024)
		rand.Read(part)
		copy(r.data[3:], part)
		r.unalignedWriteReadBack(t, part, 3, 100, 924)
		// A transfer that is not whole sectors is refused.
		if st := r.do(0, typeIn, 40, 1000, false); st != statusIOErr {
			t.Fatalf("encrypted=%v: a 1000-byte read got status %d", encrypted, st)
		}
	}
}

// TestMalformedChain: a request whose data descriptor points outside guest
// memory is answered with an error status, the card keeps serving, and a
// later good request on the same queue works.
func TestMalformedChain(t *testing.T) {
	r := newRig(t, 1<<20, 1, true, false)
	binary.LittleEndian.PutUint32(r.hdr, typeIn)
	binary.LittleEndian.PutUint64(r.hdr[8:], 0)
	r.st[0] = 0xff
	dq := r.fe.Queues[0]
	for _, bad := range []vhostuser.Buf{
		{Addr: 1 << 40, Len: 4096, Write: true},                     // outside guest memory
		{Addr: uint64(len(r.fe.Mem)) - 100, Len: 4096, Write: true}, // runs off the end
		{Addr: ^uint64(0) - 10, Len: 4096, Write: true},             // address + length overflows
	} {
		r.st[0] = 0xff
		if _, err := dq.Add([]vhostuser.Buf{{Addr: r.hdrGPA, Len: 16}, bad, {Addr: r.stGPA, Len: 1, Write: true}}); err != nil {
			t.Fatal(err)
		}
		dq.Kick()
		deadline := time.Now().Add(5 * time.Second)
		for len(dq.Reap(nil)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("malformed chain %+v never completed", bad)
			}
			dq.Wait(50 * time.Millisecond)
		}
		if r.st[0] == statusOK {
			t.Fatalf("malformed chain %+v answered OK", bad)
		}
	}
	if st := r.do(0, typeIn, 0, 4096, false); st != statusOK {
		t.Fatalf("good request after malformed ones: status %d", st)
	}
	if got := r.dev.Metrics.ops[opInvalid].Load(); got != 3 {
		t.Fatalf("invalid requests counted: %d, want 3", got)
	}
}

// TestHandleAllocs: serving a read or a write allocates nothing, encrypted
// or not.
func TestHandleAllocs(t *testing.T) {
	for _, encrypted := range []bool{false, true} {
		r := newRig(t, 1<<20, 1, encrypted, false)
		hdr := make([]byte, 16)
		data := make([]byte, 4096)
		st := make([]byte, 1)
		for _, typ := range []uint32{typeIn, typeOut} {
			binary.LittleEndian.PutUint32(hdr, typ)
			binary.LittleEndian.PutUint64(hdr[8:], 64)
			c := &virtio.Chain{Readable: [][]byte{hdr}, Writable: [][]byte{data, st}}
			if typ == typeOut {
				c = &virtio.Chain{Readable: [][]byte{hdr, data}, Writable: [][]byte{st}}
			}
			if n := testing.AllocsPerRun(200, func() { r.dev.Handle(0, c, nil) }); n != 0 {
				t.Errorf("encrypted=%v type=%d: %.1f allocations per request", encrypted, typ, n)
			}
			if st[0] != statusOK {
				t.Fatalf("status %d", st[0])
			}
		}
	}
}

// TestMappedFile: on the page cache the device maps the backing file and
// moves whole sectors through the mapping: reads always, writes when their
// pages are in the page cache (others go through pwrite). What it writes
// there is what a read of the file sees, and what is written to the file
// with pwrite is what it reads back. A transfer that faults on the mapping
// (the file shrank under it) fails with an error while the card goes on.
func TestMappedFile(t *testing.T) {
	for _, encrypted := range []bool{false, true} {
		r := newRig(t, 1<<20, 1, encrypted, false)
		if r.dev.mapped == nil || r.dev.IOPath() != "mapped" {
			t.Fatalf("the page-cache device did not map its file (io path %s)", r.dev.IOPath())
		}
		mappedOps := func() uint64 { return r.dev.queues[0].mappedOps.Load() }
		stored := func(plain []byte, sector uint64) []byte {
			if !encrypted {
				return plain
			}
			ct := make([]byte, len(plain))
			if err := r.cipher.EncryptSectors(ct, plain, sector, SectorSize); err != nil {
				t.Fatal(err)
			}
			return ct
		}
		plain := make([]byte, 256<<10)
		rand.Read(plain)
		copy(r.data, plain)
		// Nothing is cached yet: the first write goes through pwrite.
		if st := r.do(0, typeOut, 8, len(plain), true); st != statusOK || mappedOps() != 0 {
			t.Fatalf("encrypted=%v: write to uncached pages: status %d, %d through the mapping", encrypted, st, mappedOps())
		}
		// Now its pages are cached: the next one goes through the mapping.
		rand.Read(plain)
		copy(r.data, plain)
		if st := r.do(0, typeOut, 8, len(plain), true); st != statusOK || mappedOps() != 1 {
			t.Fatalf("encrypted=%v: write to cached pages: status %d, %d through the mapping", encrypted, st, mappedOps())
		}
		onDisk := make([]byte, len(plain))
		if _, err := r.file.ReadAt(onDisk, 8*SectorSize); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(onDisk, stored(plain, 8)) {
			t.Fatalf("encrypted=%v: pread of the file does not see the write made through the mapping", encrypted)
		}
		rand.Read(plain)
		if _, err := r.file.WriteAt(stored(plain, 8), 8*SectorSize); err != nil {
			t.Fatal(err)
		}
		clear(r.data[:len(plain)])
		if st := r.do(0, typeIn, 8, len(plain), false); st != statusOK || mappedOps() != 2 || !bytes.Equal(r.data[:len(plain)], plain) {
			t.Fatalf("encrypted=%v: a read through the mapping does not see a pwrite to the file (status %d, %d through the mapping)", encrypted, st, mappedOps())
		}

		if err := r.file.Truncate(512 << 10); err != nil {
			t.Fatal(err)
		}
		beyond := uint64(768 << 10 / SectorSize)
		// A read past the end of the shrunk file faults on the mapping.
		if st := r.do(0, typeIn, beyond, 64<<10, false); st != statusIOErr {
			t.Fatalf("encrypted=%v: a read past the shrunk file got status %d", encrypted, st)
		}
		// So does a write that reaches the mapping there (the file shrank
		// between the residency check and the access); a request would
		// find the pages not cached and pwrite them.
		iov := [][]byte{r.data[:64<<10]}
		for _, write := range []bool{false, true} {
			if err := r.dev.mappedIO(iov, beyond, 64<<10, write); !errors.Is(err, errFault) {
				t.Fatalf("encrypted=%v write=%v: a transfer through the mapping past the end of the file returned %v", encrypted, write, err)
			}
		}
		if st := r.do(0, typeIn, 8, len(plain), false); st != statusOK || !bytes.Equal(r.data[:len(plain)], plain) {
			t.Fatalf("encrypted=%v: after the faults, a read inside the file failed (status %d)", encrypted, st)
		}
	}
}

// TestMappedFileDiskFull: a write into holes the filesystem has no room
// for fails with an error status (pwrite's ENOSPC, or SIGBUS had it gone
// through the mapping), and what was written before still reads back,
// through the mapping. The file lives on a 256 KiB tmpfs.
func TestMappedFileDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	for _, encrypted := range []bool{false, true} {
		dir := t.TempDir()
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
			t.Skipf("mount tmpfs: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
		r := newRigIn(t, dir, 4<<20, 1, encrypted, false, 0)
		if r.dev.IOPath() != "mapped" {
			t.Fatalf("io path %s", r.dev.IOPath())
		}
		plain := make([]byte, 64<<10)
		rand.Read(plain)
		copy(r.data, plain)
		if st := r.do(0, typeOut, 0, len(plain), true); st != statusOK {
			t.Fatalf("encrypted=%v: a write that fits got status %d", encrypted, st)
		}
		if st := r.do(0, typeOut, 1<<20/SectorSize, 1<<20, true); st != statusIOErr {
			t.Fatalf("encrypted=%v: a 1 MiB write on a full 256 KiB filesystem got status %d", encrypted, st)
		}
		clear(r.data[:len(plain)])
		if st := r.do(0, typeIn, 0, len(plain), false); st != statusOK || !bytes.Equal(r.data[:len(plain)], plain) || r.dev.queues[0].mappedOps.Load() == 0 {
			t.Fatalf("encrypted=%v: after the failed write, the earlier data did not read back through the mapping (status %d)", encrypted, st)
		}
	}
}
