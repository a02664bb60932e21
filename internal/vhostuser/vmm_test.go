package vhostuser

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/virtio"
)

// upperDevice copies each chain's readable bytes, upper-cased, into its
// writable ones; its configuration space is 8 recognisable bytes.
type upperDevice struct{}

func (upperDevice) Features() uint64 { return 1 << 5 }
func (upperDevice) NumQueues() int   { return 2 }
func (upperDevice) Config() []byte   { return []byte("azotecfg") }
func (upperDevice) Handle(q int, c *virtio.Chain, err error) uint32 {
	if err != nil || len(c.Readable) == 0 || len(c.Writable) == 0 {
		return 0
	}
	in, out := c.Readable[0], c.Writable[0]
	n := copy(out, in)
	for i := range out[:n] {
		if out[i] >= 'a' && out[i] <= 'z' {
			out[i] -= 'a' - 'A'
		}
	}
	return uint32(n)
}

// TestVMMDevice drives a card the way azote-hv does: guest memory at a
// guest address that is not its offset in this process, rings placed by a
// "driver" (this test, writing the split ring by hand), the eventfds a
// VMM would register with KVM, and no frontend-owned memory.
func TestVMMDevice(t *testing.T) {
	const gpaBase, size = 0x100000, 1 << 20
	fd, err := unix.MemfdCreate("guest", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Ftruncate(fd, size); err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	regions := []GuestRegion{{FD: fd, GuestAddr: gpaBase, Size: size, UserAddr: addrOf(mem)}}
	d, err := OpenVMMDevice(serveOnce(t, upperDevice{}), regions, ^uint64(0)&^(1<<virtio.FRingEventIdx))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Features()&(1<<5) == 0 || d.Features()&(1<<virtio.FVersion1) == 0 || d.Features()&(1<<FProtocolFeatures) != 0 {
		t.Fatalf("features %#x: want bit 5 and VERSION_1, never PROTOCOL_FEATURES", d.Features())
	}
	if d.Queues() != 2 {
		t.Fatalf("%d queues, want 2", d.Queues())
	}
	cfg, err := d.Config(8)
	if err != nil || string(cfg) != "azotecfg" {
		t.Fatalf("config %q, %v", cfg, err)
	}
	if err := d.Start(1<<62, nil); err == nil {
		t.Fatal("a feature the device did not offer was accepted")
	}

	// One ring of 4 in guest memory: descriptors at +0, available at
	// +0x100, used at +0x200, buffers at +0x1000 and +0x2000.
	const qsize = 4
	desc, avail, used := uint64(gpaBase), uint64(gpaBase+0x100), uint64(gpaBase+0x200)
	at := func(gpa uint64) []byte { return mem[gpa-gpaBase:] }
	copy(at(gpaBase+0x1000), "hello, card")
	binary.LittleEndian.PutUint64(at(desc), gpaBase+0x1000)
	binary.LittleEndian.PutUint32(at(desc+8), 11)
	binary.LittleEndian.PutUint16(at(desc+12), 1) // NEXT
	binary.LittleEndian.PutUint16(at(desc+14), 1)
	binary.LittleEndian.PutUint64(at(desc+16), gpaBase+0x2000)
	binary.LittleEndian.PutUint32(at(desc+24), 64)
	binary.LittleEndian.PutUint16(at(desc+28), 2) // WRITE
	binary.LittleEndian.PutUint16(at(avail+4), 0) // ring[0] = head 0
	binary.LittleEndian.PutUint16(at(avail+2), 1) // idx

	kick, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(kick)
	call, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(call)
	bad := DeviceRing{Index: 0, Size: qsize, Desc: 0x10, Driver: avail, Used: used, Kick: kick, Call: call}
	if err := d.Start(d.Features(), []DeviceRing{bad}); !errors.Is(err, ErrNoRegion) {
		t.Fatalf("a ring outside guest memory: %v, want ErrNoRegion", err)
	}
	rings := []DeviceRing{
		{Index: 0, Size: qsize, Desc: desc, Driver: avail, Used: used, Kick: kick, Call: call},
		{Index: 1, Disabled: true},
	}
	if err := d.Start(d.Features(), rings); err != nil {
		t.Fatal(err)
	}
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	unix.Write(kick, one[:])
	deadline := time.Now().Add(5 * time.Second)
	for binary.LittleEndian.Uint16(at(used+2)) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the card did not complete the chain")
		}
		time.Sleep(time.Millisecond)
	}
	if id, n := binary.LittleEndian.Uint32(at(used+4)), binary.LittleEndian.Uint32(at(used+8)); id != 0 || n != 11 {
		t.Fatalf("used element {%d, %d}, want {0, 11}", id, n)
	}
	if got := string(at(gpaBase + 0x2000)[:11]); got != "HELLO, CARD" {
		t.Fatalf("the card wrote %q", got)
	}
	if !callReady(call, 5*time.Second) {
		t.Fatal("the card did not signal the call eventfd")
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
}
