package boot

import (
	"bytes"
	"debug/elf"
	"fmt"
	"strings"
)

// Guest physical addresses of what Load writes in the low megabyte (the
// map is drawn in the package comment). They are fixed so that the other
// parts of the hv (ACPI tables in the reserved BIOS area) know what to
// avoid without asking.
const (
	GDTAddr       = 0x500
	StartInfoAddr = 0x6000 // PVH: hvm_start_info, module list, memory map
	ZeroPageAddr  = 0x7000 // bzImage: struct boot_params
	BootStack     = 0x8ff0 // the kernel sets its own stack first thing; this one only has to be RAM
	PML4Addr      = 0x9000 // then the PDPT and the page directories
	CmdlineAddr   = 0x20000
	KernelAddr    = HighRAMStart // where a bzImage's protected-mode kernel goes
	initrdAlign   = 4096
)

// Protocol is how the boot vCPU enters the kernel.
type Protocol int

const (
	// Linux64 is the x86 64-bit boot protocol: long mode, RSI = zero page.
	Linux64 Protocol = iota + 1
	// PVH is the Xen PVH entry: 32-bit protected mode, RBX = start info.
	PVH
)

func (p Protocol) String() string {
	switch p {
	case Linux64:
		return "linux64"
	case PVH:
		return "pvh"
	}
	return fmt.Sprintf("Protocol(%d)", int(p))
}

// Options are the parts of the machine that Load does not decide.
type Options struct {
	// HoleStart is where the 32-bit MMIO hole begins: RAM stops there and
	// resumes at 4 GiB. It must be the hv's memory layout's; there is no
	// default so that the two cannot drift apart unnoticed.
	HoleStart uint64
	// RSDP is the guest address of the ACPI RSDP, already written by the
	// caller (normally in [LowRAMEnd, HighRAMStart)); 0 for none.
	RSDP uint64
}

// Layout says where Load put things, as guest physical addresses.
type Layout struct {
	Protocol   Protocol
	GDT        uint64
	ZeroPage   uint64 // Linux64 only
	StartInfo  uint64 // PVH only
	PML4       uint64 // Linux64 only: PML4, PDPT, then page directories
	Cmdline    uint64
	CmdlineLen uint64 // with its NUL
	// Kernel..KernelEnd is the memory the kernel occupies before it reads
	// the memory map: for a bzImage, its load address up to its runtime
	// start plus init_size; for a vmlinux, its lowest to highest segment.
	Kernel    uint64
	KernelEnd uint64
	Entry     uint64
	Initrd    uint64 // 0 when there is none
	InitrdLen uint64
	RSDP      uint64
	E820      []E820Entry // the memory map given to the kernel
}

// Boot is a loaded kernel: where everything is, and the boot vCPU's state.
// The other vCPUs start from their reset state and are woken by the
// kernel through the local APIC (INIT, SIPI).
type Boot struct {
	Layout Layout
	Regs   Regs
	SRegs  SRegs
}

// Load writes kernel, initrd and cmdline into mem, which stands for guest
// physical memory from address 0 (normally the RAM below the MMIO hole),
// with the boot structures of the kernel's protocol: a bzImage boots by
// the 64-bit protocol, an ELF vmlinux by PVH. memSize is all of the
// guest's RAM, for the memory map. Load writes only to RAM of that map and
// within mem; on error, mem may hold part of what it wrote.
func Load(mem []byte, kernel, initrd []byte, cmdline string, memSize uint64, o Options) (*Boot, error) {
	m, err := E820(memSize, o.HoleStart)
	if err != nil {
		return nil, err
	}
	l := loader{mem: mem, e820: m, initrd: initrd, cmdline: cmdline, rsdp: o.RSDP}
	// RAM below the hole and within mem: where everything goes.
	l.lowEnd = min(memSize, o.HoleStart, uint64(len(mem)))
	if bytes.HasPrefix(kernel, []byte(elf.ELFMAG)) {
		return l.pvh(kernel)
	}
	return l.linux64(kernel)
}

type loader struct {
	mem     []byte
	e820    []E820Entry
	lowEnd  uint64
	initrd  []byte
	cmdline string
	rsdp    uint64
}

