//go:build amd64

package kvm

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// VCPU is one virtual CPU and its kvm_run mapping.
//
// A VCPU is not safe for concurrent use: its ioctls, Run and the exit
// accessors belong to one goroutine, which should hold its OS thread
// (runtime.LockOSThread) for the VCPU's life. KVM does not require that
// for correctness; its API documentation asks that vCPU ioctls come from
// the thread that created the vCPU, and the reasons are these. When
// KVM_RUN comes from another thread than the last one, KVM updates the
// vCPU's owning task and waits for an RCU grace period (synchronize_rcu)
// before it enters the guest, milliseconds on a busy host. And the way to
// stop a vCPU that is in the guest is a signal to its thread (tgkill),
// which needs the thread to be known and fixed.
type VCPU struct {
	fd  int
	id  int
	run []byte // the kvm_run mapping, VM.mmapSize ≥ runSize bytes
}

// ID is the vCPU's id, its initial APIC id.
func (c *VCPU) ID() int { return c.id }

// Close unmaps kvm_run and closes the vCPU. Nothing may use the VCPU, or
// an IO or MMIO it returned, afterwards.
func (c *VCPU) Close() error {
	err := unix.Munmap(c.run)
	c.run = nil
	if cerr := unix.Close(c.fd); err == nil {
		err = cerr
	}
	return err
}

// Run enters the guest until the next exit the VMM has to handle and
// returns why. A signal to the thread ends KVM_RUN with EINTR, reported as
// ExitIntr with no error, so that the caller can see whether it was asked
// to stop and otherwise run again. Run does not allocate unless it fails.
func (c *VCPU) Run() (ExitReason, error) {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(c.fd), kvmRun, 0)
	switch errno {
	case 0:
	case unix.EINTR:
		return ExitIntr, nil
	default:
		return 0, fmt.Errorf("kvm: KVM_RUN vCPU %d: %w", c.id, errno)
	}
	return ExitReason(binary.LittleEndian.Uint32(c.run[runExitReason:])), nil
}

// SetImmediateExit sets kvm_run's immediate_exit: while it is set, Run
// returns ExitIntr at once without entering the guest. A VMM sets it from
// the vCPU's own signal handling path, so that a stop request that comes
// between its check and KVM_RUN is not lost.
func (c *VCPU) SetImmediateExit(on bool) {
	var b byte
	if on {
		b = 1
	}
	c.run[runImmediateExit] = b
}

// IO describes the ExitIO that Run just returned.
func (c *VCPU) IO() (IO, error) { return decodeIO(c.run) }

// MMIO describes the ExitMMIO that Run just returned.
func (c *VCPU) MMIO() (MMIO, error) { return decodeMMIO(c.run) }

// FailEntry describes the ExitFailEntry that Run just returned.
func (c *VCPU) FailEntry() FailEntry { return decodeFailEntry(c.run) }

// InternalError describes the ExitInternalError that Run just returned.
func (c *VCPU) InternalError() InternalError { return decodeInternalError(c.run) }

// SystemEvent describes the ExitSystemEvent that Run just returned.
func (c *VCPU) SystemEvent() SystemEvent { return decodeSystemEvent(c.run) }

// HardwareExitReason is the hardware's reason for an ExitUnknown.
func (c *VCPU) HardwareExitReason() uint64 {
	return binary.LittleEndian.Uint64(c.run[runHWExitReason:])
}

// Regs reads the general-purpose registers.
func (c *VCPU) Regs() (Regs, error) {
	var r Regs
	if _, err := ioctlPtr(c.fd, kvmGetRegs, &r); err != nil {
		return Regs{}, fmt.Errorf("kvm: KVM_GET_REGS vCPU %d: %w", c.id, err)
	}
	return r, nil
}

// SetRegs writes the general-purpose registers.
func (c *VCPU) SetRegs(r *Regs) error {
	if _, err := ioctlPtr(c.fd, kvmSetRegs, r); err != nil {
		return fmt.Errorf("kvm: KVM_SET_REGS vCPU %d: %w", c.id, err)
	}
	return nil
}

// Sregs reads the segment, descriptor table and control registers.
func (c *VCPU) Sregs() (Sregs, error) {
	var s Sregs
	if _, err := ioctlPtr(c.fd, kvmGetSregs, &s); err != nil {
		return Sregs{}, fmt.Errorf("kvm: KVM_GET_SREGS vCPU %d: %w", c.id, err)
	}
	return s, nil
}

// SetSregs writes the segment, descriptor table and control registers.
// KVM checks them against the vCPU's CPUID (long mode needs the LM bit),
// so SetCPUID comes first.
func (c *VCPU) SetSregs(s *Sregs) error {
	if _, err := ioctlPtr(c.fd, kvmSetSregs, s); err != nil {
		return fmt.Errorf("kvm: KVM_SET_SREGS vCPU %d: %w", c.id, err)
	}
	return nil
}

