//go:build linux && amd64

package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// ExitReason is why KVM_RUN returned (KVM_EXIT_*).
type ExitReason uint32

// The exit reasons an x86 VMM sees. Intr is not the kernel's own
// exit_reason alone: Run also reports it when KVM_RUN returned EINTR.
const (
	ExitUnknown       ExitReason = 0  // KVM_EXIT_UNKNOWN: see VCPU.HardwareExitReason
	ExitException     ExitReason = 1  // KVM_EXIT_EXCEPTION
	ExitIO            ExitReason = 2  // KVM_EXIT_IO: see VCPU.IO
	ExitHypercall     ExitReason = 3  // KVM_EXIT_HYPERCALL
	ExitDebug         ExitReason = 4  // KVM_EXIT_DEBUG
	ExitHLT           ExitReason = 5  // KVM_EXIT_HLT: only without an in-kernel irqchip
	ExitMMIO          ExitReason = 6  // KVM_EXIT_MMIO: see VCPU.MMIO
	ExitIRQWindowOpen ExitReason = 7  // KVM_EXIT_IRQ_WINDOW_OPEN
	ExitShutdown      ExitReason = 8  // KVM_EXIT_SHUTDOWN: a triple fault
	ExitFailEntry     ExitReason = 9  // KVM_EXIT_FAIL_ENTRY: see VCPU.FailEntry
	ExitIntr          ExitReason = 10 // KVM_EXIT_INTR: a signal interrupted KVM_RUN
	ExitInternalError ExitReason = 17 // KVM_EXIT_INTERNAL_ERROR: see VCPU.InternalError
	ExitSystemEvent   ExitReason = 24 // KVM_EXIT_SYSTEM_EVENT: see VCPU.SystemEvent
)

var exitNames = map[ExitReason]string{
	ExitUnknown: "unknown", ExitException: "exception", ExitIO: "io", ExitHypercall: "hypercall",
	ExitDebug: "debug", ExitHLT: "hlt", ExitMMIO: "mmio", ExitIRQWindowOpen: "irq-window-open",
	ExitShutdown: "shutdown", ExitFailEntry: "fail-entry", ExitIntr: "intr",
	ExitInternalError: "internal-error", ExitSystemEvent: "system-event",
}

func (r ExitReason) String() string {
	if s, ok := exitNames[r]; ok {
		return s
	}
	return "exit-" + strconv.FormatUint(uint64(r), 10)
}

// ErrBadExit is returned for an exit whose description in kvm_run does
// not hold together (an I/O data offset outside the mapping, an MMIO
// length over 8): a kernel this package does not understand, never
// something to act on.
var ErrBadExit = errors.New("kvm: malformed exit in kvm_run")

// IO is a port I/O exit. Data holds Count items of Size bytes each,
// inside the vCPU's kvm_run mapping: for an out, what the guest wrote; for
// an in, where the VMM puts what the guest reads, before the next Run.
type IO struct {
	In    bool
	Size  uint8 // 1, 2 or 4
	Port  uint16
	Count uint32 // more than 1 for a rep ins/outs
	Data  []byte
}

// MMIO is a memory-mapped I/O exit: an access to guest physical memory
// that is in no memory slot. Data aliases kvm_run: for a write, the bytes
// written; for a read, where the VMM puts the bytes read, before the next
// Run.
type MMIO struct {
	Addr  uint64
	Write bool
	Data  []byte // Len bytes, 1 to 8
}

// FailEntry is why the CPU refused to enter the guest: on Intel the VMX
// exit reason (with bit 31 set), on AMD SVM's exit code (-1: invalid
// guest state).
type FailEntry struct {
	HardwareReason uint64
	CPU            uint32 // the host CPU that failed the entry
}

// InternalError is a KVM_EXIT_INTERNAL_ERROR: KVM could not go on, most
// often because it could not emulate an instruction.
type InternalError struct {
	Suberror uint32 // KVM_INTERNAL_ERROR_*: 1 emulation, 2 exception in exception, 3 delivery, 4 unexpected exit
	Data     []uint64
}

