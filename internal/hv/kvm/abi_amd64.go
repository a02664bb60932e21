//go:build linux

package kvm

// The kernel's KVM ABI on x86-64, from include/uapi/linux/kvm.h and
// arch/x86/include/uapi/asm/kvm.h. Each struct below has the kernel's
// layout field for field (abi_unsafe_test.go checks the sizes and the
// offsets that matter); padding the kernel declares is declared here too,
// so that no field's offset depends on Go's alignment rules.

// Regs mirrors struct kvm_regs: the general-purpose registers.
type Regs struct {
	RAX, RBX, RCX, RDX uint64
	RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11   uint64
	R12, R13, R14, R15 uint64
	RIP, RFLAGS        uint64
}

// Segment mirrors struct kvm_segment: a segment register with its hidden
// part (base, limit, attributes), which is what the CPU uses.
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8
	Present  uint8
	DPL      uint8
	DB       uint8
	S        uint8
	L        uint8
	G        uint8
	AVL      uint8
	Unusable uint8
	_        uint8
}

// DTable mirrors struct kvm_dtable: the GDTR or IDTR.
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs mirrors struct kvm_sregs: segments, descriptor tables and control
// registers.
type Sregs struct {
	CS, DS, ES, FS, GS, SS Segment
	TR, LDT                Segment
	GDT, IDT               DTable
	CR0, CR2, CR3, CR4     uint64
	CR8                    uint64
	EFER                   uint64
	APICBase               uint64
	// InterruptBitmap has the bit of an external interrupt that is
	// pending injection (KVM_GET_SREGS); it must be empty or have
	// one bit on KVM_SET_SREGS.
	InterruptBitmap [4]uint64
}

// FPU mirrors struct kvm_fpu: the x87 and SSE state (FXSAVE's, in
// another order).
type FPU struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8 // the abridged tag word, as in FXSAVE
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	_          uint32
}

// MSR mirrors struct kvm_msr_entry: one model-specific register.
type MSR struct {
	Index uint32
	_     uint32
	Data  uint64
}

// maxMSRs is how many MSRs one KVM_SET_MSRS or KVM_GET_MSRS takes here.
// KVM itself takes up to 255 (MAX_IO_MSRS is 256).
const maxMSRs = 255

// msrs mirrors struct kvm_msrs with its flexible array sized maxMSRs.
type msrs struct {
	NMSRs   uint32
	_       uint32
	Entries [maxMSRs]MSR
}

// CPUIDEntry mirrors struct kvm_cpuid_entry2: the registers one CPUID
// leaf (Function) and subleaf (Index) answers.
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32 // CPUIDFlagSignificantIndex: Index selects a subleaf
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// CPUIDFlagSignificantIndex (KVM_CPUID_FLAG_SIGNIFCANT_INDEX [sic]) marks
// a leaf whose answer depends on ECX.
const CPUIDFlagSignificantIndex = 1 << 0

// maxCPUIDEntries is KVM_MAX_CPUID_ENTRIES (kernels since 5.12; 80
// before): the most KVM_GET_SUPPORTED_CPUID returns and KVM_SET_CPUID2
// takes.
const maxCPUIDEntries = 256

// cpuid2 mirrors struct kvm_cpuid2 with its flexible array sized
// maxCPUIDEntries.
type cpuid2 struct {
	NEnt    uint32
	_       uint32
	Entries [maxCPUIDEntries]CPUIDEntry
}

// LAPICState mirrors struct kvm_lapic_state: the local APIC's register
// page, each 32-bit register at its architectural offset (16-byte
// aligned).
type LAPICState struct {
	Regs [1024]byte
}

// userspaceMemoryRegion mirrors struct kvm_userspace_memory_region.
type userspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

// irqLevel mirrors struct kvm_irq_level.
type irqLevel struct {
	IRQ   uint32
	Level uint32
}

// irqfd mirrors struct kvm_irqfd.
type irqfd struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]uint8
}

// ioeventfd mirrors struct kvm_ioeventfd.
type ioeventfd struct {
	DataMatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]uint8
}

// pitConfig mirrors struct kvm_pit_config.
type pitConfig struct {
	Flags uint32
	_     [15]uint32
}

// Flags of the structs above.
const (
	memReadonly = 1 << 1 // KVM_MEM_READONLY

	irqfdFlagDeassign = 1 << 0 // KVM_IRQFD_FLAG_DEASSIGN

	ioeventfdFlagDatamatch = 1 << 0 // KVM_IOEVENTFD_FLAG_DATAMATCH
	ioeventfdFlagPIO       = 1 << 1 // KVM_IOEVENTFD_FLAG_PIO
	ioeventfdFlagDeassign  = 1 << 2 // KVM_IOEVENTFD_FLAG_DEASSIGN

	// pitSpeakerDummy (KVM_PIT_SPEAKER_DUMMY) makes KVM answer the
	// PC speaker port 0x61 itself.
	pitSpeakerDummy = 1
)

