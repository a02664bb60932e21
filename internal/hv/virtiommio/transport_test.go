package virtiommio

import (
	"encoding/binary"
	"errors"
	"testing"
)

// fakeBackend records what the transport asks of it.
type fakeBackend struct {
	features    uint64
	queues      int
	config      []byte
	activateErr error

	activated [][]Ring
	accepted  uint64
	resets    int
}

func (b *fakeBackend) DeviceID() uint32 { return 2 }
func (b *fakeBackend) Features() uint64 { return b.features }
func (b *fakeBackend) NumQueues() int   { return b.queues }
func (b *fakeBackend) ReadConfig(off int, data []byte) {
	if off < len(b.config) {
		copy(data, b.config[off:])
	}
}
func (b *fakeBackend) Activate(features uint64, rings []Ring) error {
	if b.activateErr != nil {
		return b.activateErr
	}
	b.accepted = features
	b.activated = append(b.activated, rings)
	return nil
}
func (b *fakeBackend) Reset() error { b.resets++; return nil }

func rd(t *Transport, off uint64) uint32 {
	var b [4]byte
	t.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func wr(t *Transport, off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	t.Write(off, b[:])
}

// probe does what Linux's virtio_mmio driver and virtio core do to bring
// a device up with nq rings of size n, accepting features.
func probe(t *testing.T, tr *Transport, features uint64, nq int, n uint32) uint32 {
	t.Helper()
	if rd(tr, RegMagic) != 0x74726976 || rd(tr, RegVersion) != 2 || rd(tr, RegDeviceID) != 2 {
		t.Fatalf("magic %#x version %d device %d", rd(tr, RegMagic), rd(tr, RegVersion), rd(tr, RegDeviceID))
	}
	wr(tr, RegStatus, 0)
	wr(tr, RegStatus, StatusAcknowledge)
	wr(tr, RegStatus, StatusAcknowledge|StatusDriver)
	for sel := uint32(0); sel < 2; sel++ {
		wr(tr, RegDriverFeaturesSel, sel)
		wr(tr, RegDriverFeatures, uint32(features>>(32*sel)))
	}
	wr(tr, RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK)
	if rd(tr, RegStatus)&StatusFeaturesOK == 0 {
		return rd(tr, RegStatus)
	}
	for q := 0; q < nq; q++ {
		wr(tr, RegQueueSel, uint32(q))
		if rd(tr, RegQueueReady) != 0 || rd(tr, RegQueueNumMax) < n {
			t.Fatalf("queue %d: ready %d max %d", q, rd(tr, RegQueueReady), rd(tr, RegQueueNumMax))
		}
		wr(tr, RegQueueNum, n)
		base := uint64(0x1_0000_0000) + uint64(q)*0x10000
		wr(tr, RegQueueDescLow, uint32(base))
		wr(tr, RegQueueDescHigh, uint32(base>>32))
		wr(tr, RegQueueDriverLow, uint32(base+0x1000))
		wr(tr, RegQueueDriverHigh, uint32((base+0x1000)>>32))
		wr(tr, RegQueueDeviceLow, uint32(base+0x2000))
		wr(tr, RegQueueDeviceHigh, uint32((base+0x2000)>>32))
		wr(tr, RegQueueReady, 1)
	}
	wr(tr, RegStatus, StatusAcknowledge|StatusDriver|StatusFeaturesOK|StatusDriverOK)
	return rd(tr, RegStatus)
}

func TestProbeActivatesWithTheDriversRings(t *testing.T) {
	b := &fakeBackend{features: 1<<32 | 1<<6 | 1<<1, queues: 2, config: []byte{0x00, 0x10, 0, 0, 0, 0, 0, 0}}
	var fails []error
	tr := New(b, Options{Fail: func(err error) { fails = append(fails, err) }})
	if got := rd(tr, RegDeviceFeatures); got != 1<<6|1<<1 {
		t.Fatalf("features word 0 = %#x", got)
	}
	wr(tr, RegDeviceFeaturesSel, 1)
	if got := rd(tr, RegDeviceFeatures); got != 1 {
		t.Fatalf("features word 1 = %#x", got)
	}
	var cfg [8]byte
	tr.Read(RegConfig, cfg[:])
	if binary.LittleEndian.Uint64(cfg[:]) != 0x1000 {
		t.Fatalf("config %x", cfg)
	}
	if rd(tr, RegInterruptStatus) != 0 {
		t.Fatal("an interrupt is reported before the device started")
	}
	st := probe(t, tr, 1<<32|1<<6, 2, 128)
	if st&StatusDriverOK == 0 || st&StatusDeviceNeedsReset != 0 || len(fails) != 0 {
		t.Fatalf("status %#x, failures %v", st, fails)
	}
	if len(b.activated) != 1 || b.accepted != 1<<32|1<<6 {
		t.Fatalf("activations %d with features %#x", len(b.activated), b.accepted)
	}
	r := b.activated[0]
	want := Ring{Index: 1, Size: 128, Desc: 0x1_0001_0000, Driver: 0x1_0001_1000, Device: 0x1_0001_2000, Ready: true}
	if len(r) != 2 || r[1] != want {
		t.Fatalf("rings %+v, want ring 1 %+v", r, want)
	}
	if !tr.Active() || rd(tr, RegInterruptStatus)&IntVring == 0 {
		t.Fatal("a started device must report its rings in the interrupt status")
	}
	// Rings cannot move under a started device.
	wr(tr, RegQueueSel, 0)
	wr(tr, RegQueueDescLow, 0xdead000)
	wr(tr, RegQueueReady, 0)
	if rd(tr, RegQueueReady) != 1 {
		t.Fatal("a started ring was unreadied")
	}
	wr(tr, RegStatus, 0)
	if b.resets != 1 || tr.Active() || rd(tr, RegStatus) != 0 {
		t.Fatalf("reset: %d backend resets, active %v, status %#x", b.resets, tr.Active(), rd(tr, RegStatus))
	}
	wr(tr, RegQueueSel, 0)
	if rd(tr, RegQueueReady) != 0 {
		t.Fatal("a reset left ring 0 ready")
	}
	// And it comes up again after the reset, as on a guest reboot.
	if st := probe(t, tr, 1<<32, 1, 64); st&StatusDriverOK == 0 || len(b.activated) != 2 || b.activated[1][1].Ready {
		t.Fatalf("second probe: status %#x, %d activations", st, len(b.activated))
	}
}

func TestFeaturesNotOfferedRefused(t *testing.T) {
	b := &fakeBackend{features: 1<<32 | 1<<6, queues: 1}
	tr := New(b, Options{})
	if st := probe(t, tr, 1<<32|1<<7, 1, 64); st&StatusFeaturesOK != 0 {
		t.Fatalf("a feature the device did not offer: status %#x", st)
	}
	tr = New(b, Options{})
	if st := probe(t, tr, 1<<6, 1, 64); st&StatusFeaturesOK != 0 {
		t.Fatalf("a driver without VERSION_1: status %#x", st)
	}
	if len(b.activated) != 0 {
		t.Fatal("the device was started")
	}
}

func TestActivationFailureNeedsReset(t *testing.T) {
	b := &fakeBackend{features: 1 << 32, queues: 1, activateErr: errors.New("card gone")}
	var raised int
	var fails []error
	tr := New(b, Options{Interrupt: func() { raised++ }, Fail: func(err error) { fails = append(fails, err) }})
	st := probe(t, tr, 1<<32, 1, 64)
	if st&StatusDeviceNeedsReset == 0 || raised != 1 || len(fails) != 1 || tr.Active() {
		t.Fatalf("status %#x, %d interrupts, failures %v", st, raised, fails)
	}
	if rd(tr, RegInterruptStatus) != IntConfig {
		t.Fatalf("interrupt status %#x, want the configuration bit", rd(tr, RegInterruptStatus))
	}
	wr(tr, RegInterruptACK, IntConfig)
	if rd(tr, RegInterruptStatus) != 0 {
		t.Fatal("the acknowledged interrupt is still pending")
	}
}

func TestHostileAccesses(t *testing.T) {
	b := &fakeBackend{features: 1 << 32, queues: 1}
	var notified []int
	tr := New(b, Options{Notify: func(q int) { notified = append(notified, q) }})
	var two [2]byte
	tr.Read(RegMagic, two[:])
	if two != [2]byte{} {
		t.Fatal("a 16-bit register read answered")
	}
	var four [4]byte
	tr.Read(RegMagic+1, four[:])
	if four != [4]byte{} {
		t.Fatal("an unaligned register read answered")
	}
	wr(tr, RegQueueSel, 7)
	if rd(tr, RegQueueNumMax) != 0 {
		t.Fatal("a queue that does not exist has a size")
	}
	wr(tr, RegQueueNum, 64)
	wr(tr, RegQueueReady, 1)
	wr(tr, RegQueueSel, 0)
	for _, n := range []uint32{0, 3, 100, 512, 1 << 31} {
		wr(tr, RegQueueNum, n)
	}
	wr(tr, RegQueueReady, 1)
	if rd(tr, RegQueueReady) != 0 {
		t.Fatal("a ring without a valid size became ready")
	}
	wr(tr, RegQueueNotify, 0)
	wr(tr, RegQueueNotify, 5)
	if len(notified) != 1 || notified[0] != 0 {
		t.Fatalf("notifications %v, want [0]", notified)
	}
	var big [8]byte
	tr.Read(Size-4, big[:]) // config read running past the window
	tr.Read(^uint64(0)-2, big[:])
	wr(tr, RegStatus, StatusAcknowledge)
	wr(tr, RegStatus, StatusDriver) // drops a bit: ignored
	if rd(tr, RegStatus) != StatusAcknowledge {
		t.Fatalf("status %#x after a write that cleared a bit", rd(tr, RegStatus))
	}
}

// FuzzTransport: any sequence of guest accesses leaves the transport
// without a panic, and a started device's rings are the ones the backend
// was given.
func FuzzTransport(f *testing.F) {
	f.Add([]byte{0x70, 0, 1, 0, 0, 0, 0x70, 0, 3, 0, 0, 0})
	f.Add([]byte{0x30, 0, 0, 0, 0, 0, 0x38, 0, 64, 0, 0, 0, 0x44, 0, 1, 0, 0, 0, 0x70, 0, 15, 0, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		b := &fakeBackend{features: 1<<32 | 1<<6, queues: 2, config: []byte{1, 2, 3}}
		tr := New(b, Options{Notify: func(int) {}, Interrupt: func() {}, Fail: func(error) {}})
		for len(ops) >= 6 {
			off := uint64(binary.LittleEndian.Uint16(ops)) & 0x1fff
			size := 1 << (ops[2] & 3)
			var data [8]byte
			copy(data[:], ops[2:6])
			if ops[0]&1 == 0 {
				tr.Write(off, data[:size])
			} else {
				tr.Read(off, data[:size])
			}
			ops = ops[6:]
		}
		for _, rings := range b.activated {
			for _, r := range rings {
				if r.Ready && (r.Size == 0 || r.Size > MaxQueueSize || r.Size&(r.Size-1) != 0) {
					t.Fatalf("ring %+v handed to the backend", r)
				}
			}
		}
	})
}
