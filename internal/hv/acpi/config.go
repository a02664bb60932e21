package acpi

import (
	"errors"
	"fmt"
	"slices"
)

// The interrupt controllers of a KVM guest with the in-kernel irqchip
// (KVM_CREATE_IRQCHIP): a local APIC per vCPU and one I/O APIC, at the
// addresses where the architecture puts them at reset.
const (
	LocalAPICAddr = 0xfee0_0000
	IOAPICAddr    = 0xfec0_0000
	// IOAPICPins is the size of KVM's in-kernel I/O APIC: GSIs 0..23, with
	// KVM's default routing GSI n → pin n.
	IOAPICPins = 24

	// apicWindow is the register window of either APIC; no device may
	// claim any part of it.
	apicWindow = 0x1000
)

// Limits of what Build describes.
const (
	// MaxVCPUs: Processor Local APIC structures carry a one-byte APIC ID
	// and 0xFF is the broadcast destination; more vCPUs would need x2APIC
	// structures, which azote-hv does not use.
	MaxVCPUs = 254

	// MinDeviceGSI and MaxDeviceGSI bound the interrupt lines of
	// virtio-mmio devices: 0..4 belong to the timer, the keyboard
	// controller, the PIC cascade and the two legacy COM ports, and 23 is
	// the I/O APIC's last pin.
	MinDeviceGSI = 5
	MaxDeviceGSI = IOAPICPins - 1

	// MaxSerialPorts is COM1..COM4.
	MaxSerialPorts = 4

	// uartWindow is the register window of a 16550 UART.
	uartWindow = 8
)

// HIDVirtioMMIO is the ACPI hardware ID Linux's virtio_mmio driver binds
// to (its acpi_device_id table; Firecracker and QEMU's microvm use it too).
const HIDVirtioMMIO = "LNRO0005"

// hidSerial is the PNP ID of a 16550A-compatible COM port.
const hidSerial = "PNP0501"

// Errors of Build, one per kind of impossible machine, each wrapped with
// the offending value.
var (
	ErrVCPUCount    = errors.New("acpi: vCPU count out of range")
	ErrAddress      = errors.New("acpi: table address unusable")
	ErrDeviceWindow = errors.New("acpi: virtio-mmio window unusable")
	ErrGSI          = errors.New("acpi: interrupt line unusable")
	ErrSerialPort   = errors.New("acpi: serial port unusable")
	ErrPowerReg     = errors.New("acpi: power register unusable")
)

// Config is the machine the tables describe.
type Config struct {
	// VCPUs is the number of vCPUs, 1..MaxVCPUs. vCPU i gets APIC ID i and
	// ACPI processor UID i, which is KVM's default APIC ID for vCPU i; the
	// VMM's CPUID must report the same IDs.
	VCPUs int

	// Base is the guest-physical address where Tables.Bytes goes, a
	// multiple of 16 (the RSDP sits at Base, and a guest that scans the
	// BIOS area 0xE0000-0xFFFFF for it looks only at 16-byte boundaries).
	Base uint64

	// Serial lists the 16550 UARTs, each described as a PNP0501 device:
	// Serial[0] is \_SB.COM1 with _UID 1, and so on.
	Serial []Serial

	// Power is the hardware-reduced sleep and reset registers; the zero
	// value describes none.
	Power Power

	// VirtioMMIO lists the virtio-mmio transports in the order the guest
	// should number them.
	VirtioMMIO []VirtioMMIO
}

// Serial is a 16550 UART in port I/O space with an ISA interrupt.
type Serial struct {
	Port uint16 // base of its 8-port register window
	IRQ  uint8  // ISA IRQ, 1..15; KVM routes it to the same I/O APIC pin
}

// Power is the set of one-byte registers in port I/O space through which a
// hardware-reduced ACPI guest powers off and resets the machine. A zero
// port means the register is absent.
type Power struct {
	// SleepControlPort and SleepStatusPort are SLEEP_CONTROL_REG and
	// SLEEP_STATUS_REG: both or neither (Linux offers S5 only when both
	// exist). With them the DSDT declares \_S5 with SleepTypeS5, the
	// SLP_TYP that Linux then writes to the control register.
	SleepControlPort uint16
	SleepStatusPort  uint16
	SleepTypeS5      uint8 // 0..7, a 3-bit field

	// ResetPort is RESET_REG; writing ResetValue to it resets the machine.
	ResetPort  uint16
	ResetValue uint8
}

func (p Power) hasSleep() bool { return p.SleepControlPort != 0 || p.SleepStatusPort != 0 }

// VirtioMMIO is one virtio-mmio transport: its register window and its
// interrupt line.
type VirtioMMIO struct {
	Base uint64 // guest-physical, below 4 GiB (a Memory32Fixed descriptor)
	Size uint64
	GSI  uint32 // MinDeviceGSI..MaxDeviceGSI, its own (not shared)
	// Level asks for a level-triggered interrupt. The default, edge, is
	// what a KVM irqfd without a resample fd delivers: one pulse per
	// signal, which is how a card interrupts the guest.
	Level bool
}

// validate refuses a Config that describes an impossible machine. The
// checks that need the size of the tables come later, in validateBlob.
func (c *Config) validate() error {
	if c.VCPUs < 1 || c.VCPUs > MaxVCPUs {
		return fmt.Errorf("%w: %d (want 1..%d)", ErrVCPUCount, c.VCPUs, MaxVCPUs)
	}
	if c.Base%16 != 0 {
		return fmt.Errorf("%w: %#x is not 16-byte aligned", ErrAddress, c.Base)
	}
	if err := c.validateSerial(); err != nil {
		return err
	}
	if err := c.validatePower(); err != nil {
		return err
	}
	return c.validateVirtio()
}