// The offsets in struct kvm_run that this package reads and writes; the
// union that describes an exit starts at runExit. kvm_run is shared
// memory (the vCPU's mmap), read with encoding/binary, so these offsets
// are its whole mirror.
const (
	runImmediateExit = 1  // __u8 immediate_exit
	runExitReason    = 8  // __u32 exit_reason
	runExit          = 32 // the union

	// io: __u8 direction, size; __u16 port; __u32 count; __u64 data_offset
	runIODirection  = runExit + 0
	runIOSize       = runExit + 1
	runIOPort       = runExit + 2
	runIOCount      = runExit + 4
	runIODataOffset = runExit + 8

	// mmio: __u64 phys_addr; __u8 data[8]; __u32 len; __u8 is_write
	runMMIOPhysAddr = runExit + 0
	runMMIOData     = runExit + 8
	runMMIOLen      = runExit + 16
	runMMIOIsWrite  = runExit + 20

	// fail_entry: __u64 hardware_entry_failure_reason; __u32 cpu
	runFailEntryReason = runExit + 0
	runFailEntryCPU    = runExit + 8

	// internal: __u32 suberror, ndata; __u64 data[16]
	runInternalSuberror = runExit + 0
	runInternalNData    = runExit + 4
	runInternalData     = runExit + 8

	// system_event: __u32 type, ndata; __u64 data[16] (data[0] was
	// "flags" before Linux 5.18, which had no ndata)
	runSystemEventType  = runExit + 0
	runSystemEventNData = runExit + 4
	runSystemEventData  = runExit + 8

	// hw: __u64 hardware_exit_reason (KVM_EXIT_UNKNOWN)
	runHWExitReason = runExit + 0

	// runSize is sizeof(struct kvm_run); the vCPU mapping is at least
	// this long (KVM_GET_VCPU_MMAP_SIZE adds the I/O data page and the
	// coalesced MMIO ring).
	runSize = 2352
)

// ioctl request numbers: _IO, _IOR, _IOW and _IOWR of type KVMIO (0xAE),
// with the argument struct's size encoded in bits 16–29 (checked against
// these structs in abi_unsafe_test.go).
const (
	kvmGetAPIVersion       = 0xae00     // _IO(KVMIO, 0x00)
	kvmCreateVM            = 0xae01     // _IO(KVMIO, 0x01)
	kvmCheckExtension      = 0xae03     // _IO(KVMIO, 0x03)
	kvmGetVCPUMmapSize     = 0xae04     // _IO(KVMIO, 0x04)
	kvmGetSupportedCPUID   = 0xc008ae05 // _IOWR(KVMIO, 0x05, struct kvm_cpuid2)
	kvmCreateVCPU          = 0xae41     // _IO(KVMIO, 0x41)
	kvmSetUserMemoryRegion = 0x4020ae46 // _IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)
	kvmSetTSSAddr          = 0xae47     // _IO(KVMIO, 0x47)
	kvmSetIdentityMapAddr  = 0x4008ae48 // _IOW(KVMIO, 0x48, __u64)
	kvmCreateIRQChip       = 0xae60     // _IO(KVMIO, 0x60)
	kvmIRQLine             = 0x4008ae61 // _IOW(KVMIO, 0x61, struct kvm_irq_level)
	kvmIRQFD               = 0x4020ae76 // _IOW(KVMIO, 0x76, struct kvm_irqfd)
	kvmCreatePIT2          = 0x4040ae77 // _IOW(KVMIO, 0x77, struct kvm_pit_config)
	kvmIOEventFD           = 0x4040ae79 // _IOW(KVMIO, 0x79, struct kvm_ioeventfd)
	kvmRun                 = 0xae80     // _IO(KVMIO, 0x80)
	kvmGetRegs             = 0x8090ae81 // _IOR(KVMIO, 0x81, struct kvm_regs)
	kvmSetRegs             = 0x4090ae82 // _IOW(KVMIO, 0x82, struct kvm_regs)
	kvmGetSregs            = 0x8138ae83 // _IOR(KVMIO, 0x83, struct kvm_sregs)
	kvmSetSregs            = 0x4138ae84 // _IOW(KVMIO, 0x84, struct kvm_sregs)
	kvmGetMSRs             = 0xc008ae88 // _IOWR(KVMIO, 0x88, struct kvm_msrs)
	kvmSetMSRs             = 0x4008ae89 // _IOW(KVMIO, 0x89, struct kvm_msrs)
	kvmGetFPU              = 0x81a0ae8c // _IOR(KVMIO, 0x8c, struct kvm_fpu)
	kvmSetFPU              = 0x41a0ae8d // _IOW(KVMIO, 0x8d, struct kvm_fpu)
	kvmGetLAPIC            = 0x8400ae8e // _IOR(KVMIO, 0x8e, struct kvm_lapic_state)
	kvmSetLAPIC            = 0x4400ae8f // _IOW(KVMIO, 0x8f, struct kvm_lapic_state)
	kvmSetCPUID2           = 0x4008ae90 // _IOW(KVMIO, 0x90, struct kvm_cpuid2)
)
