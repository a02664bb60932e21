package boot

import "fmt"

// E820Entry is one range of the guest's physical memory map, as the zero
// page (struct boot_e820_entry) and hvm_memmap_table_entry both carry it.
type E820Entry struct {
	Addr uint64
	Size uint64
	Type uint32
}

// E820 range types (ACPI "Address Range Types"; the hvm memmap uses the
// same numbers).
const (
	E820RAM      = 1
	E820Reserved = 2
	E820ACPI     = 3
	E820NVS      = 4
	E820Unusable = 5
)

// The low megabyte of a PC: RAM up to the EBDA, then the EBDA, VGA window
// and BIOS area, reserved. The ACPI tables belong in that reserved area,
// where the kernel never takes them for RAM.
const (
	LowRAMEnd    = 0x9fc00
	HighRAMStart = 0x100000 // 1 MiB
	fourGiB      = 1 << 32
)

// E820 is the memory map of a guest with memSize bytes of RAM and its
// 32-bit MMIO hole starting at holeStart: RAM below the EBDA, the BIOS
// area reserved up to 1 MiB, RAM from 1 MiB to the hole, and the rest of
// the RAM from 4 GiB. The hole itself is absent rather than reserved: the
// kernel takes a gap below 4 GiB as the place for device windows, and the
// devices there are described by ACPI. The RAM behind the BIOS area is
// counted in memSize (it is in the guest's memfd), so memSize is what the
// RAM and reserved entries cover together, exactly.
func E820(memSize, holeStart uint64) ([]E820Entry, error) {
	switch {
	case holeStart <= HighRAMStart || holeStart > fourGiB || holeStart%4096 != 0:
		return nil, fmt.Errorf("%w: MMIO hole at %#x, want a 4 KiB multiple above 1 MiB and at most 4 GiB", ErrMemory, holeStart)
	case memSize <= HighRAMStart || memSize%4096 != 0:
		return nil, fmt.Errorf("%w: %d bytes of RAM, want a 4 KiB multiple above 1 MiB", ErrMemory, memSize)
	case memSize > maxPhysAddr-fourGiB:
		return nil, fmt.Errorf("%w: %d bytes of RAM is more than a %d-bit guest address space", ErrMemory, memSize, 46)
	}
	m := []E820Entry{
		{Addr: 0, Size: LowRAMEnd, Type: E820RAM},
		{Addr: LowRAMEnd, Size: HighRAMStart - LowRAMEnd, Type: E820Reserved},
		{Addr: HighRAMStart, Size: min(memSize, holeStart) - HighRAMStart, Type: E820RAM},
	}
	if memSize > holeStart {
		m = append(m, E820Entry{Addr: fourGiB, Size: memSize - holeStart, Type: E820RAM})
	}
	return m, nil
}

// isRAM tells whether [addr, addr+n) lies within one RAM entry of m.
func isRAM(m []E820Entry, addr, n uint64) bool {
	for _, e := range m {
		if e.Type == E820RAM && addr >= e.Addr && addr-e.Addr <= e.Size && n <= e.Size-(addr-e.Addr) {
			return true
		}
	}
	return false
}

// inRAM checks that [addr, addr+n) lies within mem and is RAM.
func inRAM(mem []byte, m []E820Entry, addr, n uint64) error {
	if addr > uint64(len(mem)) || n > uint64(len(mem))-addr {
		return fmt.Errorf("%w: [%#x, +%#x) is beyond the %#x bytes of memory given", ErrMemory, addr, n, len(mem))
	}
	if !isRAM(m, addr, n) {
		return fmt.Errorf("%w: [%#x, +%#x) is not RAM", ErrMemory, addr, n)
	}
	return nil
}

// put copies b to guest address addr, which must be RAM.
func put(mem []byte, m []E820Entry, addr uint64, b []byte) error {
	if err := inRAM(mem, m, addr, uint64(len(b))); err != nil {
		return err
	}
	copy(mem[addr:], b)
	return nil
}
