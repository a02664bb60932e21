package virtio

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// Region is one guest memory region from vhost-user SET_MEM_TABLE.
type Region struct {
	// GuestAddr is the guest physical address of the region's first byte.
	GuestAddr uint64
	// Size is the region's length in bytes.
	Size uint64
	// UserAddr is where the frontend (QEMU) maps the region in its own
	// address space; vhost-user gives ring addresses in this space.
	UserAddr uint64
	// Data is the backend's mapping of the region: the memfd mapped at the
	// region's mmap offset. Only its first Size bytes are used.
	Data []byte
}

// GuestMemory translates guest physical addresses into host memory. It is
// immutable after NewGuestMemory, so any number of goroutines may use it.
type GuestMemory struct {
	regions []Region // sorted by GuestAddr, non-overlapping, Data cut to Size
}

// NewGuestMemory checks the regions and builds the map. It rejects an empty
// table, zero-sized regions, regions whose host mapping is shorter than
// their size, regions whose guest or user address range wraps around 2^64,
// and regions that overlap in guest physical or frontend user addresses.
func NewGuestMemory(regions []Region) (*GuestMemory, error) {
	if len(regions) == 0 {
		return nil, fmt.Errorf("%w: no memory regions", ErrInvalidConfig)
	}
	rs := make([]Region, len(regions))
	for i, r := range regions {
		switch {
		case r.Size == 0:
			return nil, fmt.Errorf("%w: region %d has size 0", ErrInvalidConfig, i)
		case uint64(len(r.Data)) < r.Size:
			return nil, fmt.Errorf("%w: region %d maps %d bytes, size is %d", ErrInvalidConfig, i, len(r.Data), r.Size)
		case r.GuestAddr > math.MaxUint64-r.Size:
			return nil, fmt.Errorf("%w: region %d guest range %#x+%#x overflows", ErrInvalidConfig, i, r.GuestAddr, r.Size)
		case r.UserAddr > math.MaxUint64-r.Size:
			return nil, fmt.Errorf("%w: region %d user range %#x+%#x overflows", ErrInvalidConfig, i, r.UserAddr, r.Size)
		}
		// The full slice expression caps Data so that no slice handed out
		// can be extended past the region.
		r.Data = r.Data[:r.Size:r.Size]
		rs[i] = r
	}
	byUser := slices.Clone(rs)
	slices.SortFunc(rs, func(a, b Region) int { return cmp.Compare(a.GuestAddr, b.GuestAddr) })
	slices.SortFunc(byUser, func(a, b Region) int { return cmp.Compare(a.UserAddr, b.UserAddr) })
	for i := 1; i < len(rs); i++ {
		if p := rs[i-1]; rs[i].GuestAddr < p.GuestAddr+p.Size {
			return nil, fmt.Errorf("%w: guest ranges %#x+%#x and %#x+%#x overlap", ErrInvalidConfig, p.GuestAddr, p.Size, rs[i].GuestAddr, rs[i].Size)
		}
		if p := byUser[i-1]; byUser[i].UserAddr < p.UserAddr+p.Size {
			return nil, fmt.Errorf("%w: user ranges %#x+%#x and %#x+%#x overlap", ErrInvalidConfig, p.UserAddr, p.Size, byUser[i].UserAddr, byUser[i].Size)
		}
	}
	return &GuestMemory{regions: rs}, nil
}

// find returns the region holding gpa, or nil. Binary search keeps it
// allocation-free and fast with vhost-user's hundreds of memory slots.
func (m *GuestMemory) find(gpa uint64) *Region {
	lo, hi := 0, len(m.regions)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if m.regions[mid].GuestAddr <= gpa {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == 0 {
		return nil
	}
	r := &m.regions[lo-1]
	if gpa-r.GuestAddr >= r.Size {
		return nil
	}
	return r
}

// slice is Slice without the error value, for the data path.
func (m *GuestMemory) slice(gpa, length uint64) ([]byte, bool) {
	r := m.find(gpa)
	if r == nil {
		return nil, false
	}
	off := gpa - r.GuestAddr
	if length > r.Size-off {
		return nil, false
	}
	return r.Data[off : off+length : off+length], true
}

// Slice returns the length bytes of guest memory at gpa. They must lie in
// one region; the slice's capacity ends with it, so appending to it never
// writes past the range.
func (m *GuestMemory) Slice(gpa, length uint64) ([]byte, error) {
	b, ok := m.slice(gpa, length)
	if !ok {
		return nil, fmt.Errorf("%w: %#x+%#x", ErrOutOfBounds, gpa, length)
	}
	return b, nil
}

// appendBuffer appends the host slices for the length bytes at gpa to dst.
// Unlike slice, a buffer may run across regions that are adjacent in guest
// physical memory (a guest knows nothing of how the VMM split its RAM); it
// then becomes one slice per region. Every step consumes the rest of a
// region, so the loop ends after at most len(m.regions) steps. On failure
// dst comes back as it was: no part of a bad buffer is handed out.
func (m *GuestMemory) appendBuffer(dst [][]byte, gpa uint64, length uint32) ([][]byte, bool) {
	n := uint64(length)
	if n == 0 {
		return dst, true
	}
	if gpa > math.MaxUint64-(n-1) {
		return dst, false
	}
	start := len(dst)
	for n > 0 {
		r := m.find(gpa)
		if r == nil {
			return dst[:start], false
		}
		off := gpa - r.GuestAddr
		k := min(n, r.Size-off)
		dst = append(dst, r.Data[off:off+k:off+k])
		// gpa+k is at most the region's end, which NewGuestMemory made
		// sure is representable.
		gpa += k
		n -= k
	}
	return dst, true
}

// UserToGuest translates an address in the frontend's address space, which
// is how vhost-user SET_VRING_ADDR gives the rings, to a guest physical
// address.
func (m *GuestMemory) UserToGuest(uaddr uint64) (uint64, error) {
	for i := range m.regions {
		r := &m.regions[i]
		// uaddr below UserAddr wraps to a huge offset and fails the test.
		if off := uaddr - r.UserAddr; off < r.Size {
			return r.GuestAddr + off, nil
		}
	}
	return 0, fmt.Errorf("%w: user address %#x is in no region", ErrOutOfBounds, uaddr)
}
