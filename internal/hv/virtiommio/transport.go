package virtiommio

import (
	"encoding/binary"
	"sync"
)

// Register offsets of the version 2 (modern) layout, virtio 1.2 §4.2.2.
const (
	RegMagic             = 0x000
	RegVersion           = 0x004
	RegDeviceID          = 0x008
	RegVendorID          = 0x00c
	RegDeviceFeatures    = 0x010
	RegDeviceFeaturesSel = 0x014
	RegDriverFeatures    = 0x020
	RegDriverFeaturesSel = 0x024
	RegQueueSel          = 0x030
	RegQueueNumMax       = 0x034
	RegQueueNum          = 0x038
	RegQueueReady        = 0x044
	RegQueueNotify       = 0x050
	RegInterruptStatus   = 0x060
	RegInterruptACK      = 0x064
	RegStatus            = 0x070
	RegQueueDescLow      = 0x080
	RegQueueDescHigh     = 0x084
	RegQueueDriverLow    = 0x090
	RegQueueDriverHigh   = 0x094
	RegQueueDeviceLow    = 0x0a0
	RegQueueDeviceHigh   = 0x0a4
	RegSHMSel            = 0x0ac
	RegSHMLenLow         = 0x0b0
	RegSHMLenHigh        = 0x0b4
	RegSHMBaseLow        = 0x0b8
	RegSHMBaseHigh       = 0x0bc
	RegConfigGeneration  = 0x0fc
	RegConfig            = 0x100

	// Size is the MMIO window of one device: registers and 3.75 KiB of
	// configuration space, one page.
	Size = 0x1000

	magic    = 0x74726976 // "virt"
	version  = 2
	vendorID = 0x415a4f54 // "TOZA": azote's, not a registered PCI vendor

	// Interrupt status bits.
	IntVring  = 1 << 0
	IntConfig = 1 << 1

	// Device status bits, virtio 1.2 §2.1.
	StatusAcknowledge      = 1
	StatusDriver           = 2
	StatusDriverOK         = 4
	StatusFeaturesOK       = 8
	StatusDeviceNeedsReset = 64
	StatusFailed           = 128

	// featureVersion1 is VIRTIO_F_VERSION_1: the modern layout requires it.
	featureVersion1 = 32

	// MaxQueueSize is the largest ring the transport offers.
	MaxQueueSize = 256
)

// Ring is one queue as the driver set it up, in guest physical addresses.
type Ring struct {
	Index                int
	Size                 uint16
	Desc, Driver, Device uint64
	Ready                bool
}

// Backend is the device behind the transport.
type Backend interface {
	// DeviceID is the virtio device type (1 net, 2 blk).
	DeviceID() uint32
	// Features are the device's feature bits, VERSION_1 included.
	Features() uint64
	// NumQueues is the number of queues the driver may set up.
	NumQueues() int
	// ReadConfig fills data from the configuration space at off; bytes
	// past its end read as zero.
	ReadConfig(off int, data []byte)
	// Activate starts the device with the features the driver accepted
	// and its rings (DRIVER_OK).
	Activate(features uint64, rings []Ring) error
	// Reset stops a started device (the driver wrote status 0).
	Reset() error
}

// Options are the transport's ways out to the VMM; each may be nil.
type Options struct {
	// Notify is called for a queue notification that reached user
	// space (no ioeventfd registered for it, or not yet).
	Notify func(queue int)
	// Interrupt raises the device's interrupt line (the VMM writes the
	// irqfd the card shares): for a configuration change, here only
	// DEVICE_NEEDS_RESET after an activation failed.
	Interrupt func()
	// Fail is told why an activation or a reset failed (the VMM logs it).
	Fail func(error)
}

// Transport is one virtio-mmio device. Its methods are called by vCPU
// threads on MMIO exits; one mutex serialises them (they are rare: the
// data path does not exit).
type Transport struct {
	backend Backend
	opts    Options

	mu             sync.Mutex
	status         uint32
	deviceFeatSel  uint32
	driverFeatSel  uint32
	driverFeatures uint64
	queueSel       uint32
	rings          []Ring
	interrupts     uint32 // IntConfig pending; IntVring is reported while active
	active         bool
}

// New returns the transport of backend.
func New(backend Backend, opts Options) *Transport {
	t := &Transport{backend: backend, opts: opts}
	t.rings = make([]Ring, backend.NumQueues())
	t.resetLocked()
	return t
}

func (t *Transport) resetLocked() {
	t.status, t.deviceFeatSel, t.driverFeatSel, t.driverFeatures, t.queueSel, t.interrupts = 0, 0, 0, 0, 0, 0
	for i := range t.rings {
		t.rings[i] = Ring{Index: i}
	}
}

// Read serves a guest read of len(data) bytes at offset off.
func (t *Transport) Read(off uint64, data []byte) {
	clear(data)
	if off >= RegConfig {
		if off-RegConfig < Size-RegConfig {
			t.backend.ReadConfig(int(off-RegConfig), data)
		}
		return
	}
	if len(data) != 4 || off%4 != 0 {
		return // the registers are 32-bit only (§4.2.2.2)
	}
	t.mu.Lock()
	v := t.readLocked(off)
	t.mu.Unlock()
	binary.LittleEndian.PutUint32(data, v)
}