func (l *loader) linux64(kernel []byte) (*Boot, error) {
	k, err := ParseBzImage(kernel)
	if err != nil {
		return nil, err
	}
	lay := Layout{Protocol: Linux64, GDT: GDTAddr, ZeroPage: ZeroPageAddr, PML4: PML4Addr, Kernel: KernelAddr, RSDP: l.rsdp, E820: l.e820}
	lay.Entry = KernelAddr + entry64
	// The kernel copies itself to its runtime start and decompresses
	// there; nothing of ours may lie in that range, and it must be RAM.
	// runtimeStart is at most 2^46 + 1 GiB and init_size below 2^32.
	lay.KernelEnd = max(KernelAddr+uint64(len(k.Code)), k.runtimeStart(KernelAddr)+uint64(k.InitSize))
	if !isRAM(l.e820, KernelAddr, lay.KernelEnd-KernelAddr) {
		return nil, fmt.Errorf("%w: the kernel needs RAM from %#x to %#x", ErrMemory, uint64(KernelAddr), lay.KernelEnd)
	}
	if err := put(l.mem, l.e820, KernelAddr, k.Code); err != nil {
		return nil, err
	}
	// initrd_addr_max is the highest byte the initrd may occupy.
	if err := l.placeInitrd(&lay, min(l.lowEnd, uint64(k.InitrdAddrMax)+1)); err != nil {
		return nil, err
	}
	if err := l.placeCmdline(&lay, uint64(k.CmdlineSize)); err != nil {
		return nil, err
	}
	zp, err := k.zeroPage(bootInfo{cmdline: lay.Cmdline, initrd: lay.Initrd, initrdSize: lay.InitrdLen, rsdp: l.rsdp, e820: l.e820})
	if err != nil {
		return nil, err
	}
	for _, w := range []struct {
		addr uint64
		b    []byte
	}{
		{ZeroPageAddr, zp},
		{GDTAddr, gdt(code64)},
		{PML4Addr, pageTables(PML4Addr)},
	} {
		if err := put(l.mem, l.e820, w.addr, w.b); err != nil {
			return nil, err
		}
	}
	return &Boot{
		Layout: lay,
		Regs:   Regs{RIP: lay.Entry, RSI: ZeroPageAddr, RSP: BootStack, RBP: BootStack, RFLAGS: RFLAGSFix},
		// CR0.PG with CR4.PAE and EFER.LME is long mode; LMA says it is
		// already active, since no mode switch happens under KVM_SET_SREGS.
		SRegs: sregs(code64, CR0PE|CR0ET|CR0PG, PML4Addr, CR4PAE, EFERLME|EFERLMA),
	}, nil
}

func (l *loader) pvh(kernel []byte) (*Boot, error) {
	v, err := ParseVmlinux(kernel)
	if err != nil {
		return nil, err
	}
	lay := Layout{Protocol: PVH, GDT: GDTAddr, StartInfo: StartInfoAddr, Entry: uint64(v.Entry), RSDP: l.rsdp, E820: l.e820}
	lay.Kernel = ^uint64(0)
	for _, s := range v.Segments {
		// Below 1 MiB are this package's own structures and the BIOS
		// area; a segment there is a hostile or broken kernel.
		if s.Addr < HighRAMStart {
			return nil, fmt.Errorf("%w: a segment at %#x, below 1 MiB", ErrInvalid, s.Addr)
		}
		if err := inRAM(l.mem, l.e820, s.Addr, s.MemSize); err != nil {
			return nil, err
		}
		copy(l.mem[s.Addr:], s.Data)
		clear(l.mem[s.Addr+uint64(len(s.Data)) : s.Addr+s.MemSize])
		lay.Kernel = min(lay.Kernel, s.Addr)
		lay.KernelEnd = max(lay.KernelEnd, s.Addr+s.MemSize)
	}
	// Linux reads the module address into the 32-bit ramdisk_image.
	if err := l.placeInitrd(&lay, min(l.lowEnd, fourGiB)); err != nil {
		return nil, err
	}
	if err := l.placeCmdline(&lay, pvhCmdlineMaxSize); err != nil {
		return nil, err
	}
	si, err := startInfo(StartInfoAddr, bootInfo{cmdline: lay.Cmdline, initrd: lay.Initrd, initrdSize: lay.InitrdLen, rsdp: l.rsdp, e820: l.e820})
	if err != nil {
		return nil, err
	}
	if err := put(l.mem, l.e820, StartInfoAddr, si); err != nil {
		return nil, err
	}
	if err := put(l.mem, l.e820, GDTAddr, gdt(code32)); err != nil {
		return nil, err
	}
	return &Boot{
		Layout: lay,
		Regs:   Regs{RIP: lay.Entry, RBX: StartInfoAddr, RFLAGS: RFLAGSFix},
		// PVH: protected mode, paging off, CR4 clear, no EFER bits.
		SRegs: sregs(code32, CR0PE|CR0ET, 0, 0, 0),
	}, nil
}

// placeInitrd puts the initrd as high as it may go, below top and above
// the kernel, aligned down to 4 KiB: high, so that the kernel's early
// allocations below it find room and KASLR has the most choice.
func (l *loader) placeInitrd(lay *Layout, top uint64) error {
	n := uint64(len(l.initrd))
	if n == 0 {
		return nil
	}
	if n > top || (top-n)&^(initrdAlign-1) < lay.KernelEnd {
		return fmt.Errorf("%w: an initrd of %d bytes does not fit between the kernel's end %#x and %#x", ErrMemory, n, lay.KernelEnd, top)
	}
	addr := (top - n) &^ (initrdAlign - 1)
	if err := put(l.mem, l.e820, addr, l.initrd); err != nil {
		return err
	}
	lay.Initrd, lay.InitrdLen = addr, n
	return nil
}

// placeCmdline writes the command line and its NUL at CmdlineAddr. max is
// the kernel's limit, without the NUL.
func (l *loader) placeCmdline(lay *Layout, limit uint64) error {
	n := uint64(len(l.cmdline))
	if strings.IndexByte(l.cmdline, 0) >= 0 {
		return fmt.Errorf("%w: it holds a NUL byte", ErrCmdline)
	}
	limit = min(limit, LowRAMEnd-CmdlineAddr-1)
	if n > limit {
		return fmt.Errorf("%w: %d bytes, the kernel takes at most %d", ErrCmdline, n, limit)
	}
	b := make([]byte, n+1)
	copy(b, l.cmdline)
	if err := put(l.mem, l.e820, CmdlineAddr, b); err != nil {
		return err
	}
	lay.Cmdline, lay.CmdlineLen = CmdlineAddr, n+1
	return nil
}
