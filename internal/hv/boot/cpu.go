package boot

import "encoding/binary"

// Regs is the boot vCPU's general registers. It has the fields of struct
// kvm_regs, not its layout; the KVM package copies them over.
type Regs struct {
	RAX, RBX, RCX, RDX uint64
	RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11   uint64
	R12, R13, R14, R15 uint64
	RIP, RFLAGS        uint64
}

// Segment is a segment register's hidden state, with the fields of struct
// kvm_segment (flags are 0 or 1, as there). Limit is in bytes whatever G
// says, as KVM wants it.
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8 // the descriptor's 4-bit type
	Present  uint8
	DPL      uint8
	DB       uint8 // default operation size: 1 for 32-bit
	S        uint8 // 1 for code or data, 0 for a system segment
	L        uint8 // 64-bit code
	G        uint8 // limit counted in 4 KiB pages
	AVL      uint8
}

// DTable is a descriptor table register (GDTR, IDTR).
type DTable struct {
	Base  uint64
	Limit uint16
}

// SRegs is the part of struct kvm_sregs that booting decides. What it
// lacks (LDT, CR2, CR8, the APIC base, the pending-interrupt bitmap) keeps
// the vCPU's reset value: the KVM package reads kvm_sregs, overwrites
// these fields and writes it back.
type SRegs struct {
	CS, DS, ES, FS, GS, SS, TR Segment
	GDT, IDT                   DTable
	CR0, CR3, CR4              uint64
	EFER                       uint64
}

// Control register and flag bits.
const (
	CR0PE     = 1 << 0  // protected mode
	CR0ET     = 1 << 4  // hardwired to 1 since the i486; set so that what is written is what reads back
	CR0PG     = 1 << 31 // paging
	CR4PAE    = 1 << 5
	EFERLME   = 1 << 8  // long mode enabled
	EFERLMA   = 1 << 10 // long mode active: KVM takes it from sregs rather than from a mode switch
	RFLAGSFix = 1 << 1  // bit 1 of RFLAGS always reads 1; IF stays clear
)

// The selectors the boot protocols name: the 32- and 64-bit protocols ask
// for CS = __BOOT_CS = 0x10 and DS = ES = SS = __BOOT_DS = 0x18, flat. PVH
// leaves selectors unspecified; it gets the same ones.
const (
	BootCS  = 0x10
	BootDS  = 0x18
	BootTSS = 0x20
	// gdtEntries: null, unused, CS, DS, and a TSS that takes two slots in
	// long mode (the second is the upper half of its base, zero).
	gdtEntries = 6
)

// Flat segments. The accessed bit is set in every code and data type
// (0xb, 0x3) because the CPU would have set it on loading the selector,
// and VMX's guest-state checks refuse a usable segment without it. The TR
// is a busy TSS (type 0xb, 32- or 64-bit by mode) for the same reason: the
// kernel loads its own before it needs one.
var (
	code64 = Segment{Limit: 0xffffffff, Selector: BootCS, Type: 0xb, Present: 1, S: 1, L: 1, G: 1}
	code32 = Segment{Limit: 0xffffffff, Selector: BootCS, Type: 0xb, Present: 1, S: 1, DB: 1, G: 1}
	data   = Segment{Limit: 0xffffffff, Selector: BootDS, Type: 0x3, Present: 1, S: 1, DB: 1, G: 1}
	tss    = Segment{Limit: 0x67, Selector: BootTSS, Type: 0xb, Present: 1}
)

// descriptor encodes s as an 8-byte GDT entry (Intel SDM vol. 3, 3.4.5).
func descriptor(s Segment) uint64 {
	limit := uint64(s.Limit)
	if s.G == 1 {
		limit >>= 12
	}
	return limit&0xffff |
		(s.Base&0xffffff)<<16 |
		uint64(s.Type&0xf)<<40 |
		uint64(s.S&1)<<44 |
		uint64(s.DPL&3)<<45 |
		uint64(s.Present&1)<<47 |
		(limit>>16&0xf)<<48 |
		uint64(s.AVL&1)<<52 |
		uint64(s.L&1)<<53 |
		uint64(s.DB&1)<<54 |
		uint64(s.G&1)<<55 |
		(s.Base>>24&0xff)<<56
}

// gdt is the table the segment registers' hidden state was loaded from,
// so that a reload of any selector gives the same segment.
func gdt(code Segment) []byte {
	b := make([]byte, gdtEntries*8)
	for _, s := range []Segment{code, data, tss} {
		binary.LittleEndian.PutUint64(b[s.Selector:], descriptor(s))
	}
	return b
}

// sregs is the segment state for a flat code segment and the given control
// registers.
func sregs(code Segment, cr0, cr3, cr4, efer uint64) SRegs {
	return SRegs{
		CS: code, DS: data, ES: data, FS: data, GS: data, SS: data, TR: tss,
		GDT: DTable{Base: GDTAddr, Limit: gdtEntries*8 - 1},
		// An empty IDT: interrupts are off, and an exception this early
		// should end the guest (a triple fault, a shutdown exit) rather
		// than run a handler that is not there.
		IDT: DTable{},
		CR0: cr0, CR3: cr3, CR4: cr4, EFER: efer,
	}
}

// Page table entry bits.
const (
	ptePresent = 1 << 0
	pteWrite   = 1 << 1
	ptePS      = 1 << 7 // a 2 MiB page in a page directory
	pageSize   = 4096
	hugePage   = 2 << 20
	// identityPDs page directories of 512 2 MiB pages map the first
	// 4 GiB: all of low RAM, wherever the kernel decompresses itself, and
	// the MMIO hole. 2 MiB pages rather than 1 GiB ones, which not every
	// CPU model a guest may be given has (CPUID pdpe1gb).
	identityPDs = 4
	// pageTablesSize is PML4, PDPT and the page directories.
	pageTablesSize = (2 + identityPDs) * pageSize
)

// pageTables builds identity page tables at guest address at: the PML4,
// then the PDPT, then the page directories.
func pageTables(at uint64) []byte {
	b := make([]byte, pageTablesSize)
	pdpt := at + pageSize
	binary.LittleEndian.PutUint64(b[0:], pdpt|ptePresent|pteWrite)
	for i := range uint64(identityPDs) {
		pd := at + (2+i)*pageSize
		binary.LittleEndian.PutUint64(b[pageSize+8*i:], pd|ptePresent|pteWrite)
		for j := range uint64(512) {
			phys := (i*512 + j) * hugePage
			binary.LittleEndian.PutUint64(b[(2+i)*pageSize+8*j:], phys|ptePresent|pteWrite|ptePS)
		}
	}
	return b
}
