//go:build linux && amd64

package kvm

import (
	"testing"
	"unsafe"
)

// Why unsafe: the kernel reads and writes these structs by their memory
// layout, which only unsafe.Sizeof and unsafe.Offsetof observe. The
// expected numbers are the kernel's, printed from <linux/kvm.h> (Linux
// 6.1 uapi) with sizeof and offsetof by a C compiler; they are part of
// the stable ABI and do not change between kernels.

func TestStructSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"kvm_regs", unsafe.Sizeof(Regs{}), 144},
		{"kvm_segment", unsafe.Sizeof(Segment{}), 24},
		{"kvm_dtable", unsafe.Sizeof(DTable{}), 16},
		{"kvm_sregs", unsafe.Sizeof(Sregs{}), 312},
		{"kvm_fpu", unsafe.Sizeof(FPU{}), 416},
		{"kvm_msr_entry", unsafe.Sizeof(MSR{}), 16},
		{"kvm_msrs header", unsafe.Offsetof(msrs{}.Entries), 8},
		{"kvm_cpuid_entry2", unsafe.Sizeof(CPUIDEntry{}), 40},
		{"kvm_cpuid2 header", unsafe.Offsetof(cpuid2{}.Entries), 8},
		{"kvm_lapic_state", unsafe.Sizeof(LAPICState{}), 1024},
		{"kvm_userspace_memory_region", unsafe.Sizeof(userspaceMemoryRegion{}), 32},
		{"kvm_irq_level", unsafe.Sizeof(irqLevel{}), 8},
		{"kvm_irqfd", unsafe.Sizeof(irqfd{}), 32},
		{"kvm_ioeventfd", unsafe.Sizeof(ioeventfd{}), 64},
		{"kvm_pit_config", unsafe.Sizeof(pitConfig{}), 64},

		{"kvm_sregs.gdt", unsafe.Offsetof(Sregs{}.GDT), 192},
		{"kvm_sregs.cr0", unsafe.Offsetof(Sregs{}.CR0), 224},
		{"kvm_sregs.efer", unsafe.Offsetof(Sregs{}.EFER), 264},
		{"kvm_sregs.interrupt_bitmap", unsafe.Offsetof(Sregs{}.InterruptBitmap), 280},
		{"kvm_fpu.xmm", unsafe.Offsetof(FPU{}.XMM), 152},
		{"kvm_fpu.mxcsr", unsafe.Offsetof(FPU{}.MXCSR), 408},
		{"kvm_segment.unusable", unsafe.Offsetof(Segment{}.Unusable), 22},
		{"kvm_ioeventfd.flags", unsafe.Offsetof(ioeventfd{}.Flags), 24},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d bytes here, %d in the kernel", c.name, c.got, c.want)
		}
	}
}

// Each request number is _IOC of its direction and its struct's size;
// the constants are the kernel's values, so this catches a struct whose
// size went wrong and a number copied wrongly.
func TestIoctlNumbers(t *testing.T) {
	const (
		none  = 0
		write = 1
		read  = 2
	)
	ioc := func(dir, nr, size uintptr) uintptr { return dir<<30 | size<<16 | 0xae<<8 | nr }
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"KVM_GET_API_VERSION", kvmGetAPIVersion, ioc(none, 0x00, 0)},
		{"KVM_CREATE_VM", kvmCreateVM, ioc(none, 0x01, 0)},
		{"KVM_CHECK_EXTENSION", kvmCheckExtension, ioc(none, 0x03, 0)},
		{"KVM_GET_VCPU_MMAP_SIZE", kvmGetVCPUMmapSize, ioc(none, 0x04, 0)},
		{"KVM_GET_SUPPORTED_CPUID", kvmGetSupportedCPUID, ioc(read|write, 0x05, unsafe.Offsetof(cpuid2{}.Entries))},
		{"KVM_CREATE_VCPU", kvmCreateVCPU, ioc(none, 0x41, 0)},
		{"KVM_SET_USER_MEMORY_REGION", kvmSetUserMemoryRegion, ioc(write, 0x46, unsafe.Sizeof(userspaceMemoryRegion{}))},
		{"KVM_SET_TSS_ADDR", kvmSetTSSAddr, ioc(none, 0x47, 0)},
		{"KVM_SET_IDENTITY_MAP_ADDR", kvmSetIdentityMapAddr, ioc(write, 0x48, unsafe.Sizeof(uint64(0)))},
		{"KVM_CREATE_IRQCHIP", kvmCreateIRQChip, ioc(none, 0x60, 0)},
		{"KVM_IRQ_LINE", kvmIRQLine, ioc(write, 0x61, unsafe.Sizeof(irqLevel{}))},
		{"KVM_IRQFD", kvmIRQFD, ioc(write, 0x76, unsafe.Sizeof(irqfd{}))},
		{"KVM_CREATE_PIT2", kvmCreatePIT2, ioc(write, 0x77, unsafe.Sizeof(pitConfig{}))},
		{"KVM_IOEVENTFD", kvmIOEventFD, ioc(write, 0x79, unsafe.Sizeof(ioeventfd{}))},
		{"KVM_RUN", kvmRun, ioc(none, 0x80, 0)},
		{"KVM_GET_REGS", kvmGetRegs, ioc(read, 0x81, unsafe.Sizeof(Regs{}))},
		{"KVM_SET_REGS", kvmSetRegs, ioc(write, 0x82, unsafe.Sizeof(Regs{}))},
		{"KVM_GET_SREGS", kvmGetSregs, ioc(read, 0x83, unsafe.Sizeof(Sregs{}))},
		{"KVM_SET_SREGS", kvmSetSregs, ioc(write, 0x84, unsafe.Sizeof(Sregs{}))},
		{"KVM_GET_MSRS", kvmGetMSRs, ioc(read|write, 0x88, unsafe.Offsetof(msrs{}.Entries))},
		{"KVM_SET_MSRS", kvmSetMSRs, ioc(write, 0x89, unsafe.Offsetof(msrs{}.Entries))},
		{"KVM_GET_FPU", kvmGetFPU, ioc(read, 0x8c, unsafe.Sizeof(FPU{}))},
		{"KVM_SET_FPU", kvmSetFPU, ioc(write, 0x8d, unsafe.Sizeof(FPU{}))},
		{"KVM_GET_LAPIC", kvmGetLAPIC, ioc(read, 0x8e, unsafe.Sizeof(LAPICState{}))},
		{"KVM_SET_LAPIC", kvmSetLAPIC, ioc(write, 0x8f, unsafe.Sizeof(LAPICState{}))},
		{"KVM_SET_CPUID2", kvmSetCPUID2, ioc(write, 0x90, unsafe.Offsetof(cpuid2{}.Entries))},
	} {
		if c.got != c.want {
			t.Errorf("%s: %#x, _IOC gives %#x", c.name, c.got, c.want)
		}
	}
}