// FPU reads the x87 and SSE state.
func (c *VCPU) FPU() (FPU, error) {
	var f FPU
	if _, err := ioctlPtr(c.fd, kvmGetFPU, &f); err != nil {
		return FPU{}, fmt.Errorf("kvm: KVM_GET_FPU vCPU %d: %w", c.id, err)
	}
	return f, nil
}

// SetFPU writes the x87 and SSE state, except MXCSR: x86 KVM's
// KVM_SET_FPU has never copied it (nor KVM_GET_FPU reported it), so a
// vCPU keeps its reset MXCSR, 0x1f80, which is what a booting kernel
// expects anyway.
func (c *VCPU) SetFPU(f *FPU) error {
	if _, err := ioctlPtr(c.fd, kvmSetFPU, f); err != nil {
		return fmt.Errorf("kvm: KVM_SET_FPU vCPU %d: %w", c.id, err)
	}
	return nil
}

// SetMSRs writes model-specific registers. KVM stops at the first one it
// refuses; the error names it.
func (c *VCPU) SetMSRs(entries []MSR) error {
	if len(entries) > maxMSRs {
		return fmt.Errorf("%w: %d MSRs in one call, at most %d", ErrInvalid, len(entries), maxMSRs)
	}
	m := &msrs{NMSRs: uint32(len(entries))}
	copy(m.Entries[:], entries)
	n, err := ioctlPtr(c.fd, kvmSetMSRs, m)
	if err != nil {
		return fmt.Errorf("kvm: KVM_SET_MSRS vCPU %d: %w", c.id, err)
	}
	if n != len(entries) {
		return fmt.Errorf("kvm: KVM_SET_MSRS vCPU %d: MSR %#x refused (%d of %d set)", c.id, entries[n].Index, n, len(entries))
	}
	return nil
}

// GetMSRs reads the MSRs named by entries' Index into their Data.
func (c *VCPU) GetMSRs(entries []MSR) error {
	if len(entries) > maxMSRs {
		return fmt.Errorf("%w: %d MSRs in one call, at most %d", ErrInvalid, len(entries), maxMSRs)
	}
	m := &msrs{NMSRs: uint32(len(entries))}
	copy(m.Entries[:], entries)
	n, err := ioctlPtr(c.fd, kvmGetMSRs, m)
	if err != nil {
		return fmt.Errorf("kvm: KVM_GET_MSRS vCPU %d: %w", c.id, err)
	}
	if n != len(entries) {
		return fmt.Errorf("kvm: KVM_GET_MSRS vCPU %d: MSR %#x refused (%d of %d read)", c.id, entries[n].Index, n, len(entries))
	}
	copy(entries, m.Entries[:n])
	return nil
}

// SetCPUID sets what the guest's CPUID instruction answers. KVM also
// derives from it which features the vCPU has (long mode, x2APIC, ...).
func (c *VCPU) SetCPUID(entries []CPUIDEntry) error {
	if len(entries) > maxCPUIDEntries {
		return fmt.Errorf("%w: %d CPUID entries, at most %d", ErrInvalid, len(entries), maxCPUIDEntries)
	}
	cp := &cpuid2{NEnt: uint32(len(entries))}
	copy(cp.Entries[:], entries)
	if _, err := ioctlPtr(c.fd, kvmSetCPUID2, cp); err != nil {
		return fmt.Errorf("kvm: KVM_SET_CPUID2 vCPU %d: %w", c.id, err)
	}
	return nil
}

// LAPIC reads the in-kernel local APIC's registers.
func (c *VCPU) LAPIC() (LAPICState, error) {
	var s LAPICState
	if _, err := ioctlPtr(c.fd, kvmGetLAPIC, &s); err != nil {
		return LAPICState{}, fmt.Errorf("kvm: KVM_GET_LAPIC vCPU %d: %w", c.id, err)
	}
	return s, nil
}

// SetLAPIC writes the in-kernel local APIC's registers.
func (c *VCPU) SetLAPIC(s *LAPICState) error {
	if _, err := ioctlPtr(c.fd, kvmSetLAPIC, s); err != nil {
		return fmt.Errorf("kvm: KVM_SET_LAPIC vCPU %d: %w", c.id, err)
	}
	return nil
}

// Local APIC register offsets and LVT delivery modes (Intel SDM vol. 3,
// 11.5.1), for wiring LINT0 and LINT1 as a PC does: LINT0 takes the
// 8259's interrupts (ExtINT), LINT1 is the NMI line.
const (
	LAPICLVTLINT0 = 0x350
	LAPICLVTLINT1 = 0x360

	LAPICDeliveryFixed  = 0 << 8
	LAPICDeliveryNMI    = 4 << 8
	LAPICDeliveryExtINT = 7 << 8
	LAPICDeliveryMask   = 7 << 8
	LAPICLVTMasked      = 1 << 16
)

// Reg reads the 32-bit register at offset off (a multiple of 16 below
// 0x400).
func (s *LAPICState) Reg(off int) uint32 { return binary.LittleEndian.Uint32(s.Regs[off:]) }

// SetReg writes the 32-bit register at offset off.
func (s *LAPICState) SetReg(off int, v uint32) { binary.LittleEndian.PutUint32(s.Regs[off:], v) }
