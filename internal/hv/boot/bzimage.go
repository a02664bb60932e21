package boot

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Errors. A kernel image that is malformed wraps ErrInvalid; one that is
// well formed but asks for something this loader does not do wraps
// ErrUnsupported.
var (
	ErrInvalid     = errors.New("boot: invalid kernel image")
	ErrUnsupported = errors.New("boot: unsupported kernel image")
	ErrCmdline     = errors.New("boot: command line refused")
	ErrMemory      = errors.New("boot: does not fit in guest memory")
)

// Offsets of the setup header fields this package reads or writes. The
// header sits at the same offset in the bzImage file and in the zero page,
// so one set of names serves both (boot.rst, "The Real-Mode Kernel
// Header").
const (
	offSetupSects    = 0x1f1 // first byte of the header
	offSyssize       = 0x1f4
	offBootFlag      = 0x1fe
	offJump          = 0x200
	offMagic         = 0x202
	offVersion       = 0x206
	offTypeOfLoader  = 0x210
	offLoadflags     = 0x211
	offRamdiskImage  = 0x218
	offRamdiskSize   = 0x21c
	offHeapEndPtr    = 0x224
	offCmdLinePtr    = 0x228
	offInitrdAddrMax = 0x22c
	offKernelAlign   = 0x230
	offRelocatable   = 0x234
	offXloadflags    = 0x236
	offCmdlineSize   = 0x238
	offPayloadOffset = 0x248
	offPayloadLength = 0x24c
	offPrefAddress   = 0x258
	offInitSize      = 0x260
	offHandover      = 0x264

	// The header ends at 0x202 plus the jump's displacement. Protocol 2.10
	// ends it after init_size; struct boot_params leaves room up to 0x290.
	hdrEndMin = 0x264
	hdrEndMax = 0x290
)

// Flags of the setup header.
const (
	LoadedHigh  = 1 << 0 // loadflags: the protected-mode kernel goes at 1 MiB
	CanUseHeap  = 1 << 7 // loadflags: heap_end_ptr is valid
	XLFKernel64 = 1 << 0 // xloadflags: a 64-bit entry point at load address + 0x200
	// XLFAbove4G says kernel, zero page, command line and initrd may sit
	// above 4 GiB. This loader puts them all below, so it only reports it.
	XLFAbove4G = 1 << 1
)

const (
	minProtocol = 0x020c // 2.12: the first with xloadflags, so with XLF_KERNEL_64 (pref_address and init_size came in 2.10)
	entry64     = 0x200  // the 64-bit entry point's offset in the protected-mode kernel
	// maxPhysAddr bounds every guest physical address this package
	// computes: 46 bits is the physical address width of the hosts the hv
	// runs on, and keeping sums below 2^47 rules out overflow.
	maxPhysAddr = 1 << 46
)

// BzImage is a parsed bzImage: the fields of its setup header that a
// loader needs, and its protected-mode kernel. It refers to the bytes it
// was parsed from; they must not change while it is used.
type BzImage struct {
	Protocol        uint16 // boot protocol version: 0x020f is 2.15
	SetupSects      int    // sectors of real-mode setup after the boot sector
	LoadFlags       uint8
	XLoadFlags      uint16
	Relocatable     bool
	KernelAlignment uint32 // a power of two
	InitSize        uint32 // memory the kernel needs from its runtime start before it reads the e820 map
	CmdlineSize     uint32 // longest command line, without its NUL
	InitrdAddrMax   uint32 // highest address the initrd may occupy
	PrefAddress     uint64 // where the kernel prefers to run (LOAD_PHYSICAL_ADDR)
	HandoverOffset  uint32 // EFI handover entry; 0 before protocol 2.11
	PayloadOffset   uint32 // the compressed vmlinux, from the start of Code
	PayloadLength   uint32

	// Code is the protected-mode kernel, syssize paragraphs from the end
	// of the setup sectors; what follows it in the file (a signature) is
	// not loaded.
	Code []byte

	header []byte // the setup header, copied into the zero page
}

