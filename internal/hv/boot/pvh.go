package boot

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
)

// Vmlinux is a parsed uncompressed kernel ELF that has a PVH entry point.
// It refers to the bytes it was parsed from.
type Vmlinux struct {
	// Entry is the physical address of the PVH entry, from the
	// XEN_ELFNOTE_PHYS32_ENTRY note: the vCPU starts there in 32-bit
	// protected mode with paging off.
	Entry    uint32
	Segments []LoadSegment
}

// LoadSegment is a PT_LOAD program header: Data goes at physical address
// Addr and is followed by zeroes up to MemSize.
type LoadSegment struct {
	Addr    uint64
	Data    []byte
	MemSize uint64
}

const (
	xenElfnotePhys32Entry = 18 // XEN_ELFNOTE_PHYS32_ENTRY, xen/include/public/elfnote.h
	maxLoadSegments       = 64 // a vmlinux has a handful; a bound keeps a hostile file cheap
)

// ParseVmlinux reads the program headers of an x86-64 vmlinux and finds
// its PVH entry. Section headers are not used: a loader goes by what the
// program headers say, as the kernel's own build does.
func ParseVmlinux(b []byte) (*Vmlinux, error) {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB || f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%w: %v %v %v, want ELFCLASS64 ELFDATA2LSB EM_X86_64", ErrUnsupported, f.Class, f.Data, f.Machine)
	}
	v := &Vmlinux{}
	found := false
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD && p.Type != elf.PT_NOTE {
			continue
		}
		if p.Off > uint64(len(b)) || p.Filesz > uint64(len(b))-p.Off {
			return nil, fmt.Errorf("%w: program header [%#x, +%#x) beyond the %d-byte file", ErrInvalid, p.Off, p.Filesz, len(b))
		}
		file := b[p.Off : p.Off+p.Filesz : p.Off+p.Filesz]
		if p.Type == elf.PT_NOTE {
			e, ok, err := pvhEntry(file, p.Align)
			if err != nil {
				return nil, err
			}
			if ok {
				v.Entry, found = e, true
			}
			continue
		}
		if p.Memsz == 0 {
			continue
		}
		if p.Filesz > p.Memsz || p.Paddr >= maxPhysAddr || p.Memsz > maxPhysAddr-p.Paddr {
			return nil, fmt.Errorf("%w: PT_LOAD of %#x bytes (%#x in the file) at %#x", ErrInvalid, p.Memsz, p.Filesz, p.Paddr)
		}
		if len(v.Segments) == maxLoadSegments {
			return nil, fmt.Errorf("%w: more than %d PT_LOAD segments", ErrInvalid, maxLoadSegments)
		}
		v.Segments = append(v.Segments, LoadSegment{Addr: p.Paddr, Data: file, MemSize: p.Memsz})
	}
	if !found {
		return nil, fmt.Errorf("%w: no XEN_ELFNOTE_PHYS32_ENTRY note (a kernel built without CONFIG_PVH)", ErrUnsupported)
	}
	if len(v.Segments) == 0 {
		return nil, fmt.Errorf("%w: no PT_LOAD segment", ErrInvalid)
	}
	inside := false
	for _, s := range v.Segments {
		inside = inside || uint64(v.Entry) >= s.Addr && uint64(v.Entry)-s.Addr < uint64(len(s.Data))
	}
	if !inside {
		return nil, fmt.Errorf("%w: PVH entry %#x is in no segment's file bytes", ErrInvalid, v.Entry)
	}
	return v, nil
}

// pvhEntry walks the notes of one PT_NOTE segment (Elf64_Nhdr: namesz,
// descsz, type, then name and desc each padded to the segment's
// alignment) for Xen's PHYS32_ENTRY. Linux emits its desc as a .quad
// before 6.13 and as a .long since, so both sizes are taken.
func pvhEntry(notes []byte, align uint64) (uint32, bool, error) {
	pad := uint64(4)
	if align == 8 {
		pad = 8
	}
	for len(notes) > 0 {
		if len(notes) < 12 {
			return 0, false, fmt.Errorf("%w: %d stray bytes after the last note", ErrInvalid, len(notes))
		}
		namesz := uint64(le32(notes, 0))
		descsz := uint64(le32(notes, 4))
		typ := le32(notes, 8)
		rest := notes[12:]
		descOff := (namesz + pad - 1) &^ (pad - 1) // both sizes are < 2^32: no overflow
		if descOff+descsz > uint64(len(rest)) {
			return 0, false, fmt.Errorf("%w: note of %d+%d bytes overruns its segment", ErrInvalid, namesz, descsz)
		}
		name, desc := rest[:namesz], rest[descOff:descOff+descsz]
		if typ == xenElfnotePhys32Entry && string(name) == "Xen\x00" {
			var e uint64
			switch descsz {
			case 4:
				e = uint64(le32(desc, 0))
			case 8:
				e = le64(desc, 0)
			default:
				return 0, false, fmt.Errorf("%w: PHYS32_ENTRY note of %d bytes", ErrInvalid, descsz)
			}
			if e >= fourGiB {
				return 0, false, fmt.Errorf("%w: PHYS32_ENTRY %#x is above 4 GiB", ErrInvalid, e)
			}
			return uint32(e), true, nil
		}
		next := min(descOff+((descsz+pad-1)&^(pad-1)), uint64(len(rest)))
		notes = rest[next:]
	}
	return 0, false, nil
}

// hvm_start_info and the tables it points to (xen/include/public/arch-x86
// /hvm/start_info.h), laid out as one block: the structure, one module
// entry, then the memory map.
const (
	pvhMagic          = 0x336ec578 // "xEn3" in memory order, with the high bit of its "E" set
	pvhVersion        = 1          // version 1 adds the memory map, which a guest without Xen hypercalls needs
	siModlistOff      = 0x40
	siMemmapOff       = 0x60
	memmapEntrySize   = 24
	startInfoMaxSize  = siMemmapOff + E820MaxEntries*memmapEntrySize
	pvhCmdlineMaxSize = 2047 // COMMAND_LINE_SIZE on x86, less the NUL; a vmlinux has no header to say otherwise
)

// startInfo builds hvm_start_info for placement at guest address at.
// Linux takes module 0 as its initrd and the memory map as its e820.
func startInfo(at uint64, p bootInfo) ([]byte, error) {
	if len(p.e820) == 0 || len(p.e820) > E820MaxEntries {
		return nil, fmt.Errorf("%w: %d memory map entries, want 1 to %d", ErrMemory, len(p.e820), E820MaxEntries)
	}
	b := make([]byte, siMemmapOff+len(p.e820)*memmapEntrySize)
	le := binary.LittleEndian
	le.PutUint32(b[0x00:], pvhMagic)
	le.PutUint32(b[0x04:], pvhVersion)
	if p.initrdSize > 0 {
		le.PutUint32(b[0x0c:], 1) // nr_modules
		le.PutUint64(b[0x10:], at+siModlistOff)
		le.PutUint64(b[siModlistOff:], p.initrd)
		le.PutUint64(b[siModlistOff+8:], p.initrdSize)
	}
	le.PutUint64(b[0x18:], p.cmdline)
	le.PutUint64(b[0x20:], p.rsdp)
	le.PutUint64(b[0x28:], at+siMemmapOff)
	le.PutUint32(b[0x30:], uint32(len(p.e820)))
	for i, e := range p.e820 {
		o := siMemmapOff + i*memmapEntrySize
		le.PutUint64(b[o:], e.Addr)
		le.PutUint64(b[o+8:], e.Size)
		le.PutUint32(b[o+16:], e.Type)
	}
	return b, nil
}
