//go:build amd64

package kvm

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// VM is a KVM virtual machine: its memory slots, interrupt controllers,
// eventfds and vCPUs. KVM accepts VM ioctls only from the process that
// created the VM (its address space is the guest memory's).
type VM struct {
	fd       int
	mmapSize int
}

// Close releases this handle. KVM frees the VM once its vCPUs are closed
// too.
func (vm *VM) Close() error { return unix.Close(vm.fd) }

// pageSize is x86's base page: KVM maps guest memory in pages.
const pageSize = 4096

// ErrInvalid marks an argument KVM would refuse, caught before the ioctl.
var ErrInvalid = errors.New("kvm: invalid argument")

// MemoryRegion is one slot of guest physical memory.
type MemoryRegion struct {
	Slot      uint32
	GuestAddr uint64 // page-aligned
	// Memory backs the slot: page-aligned and a whole number of pages.
	// It must be a mapping (mmap of anonymous memory or a memfd), not Go
	// heap, and stay mapped as long as the VM has the slot: KVM keeps
	// its address, not a reference to it.
	Memory []byte
	// ReadOnly slots turn guest writes into MMIO exits (flash, ROM).
	ReadOnly bool
}

// SetUserMemoryRegion creates or changes a memory slot. A guest access
// outside every slot is an MMIO exit.
func (vm *VM) SetUserMemoryRegion(r MemoryRegion) error {
	n := uint64(len(r.Memory))
	if n == 0 || n%pageSize != 0 || r.GuestAddr%pageSize != 0 || hostAddr(r.Memory)%pageSize != 0 {
		return fmt.Errorf("%w: memory slot %d of %#x bytes at guest %#x: want whole, aligned pages", ErrInvalid, r.Slot, n, r.GuestAddr)
	}
	if r.GuestAddr+n < r.GuestAddr {
		return fmt.Errorf("%w: memory slot %d wraps around the guest address space", ErrInvalid, r.Slot)
	}
	m := userspaceMemoryRegion{Slot: r.Slot, GuestPhysAddr: r.GuestAddr, MemorySize: n, UserspaceAddr: hostAddr(r.Memory)}
	if r.ReadOnly {
		m.Flags |= memReadonly
	}
	if _, err := ioctlPtr(vm.fd, kvmSetUserMemoryRegion, &m); err != nil {
		return fmt.Errorf("kvm: KVM_SET_USER_MEMORY_REGION slot %d [%#x, +%#x): %w", r.Slot, r.GuestAddr, n, err)
	}
	return nil
}

// RemoveMemoryRegion deletes a memory slot; its memory can then be
// unmapped.
func (vm *VM) RemoveMemoryRegion(slot uint32) error {
	m := userspaceMemoryRegion{Slot: slot}
	if _, err := ioctlPtr(vm.fd, kvmSetUserMemoryRegion, &m); err != nil {
		return fmt.Errorf("kvm: KVM_SET_USER_MEMORY_REGION delete slot %d: %w", slot, err)
	}
	return nil
}

// SetTSSAddr places the three pages Intel's VMX needs for a real-mode
// guest's task state (unused on AMD, harmless to set) in guest physical
// address space, outside RAM and every device. It must precede the first
// vCPU run.
func (vm *VM) SetTSSAddr(addr uint32) error {
	if _, err := ioctlVal(vm.fd, kvmSetTSSAddr, uintptr(addr)); err != nil {
		return fmt.Errorf("kvm: KVM_SET_TSS_ADDR %#x: %w", addr, err)
	}
	return nil
}

// SetIdentityMapAddr places the page of the identity page table Intel's
// VMX uses for a guest running without paging (unused on AMD), outside RAM
// and every device. It must precede the creation of vCPUs.
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	if _, err := ioctlPtr(vm.fd, kvmSetIdentityMapAddr, &addr); err != nil {
		return fmt.Errorf("kvm: KVM_SET_IDENTITY_MAP_ADDR %#x: %w", addr, err)
	}
	return nil
}

// CreateIRQChip emulates the PC's interrupt controllers in the kernel:
// two 8259 PICs, an IOAPIC and a local APIC per vCPU. GSIs 0–15 go to
// both the PICs and the IOAPIC, 16–23 to the IOAPIC. With it, a guest's
// HLT waits in the kernel instead of exiting. It must precede the
// creation of vCPUs.
func (vm *VM) CreateIRQChip() error {
	if _, err := ioctlVal(vm.fd, kvmCreateIRQChip, 0); err != nil {
		return fmt.Errorf("kvm: KVM_CREATE_IRQCHIP: %w", err)
	}
	return nil
}