// ParseBzImage reads and checks the setup header of a bzImage. It accepts
// only what it can boot by the 64-bit protocol: a "HdrS" header of
// protocol 2.12 or later, loaded high, with XLF_KERNEL_64.
func ParseBzImage(b []byte) (*BzImage, error) {
	if len(b) < hdrEndMin {
		return nil, fmt.Errorf("%w: %d bytes is too short for a setup header", ErrInvalid, len(b))
	}
	if string(b[offMagic:offMagic+4]) != "HdrS" {
		return nil, fmt.Errorf("%w: no HdrS magic at %#x", ErrInvalid, offMagic)
	}
	if f := le16(b, offBootFlag); f != 0xaa55 {
		return nil, fmt.Errorf("%w: boot_flag %#x, want 0xaa55", ErrInvalid, f)
	}
	k := &BzImage{Protocol: le16(b, offVersion)}
	if k.Protocol < minProtocol {
		return nil, fmt.Errorf("%w: boot protocol %#04x is older than 2.12", ErrUnsupported, k.Protocol)
	}
	// The jump at 0x200 is a short jmp over the header; its displacement
	// is how long the header is. A backward or oversized jump would make
	// the zero page copy overrun into the e820 table.
	if b[offJump] != 0xeb {
		return nil, fmt.Errorf("%w: no short jump at %#x", ErrInvalid, offJump)
	}
	end := offMagic + int(b[offJump+1])
	if end < hdrEndMin || end > hdrEndMax || end > len(b) {
		return nil, fmt.Errorf("%w: setup header ends at %#x, want %#x..%#x within the file", ErrInvalid, end, hdrEndMin, hdrEndMax)
	}
	k.SetupSects = int(b[offSetupSects])
	if k.SetupSects == 0 {
		k.SetupSects = 4 // boot.rst: 0 means 4, for old kernels
	}
	setup := (k.SetupSects + 1) * 512 // at least 1 KiB: the header is always inside
	if setup > len(b) {
		return nil, fmt.Errorf("%w: %d setup sectors do not fit a %d-byte file", ErrInvalid, k.SetupSects, len(b))
	}
	code := uint64(le32(b, offSyssize)) * 16
	if code == 0 || code > uint64(len(b)-setup) {
		return nil, fmt.Errorf("%w: syssize says %d bytes of kernel, the file has %d after setup", ErrInvalid, code, len(b)-setup)
	}
	k.Code = b[setup : setup+int(code) : setup+int(code)]

	k.LoadFlags = b[offLoadflags]
	if k.LoadFlags&LoadedHigh == 0 {
		return nil, fmt.Errorf("%w: a zImage (not loaded high)", ErrUnsupported)
	}
	k.XLoadFlags = le16(b, offXloadflags)
	if k.XLoadFlags&XLFKernel64 == 0 {
		return nil, fmt.Errorf("%w: no 64-bit entry point (XLF_KERNEL_64)", ErrUnsupported)
	}
	k.Relocatable = b[offRelocatable] != 0
	k.KernelAlignment = le32(b, offKernelAlign)
	if a := k.KernelAlignment; a < 4096 || a > 1<<30 || a&(a-1) != 0 {
		return nil, fmt.Errorf("%w: kernel_alignment %#x is not a power of two from 4 KiB to 1 GiB", ErrInvalid, a)
	}
	k.InitSize = le32(b, offInitSize)
	if k.InitSize == 0 {
		return nil, fmt.Errorf("%w: init_size is 0", ErrInvalid)
	}
	k.PrefAddress = le64(b, offPrefAddress)
	if k.PrefAddress >= maxPhysAddr {
		return nil, fmt.Errorf("%w: pref_address %#x", ErrInvalid, k.PrefAddress)
	}
	k.CmdlineSize = le32(b, offCmdlineSize)
	k.InitrdAddrMax = le32(b, offInitrdAddrMax)
	if end >= offHandover+4 {
		k.HandoverOffset = le32(b, offHandover)
	}
	k.PayloadOffset = le32(b, offPayloadOffset)
	k.PayloadLength = le32(b, offPayloadLength)
	if uint64(k.PayloadOffset)+uint64(k.PayloadLength) > code {
		return nil, fmt.Errorf("%w: payload [%#x, +%#x) beyond the %#x-byte kernel", ErrInvalid, k.PayloadOffset, k.PayloadLength, code)
	}
	k.header = append([]byte(nil), b[offSetupSects:end]...)
	return k, nil
}

// Payload is the compressed vmlinux inside the kernel (its format is told
// by its magic number), or nil when the header names none.
func (k *BzImage) Payload() []byte {
	if k.PayloadLength == 0 {
		return nil
	}
	return k.Code[k.PayloadOffset : k.PayloadOffset+k.PayloadLength]
}

