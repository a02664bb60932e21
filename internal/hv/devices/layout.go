package devices

// The guest-visible map of azote-hv's emulated devices. All of them sit
// in x86 port I/O space: a port exit costs no instruction decoding, and a
// stock kernel finds the legacy ones (COM1, COM2, the i8042) without any
// table at all.
//
//	port          len  device            IRQ  what the guest sees
//	0x060-0x064     5  I8042             -    keyboard controller, no keyboard or mouse; 0x64 ← 0xFE resets
//	0x2f8-0x2ff     8  UART (COM2)       3    16550A, azote-agent's control stream to azoted
//	0x3f8-0x3ff     8  UART (COM1)       4    16550A, the console (ttyS0)
//	0x600           1  Power             -    ACPI SLEEP_CONTROL_REG: write SLP_TYP=5|SLP_EN → power off
//	0x601           1  Power             -    ACPI SLEEP_STATUS_REG: WAK_STS, write 1 to clear
//	0x602           1  Power             -    ACPI RESET_REG: write ResetValue → reboot
//	0x608           1  BootMarker        -    write BootMarkerMagic once → boot time recorded
//
// 0x600-0x60f is azote's own platform block: no chipset sits there on
// this machine, so no Linux driver probes it. (QEMU's q35 puts the ICH9
// PM block at 0x600; 0x608 is its read-only PM timer, so a boot marker
// written under the QEMU engine lands on a register that ignores it.)
const (
	// COM1Port and COM1IRQ are the console UART: ttyS0, console=ttyS0.
	COM1Port = 0x3f8
	COM1IRQ  = 4

	// COM2Port and COM2IRQ are the agent's control port: ttyS1 in the
	// guest, a byte stream to azoted on the host.
	COM2Port = 0x2f8
	COM2IRQ  = 3

	// UARTPortLen is the register window of one UART.
	UARTPortLen = 8

	// I8042Port is the window of the keyboard controller: data at 0x60,
	// status (read) and command (write) at 0x64. Ports 0x61-0x63 inside
	// the window are not the controller's: 0x61 (PC speaker, NMI status)
	// is answered inside KVM by the in-kernel PIT (KVM_CREATE_PIT2) and
	// never reaches the VMM, and 0x62 and 0x63 read 0xff.
	I8042Port    = 0x60
	I8042PortLen = 5

	// PowerPort is the base of the ACPI hardware-reduced power registers,
	// one byte each. The FADT (revision 5 or later, HW_REDUCED_ACPI set)
	// points at them with Generic Address Structures {SystemIO (1), bit
	// width 8, bit offset 0, access size 1 (byte), address}:
	//
	//	SLEEP_CONTROL_REG = SleepControlPort
	//	SLEEP_STATUS_REG  = SleepStatusPort
	//	RESET_REG         = ResetPort, RESET_VALUE = ResetValue, and the
	//	                    RESET_REG_SUP flag set
	//
	// and the DSDT declares Name (_S5, Package () { SleepTypeS5, 0, 0, 0 })
	// (the first element is the SLP_TYP Linux writes) and no other _Sx, so
	// the guest never asks for a state this device cannot enter.
	PowerPort        = 0x600
	PowerPortLen     = 3
	SleepControlPort = PowerPort + 0
	SleepStatusPort  = PowerPort + 1
	ResetPort        = PowerPort + 2

	// ResetValue written to ResetPort reboots the guest.
	ResetValue = 0x01

	// SleepTypeS5 is the SLP_TYP of soft-off, as the DSDT's _S5 declares it.
	SleepTypeS5 = 5

	// Sleep control register fields (ACPI 6.5 §4.8.3.7): SLP_TYP in bits
	// 2-4, SLP_EN in bit 5. Sleep status register: WAK_STS in bit 7.
	SleepTypeShift = 2
	SleepTypeMask  = 0x1c
	SleepEnable    = 0x20
	WakeStatus     = 0x80

	// SleepControlS5 is the byte Linux writes to SleepControlPort to power
	// off: SLP_TYP=SleepTypeS5 with SLP_EN.
	SleepControlS5 = SleepTypeS5<<SleepTypeShift | SleepEnable

	// BootMarkerPort is where the guest writes BootMarkerMagic once it is
	// up. A Go program such as azote-agent can write it through /dev/port
	// (a one-byte pwrite at offset 0x608; no inline assembly needed), a
	// shell with `printf '\173' | dd of=/dev/port bs=1 seek=1544`. 123 is Firecracker's boot-complete value, so an init
	// written for Firecracker's boot timer needs only the port changed.
	BootMarkerPort    = 0x608
	BootMarkerPortLen = 1
	BootMarkerMagic   = 123
)