// InternalErrorEmulation is the suberror for an instruction KVM could not
// emulate.
const InternalErrorEmulation = 1

// SystemEvent is a KVM_EXIT_SYSTEM_EVENT.
type SystemEvent struct {
	Type uint32   // SystemEvent*
	Data []uint64 // with Linux before 5.18, Data[0] is the old flags field
}

// System event types.
const (
	SystemEventShutdown = 1
	SystemEventReset    = 2
	SystemEventCrash    = 3
)

// Each decoder below reads one member of kvm_run's exit union from run,
// the vCPU's mapping (at least runSize bytes, checked when it was made).

func decodeIO(run []byte) (IO, error) {
	io := IO{
		In:    run[runIODirection] == 0, // KVM_EXIT_IO_IN
		Size:  run[runIOSize],
		Port:  binary.LittleEndian.Uint16(run[runIOPort:]),
		Count: binary.LittleEndian.Uint32(run[runIOCount:]),
	}
	off := binary.LittleEndian.Uint64(run[runIODataOffset:])
	if io.Size != 1 && io.Size != 2 && io.Size != 4 {
		return IO{}, fmt.Errorf("%w: I/O size %d", ErrBadExit, io.Size)
	}
	n := uint64(io.Size) * uint64(io.Count)
	if io.Count == 0 || off > uint64(len(run)) || n > uint64(len(run))-off {
		return IO{}, fmt.Errorf("%w: I/O data [%#x, +%d×%d) outside the %d-byte mapping", ErrBadExit, off, io.Count, io.Size, len(run))
	}
	io.Data = run[off : off+n : off+n]
	return io, nil
}

func decodeMMIO(run []byte) (MMIO, error) {
	n := binary.LittleEndian.Uint32(run[runMMIOLen:])
	if n == 0 || n > 8 {
		return MMIO{}, fmt.Errorf("%w: MMIO length %d", ErrBadExit, n)
	}
	return MMIO{
		Addr:  binary.LittleEndian.Uint64(run[runMMIOPhysAddr:]),
		Write: run[runMMIOIsWrite] != 0,
		Data:  run[runMMIOData : runMMIOData+n : runMMIOData+n],
	}, nil
}

func decodeFailEntry(run []byte) FailEntry {
	return FailEntry{
		HardwareReason: binary.LittleEndian.Uint64(run[runFailEntryReason:]),
		CPU:            binary.LittleEndian.Uint32(run[runFailEntryCPU:]),
	}
}

// exitData reads up to 16 u64 words (the kernel's data[16]) at off.
func exitData(run []byte, off int, n uint32) []uint64 {
	n = min(n, 16)
	d := make([]uint64, n)
	for i := range d {
		d[i] = binary.LittleEndian.Uint64(run[off+8*i:])
	}
	return d
}

func decodeInternalError(run []byte) InternalError {
	return InternalError{
		Suberror: binary.LittleEndian.Uint32(run[runInternalSuberror:]),
		Data:     exitData(run, runInternalData, binary.LittleEndian.Uint32(run[runInternalNData:])),
	}
}

func decodeSystemEvent(run []byte) SystemEvent {
	n := binary.LittleEndian.Uint32(run[runSystemEventNData:])
	if n == 0 {
		n = 1 // a kernel before ndata: data[0] is flags
	}
	return SystemEvent{
		Type: binary.LittleEndian.Uint32(run[runSystemEventType:]),
		Data: exitData(run, runSystemEventData, n),
	}
}

func (e FailEntry) String() string {
	return fmt.Sprintf("hardware entry failure reason %#x on host CPU %d", e.HardwareReason, e.CPU)
}

func (e InternalError) String() string {
	return fmt.Sprintf("internal error, suberror %d, data %#x", e.Suberror, e.Data)
}
