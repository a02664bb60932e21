package virtio

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

var le = binary.LittleEndian

// bigMemory maps n bytes of sparse anonymous memory: untouched pages cost
// nothing, so a test can have more guest memory than the machine has.
func bigMemory(t *testing.T, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Skipf("cannot map %d bytes of sparse memory: %v", n, err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

// TestChainBytesLimit needs more than 4 GiB of guest memory; the region is
// a sparse anonymous mapping, see bigMemory.
func TestChainBytesLimit(t *testing.T) {
	mem := bigMemory(t, 5<<30)
	gm, err := NewGuestMemory([]Region{{GuestAddr: 0, Size: uint64(len(mem)), Data: mem}})
	if err != nil {
		t.Fatal(err)
	}
	q, err := NewQueue(gm, QueueConfig{Size: 4, DescTable: 0, AvailRing: 0x100, UsedRing: 0x200}, 0)
	if err != nil {
		t.Fatal(err)
	}
	put := func(i int, addr uint64, n uint32, flags, next uint16) {
		d := mem[16*i:]
		le.PutUint64(d, addr)
		le.PutUint32(d[8:], n)
		le.PutUint16(d[12:], flags)
		le.PutUint16(d[14:], next)
	}
	put(0, 0x1000, 1<<31, descFNext, 1)
	put(1, 0x1000, 1<<31-1, descFNext, 2) // 2^32-1 bytes so far: fine
	put(2, 0x1000, 1, 0, 0)               // one more: too long
	le.PutUint16(mem[0x104:], 0)          // avail ring[0] = head 0
	le.PutUint16(mem[0x102:], 1)          // avail idx = 1
	var c Chain
	if ok, err := q.Pop(&c); !ok || err != errTooManyBytes {
		t.Fatalf("Pop = %v, %v; want errTooManyBytes", ok, err)
	}
	if len(c.Readable) != 2 {
		t.Fatalf("%d buffers before the fault", len(c.Readable))
	}
}
