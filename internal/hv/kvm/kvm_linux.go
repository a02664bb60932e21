//go:build amd64

package kvm

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// DevicePath is KVM's device.
const DevicePath = "/dev/kvm"

// APIVersion is the KVM API version this package speaks; it has been 12
// since Linux 2.6.22 and the kernel promises it will not change.
const APIVersion = 12

var (
	// ErrAPIVersion is returned by Open for a KVM that speaks another
	// API version.
	ErrAPIVersion = errors.New("kvm: unsupported KVM API version")
	// ErrMissingCap is returned by Require for a capability KVM lacks.
	ErrMissingCap = errors.New("kvm: missing capability")
)

// System is an open /dev/kvm: the handle for system ioctls, and the
// factory of VMs.
type System struct {
	fd       int
	mmapSize int // KVM_GET_VCPU_MMAP_SIZE
}

// Open opens /dev/kvm and checks its API version.
func Open() (*System, error) {
	fd, err := unix.Open(DevicePath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("kvm: open %s: %w", DevicePath, err)
	}
	return NewSystem(fd)
}

// NewSystem takes fd, an open /dev/kvm (one handed to a process that may
// not open devices itself), and checks its API version. The System owns
// fd from then on, even when NewSystem fails.
func NewSystem(fd int) (*System, error) {
	s := &System{fd: fd}
	v, err := ioctlVal(fd, kvmGetAPIVersion, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("kvm: KVM_GET_API_VERSION: %w", err)
	}
	if v != APIVersion {
		s.Close()
		return nil, fmt.Errorf("%w: %d, want %d", ErrAPIVersion, v, APIVersion)
	}
	n, err := ioctlVal(fd, kvmGetVCPUMmapSize, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("kvm: KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	if n < runSize {
		s.Close()
		return nil, fmt.Errorf("kvm: KVM_GET_VCPU_MMAP_SIZE is %d, less than struct kvm_run (%d)", n, runSize)
	}
	s.mmapSize = n
	return s, nil
}

// Close closes /dev/kvm. VMs made from it stay usable: each holds its own
// reference to KVM.
func (s *System) Close() error { return unix.Close(s.fd) }

// VCPUMmapSize is the size of a vCPU's shared kvm_run mapping.
func (s *System) VCPUMmapSize() int { return s.mmapSize }

// Cap is a KVM capability (KVM_CAP_*), asked with CheckExtension.
type Cap uint32

// Capabilities azote-hv relies on, and the vCPU limits.
const (
	CapIRQChip            Cap = 0    // KVM_CAP_IRQCHIP: in-kernel PIC, IOAPIC and LAPIC
	CapHLT                Cap = 1    // KVM_CAP_HLT
	CapUserMemory         Cap = 3    // KVM_CAP_USER_MEMORY: KVM_SET_USER_MEMORY_REGION
	CapSetTSSAddr         Cap = 4    // KVM_CAP_SET_TSS_ADDR
	CapExtCPUID           Cap = 7    // KVM_CAP_EXT_CPUID: KVM_SET_CPUID2, KVM_GET_SUPPORTED_CPUID
	CapNRVCPUs            Cap = 9    // KVM_CAP_NR_VCPUS: the recommended vCPU limit
	CapNRMemslots         Cap = 10   // KVM_CAP_NR_MEMSLOTS
	CapIRQFD              Cap = 0x20 // KVM_CAP_IRQFD
	CapPIT2               Cap = 0x21 // KVM_CAP_PIT2
	CapIOEventFD          Cap = 0x24 // KVM_CAP_IOEVENTFD
	CapSetIdentityMapAddr Cap = 0x25 // KVM_CAP_SET_IDENTITY_MAP_ADDR
	CapMaxVCPUs           Cap = 0x42 // KVM_CAP_MAX_VCPUS: the hard vCPU limit
	CapImmediateExit      Cap = 0x88 // KVM_CAP_IMMEDIATE_EXIT
)

var capNames = map[Cap]string{
	CapIRQChip: "IRQCHIP", CapHLT: "HLT", CapUserMemory: "USER_MEMORY", CapSetTSSAddr: "SET_TSS_ADDR",
	CapExtCPUID: "EXT_CPUID", CapNRVCPUs: "NR_VCPUS", CapNRMemslots: "NR_MEMSLOTS", CapIRQFD: "IRQFD",
	CapPIT2: "PIT2", CapIOEventFD: "IOEVENTFD", CapSetIdentityMapAddr: "SET_IDENTITY_MAP_ADDR",
	CapMaxVCPUs: "MAX_VCPUS", CapImmediateExit: "IMMEDIATE_EXIT",
}

func (c Cap) String() string {
	if s, ok := capNames[c]; ok {
		return "KVM_CAP_" + s
	}
	return fmt.Sprintf("KVM_CAP(%d)", uint32(c))
}

// RequiredCaps are the capabilities of every ioctl this package wraps.
var RequiredCaps = []Cap{
	CapIRQChip, CapUserMemory, CapSetTSSAddr, CapExtCPUID, CapIRQFD, CapPIT2,
	CapIOEventFD, CapSetIdentityMapAddr, CapImmediateExit,
}

// CheckExtension asks KVM about a capability: 0 means absent, a positive
// number present (for some, a limit).
func (s *System) CheckExtension(c Cap) (int, error) {
	n, err := ioctlVal(s.fd, kvmCheckExtension, uintptr(c))
	if err != nil {
		return 0, fmt.Errorf("kvm: KVM_CHECK_EXTENSION %v: %w", c, err)
	}
	return n, nil
}

// Require returns ErrMissingCap naming each of caps KVM lacks.
func (s *System) Require(caps ...Cap) error {
	var missing []string
	for _, c := range caps {
		n, err := s.CheckExtension(c)
		if err != nil {
			return err
		}
		if n <= 0 {
			missing = append(missing, c.String())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissingCap, strings.Join(missing, ", "))
	}
	return nil
}

// SupportedCPUID returns the CPUID leaves KVM can present to a guest on
// this host, the starting point of a guest's CPUID.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	c := &cpuid2{NEnt: maxCPUIDEntries}
	if _, err := ioctlPtr(s.fd, kvmGetSupportedCPUID, c); err != nil {
		return nil, fmt.Errorf("kvm: KVM_GET_SUPPORTED_CPUID: %w", err)
	}
	if c.NEnt > maxCPUIDEntries {
		return nil, fmt.Errorf("kvm: KVM_GET_SUPPORTED_CPUID returned %d entries, room for %d", c.NEnt, maxCPUIDEntries)
	}
	return append([]CPUIDEntry(nil), c.Entries[:c.NEnt]...), nil
}

// CreateVM makes a VM with no memory and no vCPUs.
func (s *System) CreateVM() (*VM, error) {
	// Type 0: the default VM type (a plain x86 VM, not a
	// confidential-computing one).
	fd, err := ioctlVal(s.fd, kvmCreateVM, 0)
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_CREATE_VM: %w", err)
	}
	// KVM makes VM and vCPU descriptors close-on-exec itself.
	return &VM{fd: fd, mmapSize: s.mmapSize}, nil
}

// ioctlVal issues an ioctl whose argument is a value, not a pointer.
func ioctlVal(fd int, req, arg uintptr) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return int(r), errno
	}
	return int(r), nil
}