func (t *Transport) readLocked(off uint64) uint32 {
	q := t.selectedLocked()
	switch off {
	case RegMagic:
		return magic
	case RegVersion:
		return version
	case RegDeviceID:
		return t.backend.DeviceID()
	case RegVendorID:
		return vendorID
	case RegDeviceFeatures:
		if t.deviceFeatSel > 1 {
			return 0
		}
		return uint32(t.backend.Features() >> (32 * t.deviceFeatSel))
	case RegQueueNumMax:
		if q == nil {
			return 0
		}
		return MaxQueueSize
	case RegQueueReady:
		if q != nil && q.Ready {
			return 1
		}
		return 0
	case RegInterruptStatus:
		// The card raises the interrupt through the irqfd without
		// telling the transport, so a started device always says its
		// rings may have news; the driver then looks at each used ring.
		v := t.interrupts
		if t.active {
			v |= IntVring
		}
		return v
	case RegStatus:
		return t.status
	case RegSHMLenLow, RegSHMLenHigh:
		return ^uint32(0) // no shared memory regions (§4.2.2)
	case RegConfigGeneration:
		return 0 // the configuration never changes under the driver
	}
	return 0
}

// selectedLocked is the ring QueueSel names, nil when it names none.
func (t *Transport) selectedLocked() *Ring {
	if int64(t.queueSel) >= int64(len(t.rings)) {
		return nil
	}
	return &t.rings[t.queueSel]
}

// Write serves a guest write of data at offset off.
func (t *Transport) Write(off uint64, data []byte) {
	if off >= RegConfig {
		return // configuration space is read-only for blk and net here
	}
	if len(data) != 4 || off%4 != 0 {
		return
	}
	v := binary.LittleEndian.Uint32(data)
	if off == RegQueueNotify {
		// No lock: notifications that reach user space are forwarded
		// as they are; a started device has them by ioeventfd.
		if t.opts.Notify != nil && int64(v) < int64(len(t.rings)) {
			t.opts.Notify(int(v))
		}
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.selectedLocked()
	// Ring registers may change only while the ring is not ready and
	// the device not started (§4.2.3.2).
	setupOK := q != nil && !q.Ready && !t.active
	switch off {
	case RegDeviceFeaturesSel:
		t.deviceFeatSel = v
	case RegDriverFeaturesSel:
		t.driverFeatSel = v
	case RegDriverFeatures:
		if t.driverFeatSel <= 1 && t.status&StatusFeaturesOK == 0 {
			shift := 32 * t.driverFeatSel
			t.driverFeatures = t.driverFeatures&^(0xffffffff<<shift) | uint64(v)<<shift
		}
	case RegQueueSel:
		t.queueSel = v
	case RegQueueNum:
		if setupOK && v != 0 && v <= MaxQueueSize && v&(v-1) == 0 {
			q.Size = uint16(v)
		}
	case RegQueueReady:
		if q != nil && !t.active {
			q.Ready = v == 1 && q.Size != 0
		}
	case RegQueueDescLow:
		if setupOK {
			q.Desc = q.Desc&^0xffffffff | uint64(v)
		}
	case RegQueueDescHigh:
		if setupOK {
			q.Desc = q.Desc&0xffffffff | uint64(v)<<32
		}
	case RegQueueDriverLow:
		if setupOK {
			q.Driver = q.Driver&^0xffffffff | uint64(v)
		}
	case RegQueueDriverHigh:
		if setupOK {
			q.Driver = q.Driver&0xffffffff | uint64(v)<<32
		}
	case RegQueueDeviceLow:
		if setupOK {
			q.Device = q.Device&^0xffffffff | uint64(v)
		}
	case RegQueueDeviceHigh:
		if setupOK {
			q.Device = q.Device&0xffffffff | uint64(v)<<32
		}
	case RegInterruptACK:
		t.interrupts &^= v
	case RegStatus:
		t.setStatusLocked(v)
	}
}

// setStatusLocked follows the driver through the status bits (§3.1.1).
func (t *Transport) setStatusLocked(v uint32) {
	if v == 0 {
		if t.active {
			if err := t.backend.Reset(); err != nil && t.opts.Fail != nil {
				t.opts.Fail(err)
			}
		}
		t.active = false
		t.resetLocked()
		return
	}
	if v&^0xff != 0 || v&t.status != t.status {
		return // bits are only ever added, until a reset
	}
	added := v &^ t.status
	if added&StatusFeaturesOK != 0 {
		offered := t.backend.Features()
		if t.driverFeatures&^offered != 0 || t.driverFeatures&(1<<featureVersion1) == 0 {
			v &^= StatusFeaturesOK // the driver reads it back and gives up
		}
	}
	t.status = v
	if added&StatusDriverOK != 0 && v&StatusFeaturesOK != 0 && !t.active {
		rings := append([]Ring(nil), t.rings...)
		if err := t.backend.Activate(t.driverFeatures, rings); err != nil {
			if t.opts.Fail != nil {
				t.opts.Fail(err)
			}
			t.status |= StatusDeviceNeedsReset
			t.interrupts |= IntConfig
			if t.opts.Interrupt != nil {
				t.opts.Interrupt()
			}
			return
		}
		t.active = true
	}
}

// Active tells whether the driver started the device.
func (t *Transport) Active() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.active
}
