package hv

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/vhostuser"
)

// Guest physical layout. RAM starts at 0 and stops at the 32-bit MMIO
// hole; what does not fit below it continues at 4 GiB. The hole holds the
// virtio-mmio windows, the IOAPIC, the local APIC and the sleep and reset
// registers.
const (
	MMIOHoleStart = 0xc000_0000 // 3 GiB
	highMemStart  = 1 << 32
)

// Memory is the guest's RAM: one memfd (so that cards can map it, as
// vhost-user needs), mapped once in this process, shown to the guest as
// one or two regions around the MMIO hole.
type Memory struct {
	fd      int
	mapping []byte
	Regions []Region
}

// Region is a piece of guest RAM: where it is in the guest, where in the
// memfd and the mapping.
type Region struct {
	GuestAddr uint64
	Offset    uint64 // in the memfd and the mapping
	Host      []byte
}

// NewMemory makes size bytes of guest RAM (a multiple of 2 MiB, at least
// 64 MiB).
func NewMemory(size uint64) (*Memory, error) {
	if size < 64<<20 || size%(2<<20) != 0 || size > 1<<40 {
		return nil, fmt.Errorf("hv: guest memory of %d bytes (want a multiple of 2 MiB from 64 MiB to 1 TiB)", size)
	}
	fd, err := unix.MemfdCreate("azote-guest", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("hv: memfd: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("hv: guest memory: %w", err)
	}
	// MAP_NORESERVE: the guest touches what it uses; a 4 GiB guest that
	// idles costs what it touched.
	b, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_NORESERVE)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("hv: mapping guest memory: %w", err)
	}
	m := &Memory{fd: fd, mapping: b}
	low := min(size, MMIOHoleStart)
	m.Regions = append(m.Regions, Region{GuestAddr: 0, Offset: 0, Host: b[:low]})
	if size > low {
		m.Regions = append(m.Regions, Region{GuestAddr: highMemStart, Offset: low, Host: b[low:]})
	}
	return m, nil
}

// Size is the guest's RAM in bytes.
func (m *Memory) Size() uint64 { return uint64(len(m.mapping)) }

// Low is the RAM below the MMIO hole, from guest address 0: where the
// kernel, its initrd and the boot tables go.
func (m *Memory) Low() []byte { return m.Regions[0].Host }

// ErrOutside is returned for a guest range that is not all RAM.
var ErrOutside = errors.New("hv: guest range outside RAM")

// Slice returns the host view of the guest range [gpa, gpa+n), which must
// lie within one region.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	for _, r := range m.Regions {
		size := uint64(len(r.Host))
		if gpa >= r.GuestAddr && gpa-r.GuestAddr <= size && n <= size-(gpa-r.GuestAddr) {
			off := gpa - r.GuestAddr
			return r.Host[off : off+n : off+n], nil
		}
	}
	return nil, fmt.Errorf("%w: [%#x, +%#x)", ErrOutside, gpa, n)
}

// CardRegions describes the memory to a card (vhost-user SET_MEM_TABLE).
func (m *Memory) CardRegions() []vhostuser.GuestRegion {
	out := make([]vhostuser.GuestRegion, len(m.Regions))
	for i, r := range m.Regions {
		out[i] = vhostuser.GuestRegion{FD: m.fd, GuestAddr: r.GuestAddr, Size: uint64(len(r.Host)), UserAddr: hostAddr(r.Host), MmapOffset: r.Offset}
	}
	return out
}

// Close unmaps the memory and closes the memfd.
func (m *Memory) Close() error {
	err := unix.Munmap(m.mapping)
	unix.Close(m.fd)
	return err
}