// runtimeStart is where the kernel decompresses itself and runs when
// loaded at load. boot.rst says align_up(load, kernel_alignment) for a
// relocatable kernel and pref_address otherwise; arch/x86/boot/compressed
// /head_64.S also never goes below LOAD_PHYSICAL_ADDR, which is what
// pref_address holds, hence the max.
func (k *BzImage) runtimeStart(load uint64) uint64 {
	if !k.Relocatable {
		return k.PrefAddress
	}
	a := uint64(k.KernelAlignment)
	return max((load+a-1)&^(a-1), k.PrefAddress)
}

// Zero page (struct boot_params) offsets outside the setup header
// (Documentation/arch/x86/zero-page.rst).
const (
	ZeroPageSize     = 4096
	zpACPIRSDPAddr   = 0x070
	zpExtRamdiskImg  = 0x0c0
	zpExtRamdiskSize = 0x0c4
	zpExtCmdLinePtr  = 0x0c8
	zpE820Entries    = 0x1e8
	zpSentinel       = 0x1ef
	zpE820Table      = 0x2d0
	e820EntrySize    = 20
	// E820MaxEntries is how many entries the zero page holds; more would
	// need a SETUP_E820_EXT setup_data, which this loader never needs.
	E820MaxEntries = 128

	// heapEndPtr is boot.rst's sample for a loader that puts the real-mode
	// code low: heap up to 0xe000 from its start, less 0x200. The 64-bit
	// entry never runs the real-mode setup that uses it, but the field is
	// marked obligatory.
	heapEndPtr = 0xe000 - 0x200
)

// bootInfo is what a loader tells the kernel beyond its own header, in
// either protocol.
type bootInfo struct {
	cmdline    uint64 // guest address of the NUL-terminated command line
	initrd     uint64 // guest address of the initrd, 0 for none
	initrdSize uint64
	rsdp       uint64 // guest address of the ACPI RSDP, 0 for none
	e820       []E820Entry
}

// zeroPage builds struct boot_params: zeroes, the kernel's setup header,
// and the fields a loader must write.
func (k *BzImage) zeroPage(p bootInfo) ([]byte, error) {
	if len(p.e820) == 0 || len(p.e820) > E820MaxEntries {
		return nil, fmt.Errorf("%w: %d e820 entries, the zero page holds 1 to %d", ErrMemory, len(p.e820), E820MaxEntries)
	}
	zp := make([]byte, ZeroPageSize)
	// Only the header is copied, never the bytes before it: the kernel
	// takes a nonzero sentinel at 0x1ef as the sign of a loader that
	// copied too much, and then discards fields it was given.
	copy(zp[offSetupSects:], k.header)
	zp[zpSentinel] = 0
	zp[offTypeOfLoader] = 0xff // no assigned loader id
	zp[offLoadflags] |= CanUseHeap
	binary.LittleEndian.PutUint16(zp[offHeapEndPtr:], heapEndPtr)
	binary.LittleEndian.PutUint32(zp[offCmdLinePtr:], uint32(p.cmdline))
	binary.LittleEndian.PutUint32(zp[zpExtCmdLinePtr:], uint32(p.cmdline>>32))
	binary.LittleEndian.PutUint32(zp[offRamdiskImage:], uint32(p.initrd))
	binary.LittleEndian.PutUint32(zp[zpExtRamdiskImg:], uint32(p.initrd>>32))
	binary.LittleEndian.PutUint32(zp[offRamdiskSize:], uint32(p.initrdSize))
	binary.LittleEndian.PutUint32(zp[zpExtRamdiskSize:], uint32(p.initrdSize>>32))
	// With the RSDP's address here the kernel does not scan the BIOS
	// area for it (arch/x86/boot/compressed/acpi.c).
	binary.LittleEndian.PutUint64(zp[zpACPIRSDPAddr:], p.rsdp)
	zp[zpE820Entries] = byte(len(p.e820))
	for i, e := range p.e820 {
		o := zpE820Table + i*e820EntrySize
		binary.LittleEndian.PutUint64(zp[o:], e.Addr)
		binary.LittleEndian.PutUint64(zp[o+8:], e.Size)
		binary.LittleEndian.PutUint32(zp[o+16:], e.Type)
	}
	return zp, nil
}

func le16(b []byte, off int) uint16 { return binary.LittleEndian.Uint16(b[off:]) }
func le32(b []byte, off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
func le64(b []byte, off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }
