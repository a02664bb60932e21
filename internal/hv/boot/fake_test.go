package boot

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
)

// Synthetic kernels: small, valid by construction, for the refusal tables
// and the fuzz seeds. The real kernel is in kernel_test.go.

const (
	// Small, because the fuzzer minimises every new input it keeps and
	// that costs time quadratic in the input's size.
	fakeSetupSects = 1
	fakeCodeLen    = 512
	fakePref       = 16 << 20
	fakeInitSize   = 4 << 20
)

// fakeBzImage is a bzImage with a 2.15 header like Debian's, a small
// init_size, and a code pattern that tells bytes apart.
func fakeBzImage() []byte {
	setup := (fakeSetupSects + 1) * 512
	b := make([]byte, setup+fakeCodeLen)
	le := binary.LittleEndian
	b[offSetupSects] = fakeSetupSects
	le.PutUint32(b[offSyssize:], fakeCodeLen/16)
	le.PutUint16(b[0x1fa:], 0xffff) // vid_mode: normal
	le.PutUint16(b[offBootFlag:], 0xaa55)
	b[offJump], b[offJump+1] = 0xeb, 0x6a // header ends at 0x26c
	copy(b[offMagic:], "HdrS")
	le.PutUint16(b[offVersion:], 0x020f)
	b[offLoadflags] = LoadedHigh
	le.PutUint32(b[0x214:], KernelAddr) // code32_start
	le.PutUint32(b[offInitrdAddrMax:], 0x7fffffff)
	le.PutUint32(b[offKernelAlign:], 2<<20)
	b[offRelocatable] = 1
	b[0x235] = 21 // min_alignment
	le.PutUint16(b[offXloadflags:], XLFKernel64|XLFAbove4G)
	le.PutUint32(b[offCmdlineSize:], 2047)
	le.PutUint32(b[offPayloadOffset:], 0x40)
	le.PutUint32(b[offPayloadLength:], 0x100)
	le.PutUint64(b[offPrefAddress:], fakePref)
	le.PutUint32(b[offInitSize:], fakeInitSize)
	le.PutUint32(b[offHandover:], 0x190)
	for i := setup; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	return b
}

const (
	fakeVmlinuxAddr  = 16 << 20
	fakeVmlinuxFile  = 0x200
	fakeVmlinuxMem   = 0x1000 // a bss after the file bytes
	fakeVmlinuxEntry = fakeVmlinuxAddr + 0x40
)

// fakeVmlinux is an x86-64 ELF with one PT_LOAD and a PT_NOTE holding the
// PVH entry note, its desc descSize bytes (Linux: 8 before 6.13, 4 since).
func fakeVmlinux(descSize int) []byte {
	le := binary.LittleEndian
	var note bytes.Buffer
	// A note that is not Xen's first, to show the walk moves on.
	binary.Write(&note, le, [3]uint32{4, 4, 1})
	note.WriteString("GNU\x00abcd")
	binary.Write(&note, le, [3]uint32{4, uint32(descSize), xenElfnotePhys32Entry})
	note.WriteString("Xen\x00")
	desc := make([]byte, 16) // descSize is at most 16
	le.PutUint64(desc, fakeVmlinuxEntry)
	note.Write(desc[:(descSize+3)&^3])

	const phoff, phnum = 64, 2
	noteOff := uint64(phoff + phnum*56)
	loadOff := uint64(0x100)
	h := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Entry: 0xffffffff81000000, Phoff: phoff, Ehsize: 64, Phentsize: 56, Phnum: phnum,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	progs := []elf.Prog64{
		{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Off: loadOff, Vaddr: 0xffffffff81000000, Paddr: fakeVmlinuxAddr, Filesz: fakeVmlinuxFile, Memsz: fakeVmlinuxMem, Align: 0x200000},
		{Type: uint32(elf.PT_NOTE), Flags: uint32(elf.PF_R), Off: noteOff, Filesz: uint64(note.Len()), Memsz: uint64(note.Len()), Align: 4},
	}
	var b bytes.Buffer
	binary.Write(&b, le, h)
	binary.Write(&b, le, progs)
	b.Write(note.Bytes())
	out := make([]byte, loadOff+fakeVmlinuxFile)
	copy(out, b.Bytes())
	for i := loadOff; i < uint64(len(out)); i++ {
		out[i] = byte(i*13) | 1 // never 0, so a zeroed bss is told apart
	}
	return out
}