// validateBlob checks the size bytes of tables at Base: they must not wrap
// around the address space nor lie inside a device's window.
func (c *Config) validateBlob(size uint64) error {
	if c.Base+size < c.Base {
		return fmt.Errorf("%w: %d bytes at %#x wrap around", ErrAddress, size, c.Base)
	}
	for i, d := range c.VirtioMMIO {
		if overlaps(d.Base, d.Size, c.Base, size) {
			return fmt.Errorf("%w: device %d at %#x+%#x overlaps the ACPI tables at %#x+%#x", ErrDeviceWindow, i, d.Base, d.Size, c.Base, size)
		}
	}
	return nil
}

func (c *Config) validateSerial() error {
	if len(c.Serial) > MaxSerialPorts {
		return fmt.Errorf("%w: %d ports (at most %d)", ErrSerialPort, len(c.Serial), MaxSerialPorts)
	}
	for i, s := range c.Serial {
		if s.Port == 0 || uint32(s.Port)+uartWindow > 1<<16 {
			return fmt.Errorf("%w: COM%d at port %#x", ErrSerialPort, i+1, s.Port)
		}
		// The IRQ descriptor is a 16-bit mask of ISA IRQs; 0 is the
		// timer's and 2 the PIC cascade, which no device can have.
		if s.IRQ == 0 || s.IRQ == 2 || s.IRQ > 15 {
			return fmt.Errorf("%w: COM%d IRQ %d (want an ISA IRQ 1..15 other than 2)", ErrSerialPort, i+1, s.IRQ)
		}
		for j, o := range c.Serial[:i] {
			if overlaps(uint64(s.Port), uartWindow, uint64(o.Port), uartWindow) {
				return fmt.Errorf("%w: COM%d at %#x overlaps COM%d at %#x", ErrSerialPort, i+1, s.Port, j+1, o.Port)
			}
			if s.IRQ == o.IRQ {
				return fmt.Errorf("%w: COM%d and COM%d share IRQ %d", ErrSerialPort, j+1, i+1, s.IRQ)
			}
		}
	}
	return nil
}

func (c *Config) validatePower() error {
	p := c.Power
	if p.hasSleep() {
		if p.SleepControlPort == 0 || p.SleepStatusPort == 0 {
			return fmt.Errorf("%w: sleep control %#x and status %#x must both be set", ErrPowerReg, p.SleepControlPort, p.SleepStatusPort)
		}
		if p.SleepTypeS5 > 7 {
			return fmt.Errorf("%w: SLP_TYP %d does not fit in 3 bits", ErrPowerReg, p.SleepTypeS5)
		}
	} else if p.SleepTypeS5 != 0 {
		return fmt.Errorf("%w: SLP_TYP %d without sleep registers", ErrPowerReg, p.SleepTypeS5)
	}
	if p.ResetPort == 0 && p.ResetValue != 0 {
		return fmt.Errorf("%w: reset value %#x without a reset register", ErrPowerReg, p.ResetValue)
	}
	ports := []uint16{p.SleepControlPort, p.SleepStatusPort, p.ResetPort}
	for i, a := range ports {
		if a != 0 && slices.Contains(ports[:i], a) {
			return fmt.Errorf("%w: port %#x used twice", ErrPowerReg, a)
		}
		for j, s := range c.Serial {
			if a != 0 && overlaps(uint64(a), 1, uint64(s.Port), uartWindow) {
				return fmt.Errorf("%w: port %#x is inside COM%d", ErrPowerReg, a, j+1)
			}
		}
	}
	return nil
}

func (c *Config) validateVirtio() error {
	// Windows no device may overlap: the two APICs' registers (and the
	// tables, checked in validateBlob), then each other.
	type window struct {
		what       string
		base, size uint64
	}
	taken := []window{
		{"the local APIC", LocalAPICAddr, apicWindow},
		{"the I/O APIC", IOAPICAddr, apicWindow},
	}
	for i, d := range c.VirtioMMIO {
		if d.Size == 0 || d.Base+d.Size < d.Base || d.Base+d.Size > 1<<32 {
			return fmt.Errorf("%w: device %d: %#x bytes at %#x (want a non-empty window below 4 GiB)", ErrDeviceWindow, i, d.Size, d.Base)
		}
		for _, w := range taken {
			if overlaps(d.Base, d.Size, w.base, w.size) {
				return fmt.Errorf("%w: device %d at %#x+%#x overlaps %s at %#x+%#x", ErrDeviceWindow, i, d.Base, d.Size, w.what, w.base, w.size)
			}
		}
		taken = append(taken, window{fmt.Sprintf("device %d", i), d.Base, d.Size})

		if d.GSI < MinDeviceGSI || d.GSI > MaxDeviceGSI {
			return fmt.Errorf("%w: device %d GSI %d (want %d..%d)", ErrGSI, i, d.GSI, MinDeviceGSI, MaxDeviceGSI)
		}
		// Each interrupt is declared Exclusive, so no two owners may
		// share a line: the guest would program one I/O APIC pin for two
		// drivers that each think it is theirs.
		for j, s := range c.Serial {
			if d.GSI == uint32(s.IRQ) {
				return fmt.Errorf("%w: device %d GSI %d is COM%d's IRQ", ErrGSI, i, d.GSI, j+1)
			}
		}
		for j, o := range c.VirtioMMIO[:i] {
			if d.GSI == o.GSI {
				return fmt.Errorf("%w: devices %d and %d share GSI %d", ErrGSI, j, i, d.GSI)
			}
		}
	}
	return nil
}

// overlaps reports whether [a, a+m) and [b, b+n) intersect; neither range
// may wrap (the callers have checked).
func overlaps(a, m, b, n uint64) bool { return a < b+n && b < a+m }
