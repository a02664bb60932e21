package virtiommio

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/vhostuser"
	"github.com/azote/azote/internal/virtio"
)

// echoDevice answers each chain with its readable bytes reversed.
type echoDevice struct{}

func (echoDevice) Features() uint64 { return 0 }
func (echoDevice) NumQueues() int   { return 1 }
func (echoDevice) Config() []byte   { return []byte{9, 8, 7, 6} }
func (echoDevice) Handle(q int, c *virtio.Chain, err error) uint32 {
	if err != nil || len(c.Readable) == 0 || len(c.Writable) == 0 {
		return 0
	}
	in, out := c.Readable[0], c.Writable[0]
	n := min(len(in), len(out))
	for i := range n {
		out[i] = in[len(in)-1-i]
	}
	return uint32(n)
}

// TestCardThroughTheTransport: a guest driver's register writes bring a
// card's device up, and a request goes to the card and back, with the
// notification taking the user-space path (as before an ioeventfd).
func TestCardThroughTheTransport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "card.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	be := vhostuser.NewBackend(echoDevice{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer be.Close()
		defer l.Close()
		c, err := l.AcceptUnix()
		if err != nil {
			return
		}
		be.Serve(c)
	}()
	defer func() { <-done }()

	const size = 1 << 20
	fd, err := unix.MemfdCreate("guest", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	unix.Ftruncate(fd, size)
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	ua := uint64(uintptr(unsafe.Pointer(&mem[0])))
	dev, err := vhostuser.OpenVMMDevice(path, []vhostuser.GuestRegion{{FD: fd, Size: size, UserAddr: ua}}, ^uint64(0))
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	kick, _ := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	call, _ := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	defer unix.Close(kick)
	defer unix.Close(call)
	card, err := NewCard(dev, 2, []int{kick}, call)
	if err != nil {
		t.Fatal(err)
	}
	tr := New(card, Options{Notify: card.Kick})
	var cfg [4]byte
	tr.Read(RegConfig, cfg[:])
	if cfg != [4]byte{9, 8, 7, 6} {
		t.Fatalf("config %v", cfg)
	}
	// The driver's steps, as in probe, with the ring at 0x10000.
	wr(tr, RegStatus, StatusAcknowledge|StatusDriver)
	wr(tr, RegDriverFeaturesSel, 1)
	wr(tr, RegDriverFeatures, 1) // VERSION_1
	wr(tr, RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
	wr(tr, RegQueueSel, 0)
	wr(tr, RegQueueNum, 8)
	wr(tr, RegQueueDescLow, 0x10000)
	wr(tr, RegQueueDriverLow, 0x11000)
	wr(tr, RegQueueDeviceLow, 0x12000)
	wr(tr, RegQueueReady, 1)
	wr(tr, RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
	if st := rd(tr, RegStatus); st&StatusDriverOK == 0 || st&StatusDeviceNeedsReset != 0 {
		t.Fatalf("status %#x", st)
	}
	copy(mem[0x20000:], "abc")
	d := mem[0x10000:]
	binary.LittleEndian.PutUint64(d, 0x20000)
	binary.LittleEndian.PutUint32(d[8:], 3)
	binary.LittleEndian.PutUint16(d[12:], 1)
	binary.LittleEndian.PutUint16(d[14:], 1)
	binary.LittleEndian.PutUint64(d[16:], 0x21000)
	binary.LittleEndian.PutUint32(d[24:], 16)
	binary.LittleEndian.PutUint16(d[28:], 2)
	binary.LittleEndian.PutUint16(mem[0x11004:], 0)
	binary.LittleEndian.PutUint16(mem[0x11002:], 1)
	wr(tr, RegQueueNotify, 0)
	deadline := time.Now().Add(5 * time.Second)
	for binary.LittleEndian.Uint16(mem[0x12002:]) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the card did not answer")
		}
		time.Sleep(time.Millisecond)
	}
	if got := string(mem[0x21000:0x21003]); got != "cba" {
		t.Fatalf("the card wrote %q", got)
	}
	wr(tr, RegStatus, 0)
	if tr.Active() {
		t.Fatal("still active after a reset")
	}
}
