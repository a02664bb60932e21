// Package acpi builds the ACPI tables through which a stock Linux guest of
// azote-hv finds its vCPUs, its interrupt controllers, its serial ports,
// its power and reset registers and its virtio-mmio devices: an RSDP, an
// XSDT, a hardware-reduced FADT, a MADT and a DSDT whose AML the package
// encodes itself. Debian's cloud kernel has CONFIG_VIRTIO_MMIO=m but not
// VIRTIO_MMIO_CMDLINE_DEVICES, so the DSDT (a device with _HID "LNRO0005"
// for each transport, as Firecracker does) is the only way the guest's
// virtio_mmio driver learns where the devices are.
//
// Build lays every table out in one contiguous blob for one guest-physical
// address, every pointer in it absolute, every length and checksum set.
// Parse walks such a blob back (RSDP → XSDT → FADT, MADT → DSDT), checking
// signatures, lengths and checksums, and decodes the MADT entries and the
// DSDT's devices: the tests use it to prove that what Build wrote is what
// it was asked for, and it helps to debug a guest that sees the wrong
// machine. Parse treats its input as hostile: every offset and length is
// checked and a bad table is an error, never a panic.
//
// The package only computes bytes. It never touches guest memory, KVM, a
// file or a socket, and never decides the machine's layout: addresses,
// ports and interrupt numbers come from the VMM in Config, and Build
// refuses a Config that would describe an impossible machine (overlapping
// windows, interrupt lines shared or outside the I/O APIC) rather than
// correct it.
package acpi
