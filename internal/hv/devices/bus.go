package devices

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Device is one emulated device's register window. The bus calls it with
// the offset of the access from the window's base and the access's bytes:
// for Read the device fills all of data, for Write it consumes data. The
// bus has already checked that [offset, offset+len(data)) lies inside the
// window. Both are called concurrently from vCPU goroutines.
type Device interface {
	Read(offset uint64, data []byte)
	Write(offset uint64, data []byte)
}

// Fault says why the bus could not deliver an access.
type Fault uint8

const (
	// FaultUnmapped: no device holds the address.
	FaultUnmapped Fault = iota + 1
	// FaultStraddle: the access runs across the end of a device's window,
	// or from a hole into one. A real bus would split or mangle it; the
	// guest gets nothing, since a device would see an access it cannot
	// have been designed for.
	FaultStraddle
)

func (f Fault) String() string {
	switch f {
	case FaultUnmapped:
		return "unmapped"
	case FaultStraddle:
		return "straddle"
	}
	return fmt.Sprintf("Fault(%d)", uint8(f))
}

// FaultHandler hears of every access the bus refused. For a read, data
// already holds 0xff bytes, what an empty ISA bus or an unclaimed PCI
// read gives; the handler may leave them. It runs on the vCPU goroutine
// and must not block: the VMM counts it and, for MMIO, may stop the guest.
type FaultHandler func(f Fault, addr uint64, data []byte, write bool)

// Errors from Register.
var (
	ErrEmptyRange = errors.New("devices: empty or wrapping address range")
	ErrOverlap    = errors.New("devices: address range overlaps a registered device")
	ErrNilDevice  = errors.New("devices: nil device")
)

// mapping is one registered window, [base, end).
type mapping struct {
	base, end uint64
	dev       Device
}

// Bus routes accesses in one address space (the VMM keeps one for ports,
// one for MMIO) to the device whose window holds them.
//
// Registration is rare and happens before the guest runs; lookups happen
// on every exit of every vCPU. So the windows live in a sorted slice that
// is never modified once published: Register builds a new slice and swaps
// the pointer, and a lookup is one atomic load and a binary search, with
// no lock and no allocation.
type Bus struct {
	onFault FaultHandler

	// mu serialises Register; lookups never take it.
	mu   sync.Mutex
	maps atomic.Pointer[[]mapping]
}

// NewBus returns an empty bus that reports refused accesses to onFault
// (nil: refused silently).
func NewBus(onFault FaultHandler) *Bus {
	return &Bus{onFault: onFault}
}

// Register maps d at [base, base+size). Windows must not overlap; the
// window may not wrap past the top of the address space.
func (b *Bus) Register(base, size uint64, d Device) error {
	if d == nil {
		return ErrNilDevice
	}
	end := base + size
	if size == 0 || end < base {
		return fmt.Errorf("%w: base %#x size %#x", ErrEmptyRange, base, size)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var old []mapping
	if p := b.maps.Load(); p != nil {
		old = *p
	}
	i := upperBound(old, base) // first window starting after base
	if i > 0 && old[i-1].end > base {
		return fmt.Errorf("%w: [%#x, %#x) and [%#x, %#x)", ErrOverlap, base, end, old[i-1].base, old[i-1].end)
	}
	if i < len(old) && old[i].base < end {
		return fmt.Errorf("%w: [%#x, %#x) and [%#x, %#x)", ErrOverlap, base, end, old[i].base, old[i].end)
	}
	next := make([]mapping, 0, len(old)+1)
	next = append(next, old[:i]...)
	next = append(next, mapping{base: base, end: end, dev: d})
	next = append(next, old[i:]...)
	b.maps.Store(&next)
	return nil
}

// Read performs a guest read of len(data) bytes at addr.
func (b *Bus) Read(addr uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	m, f := b.find(addr, uint64(len(data)))
	if m == nil {
		for i := range data {
			data[i] = 0xff
		}
		if b.onFault != nil {
			b.onFault(f, addr, data, false)
		}
		return
	}
	m.dev.Read(addr-m.base, data)
}

// Write performs a guest write of data at addr.
func (b *Bus) Write(addr uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	m, f := b.find(addr, uint64(len(data)))
	if m == nil {
		if b.onFault != nil {
			b.onFault(f, addr, data, true)
		}
		return
	}
	m.dev.Write(addr-m.base, data)
}

// find returns the window that holds all of [addr, addr+n), or why none
// does. n > 0.
func (b *Bus) find(addr, n uint64) (*mapping, Fault) {
	p := b.maps.Load()
	if p == nil {
		return nil, FaultUnmapped
	}
	ms := *p
	i := upperBound(ms, addr)
	if i > 0 && addr < ms[i-1].end {
		m := &ms[i-1]
		// end-addr cannot underflow here, and comparing against it
		// instead of computing addr+n cannot overflow.
		if n <= m.end-addr {
			return m, 0
		}
		return nil, FaultStraddle
	}
	if i < len(ms) && n > ms[i].base-addr {
		return nil, FaultStraddle
	}
	return nil, FaultUnmapped
}

// upperBound is the index of the first window whose base is above addr.
// Written out rather than sort.Search so the lookup has no closure.
func upperBound(ms []mapping, addr uint64) int {
	lo, hi := 0, len(ms)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if ms[mid].base <= addr {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}