// CreatePIT2 emulates the 8254 timer (and the PC speaker port) in the
// kernel, its interrupt on GSI 0. It needs the irqchip.
func (vm *VM) CreatePIT2() error {
	c := pitConfig{Flags: pitSpeakerDummy}
	if _, err := ioctlPtr(vm.fd, kvmCreatePIT2, &c); err != nil {
		return fmt.Errorf("kvm: KVM_CREATE_PIT2: %w", err)
	}
	return nil
}

// IRQLine sets the level of an interrupt line (a GSI) of the in-kernel
// irqchip. An edge-triggered interrupt is a raise followed by a lower.
func (vm *VM) IRQLine(gsi uint32, high bool) error {
	l := irqLevel{IRQ: gsi}
	if high {
		l.Level = 1
	}
	if _, err := ioctlPtr(vm.fd, kvmIRQLine, &l); err != nil {
		return fmt.Errorf("kvm: KVM_IRQ_LINE %d: %w", gsi, err)
	}
	return nil
}

// IRQFD makes each write to eventfd raise gsi (an edge: raise and lower)
// without this process: a device that runs elsewhere (a card) signals the
// guest through it directly. It needs the irqchip.
func (vm *VM) IRQFD(eventfd int, gsi uint32) error {
	f := irqfd{FD: uint32(eventfd), GSI: gsi}
	if _, err := ioctlPtr(vm.fd, kvmIRQFD, &f); err != nil {
		return fmt.Errorf("kvm: KVM_IRQFD fd %d gsi %d: %w", eventfd, gsi, err)
	}
	return nil
}

// RemoveIRQFD undoes IRQFD.
func (vm *VM) RemoveIRQFD(eventfd int, gsi uint32) error {
	f := irqfd{FD: uint32(eventfd), GSI: gsi, Flags: irqfdFlagDeassign}
	if _, err := ioctlPtr(vm.fd, kvmIRQFD, &f); err != nil {
		return fmt.Errorf("kvm: KVM_IRQFD deassign fd %d gsi %d: %w", eventfd, gsi, err)
	}
	return nil
}

// IOEvent is a guest write that KVM turns into an eventfd signal instead
// of an exit: a virtio queue notification goes to the card that serves
// the queue without a round trip through this process.
type IOEvent struct {
	Addr uint64 // guest physical address, or port with PIO
	PIO  bool
	// Len is the access width that matches, 1, 2, 4 or 8 bytes; 0
	// matches a write of any width (KVM_CAP_IOEVENTFD_ANY_LENGTH).
	Len uint32
	FD  int // the eventfd
	// Match, when set, limits the event to writes of exactly Data;
	// other writes to Addr exit as usual.
	Match bool
	Data  uint64
}

func (e IOEvent) raw(flags uint32) (ioeventfd, error) {
	switch e.Len {
	case 0, 1, 2, 4, 8:
	default:
		return ioeventfd{}, fmt.Errorf("%w: ioeventfd length %d", ErrInvalid, e.Len)
	}
	if e.Match && e.Len == 0 {
		return ioeventfd{}, fmt.Errorf("%w: an ioeventfd that matches data needs its length", ErrInvalid)
	}
	f := ioeventfd{Addr: e.Addr, Len: e.Len, FD: int32(e.FD), Flags: flags}
	if e.PIO {
		f.Flags |= ioeventfdFlagPIO
	}
	if e.Match {
		f.Flags |= ioeventfdFlagDatamatch
		f.DataMatch = e.Data
	}
	return f, nil
}

// IOEventFD registers e.
func (vm *VM) IOEventFD(e IOEvent) error {
	f, err := e.raw(0)
	if err != nil {
		return err
	}
	if _, err := ioctlPtr(vm.fd, kvmIOEventFD, &f); err != nil {
		return fmt.Errorf("kvm: KVM_IOEVENTFD %#x: %w", e.Addr, err)
	}
	return nil
}

// RemoveIOEventFD unregisters e, given as it was registered.
func (vm *VM) RemoveIOEventFD(e IOEvent) error {
	f, err := e.raw(ioeventfdFlagDeassign)
	if err != nil {
		return err
	}
	if _, err := ioctlPtr(vm.fd, kvmIOEventFD, &f); err != nil {
		return fmt.Errorf("kvm: KVM_IOEVENTFD deassign %#x: %w", e.Addr, err)
	}
	return nil
}

// CreateVCPU makes vCPU id (its initial APIC id) and maps its kvm_run.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	fd, err := ioctlVal(vm.fd, kvmCreateVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_CREATE_VCPU %d: %w", id, err)
	}
	run, err := unix.Mmap(fd, 0, vm.mmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("kvm: mapping vCPU %d's kvm_run: %w", id, err)
	}
	return &VCPU{fd: fd, id: id, run: run}, nil
}
