package acpi

import (
	"encoding/binary"
	"fmt"
)

// Tables is the output of Build.
type Tables struct {
	// Bytes is every table, laid out for Config.Base: copy it there.
	Bytes []byte
	// RSDP is the guest-physical address of the RSDP (Config.Base), for
	// the zero page's acpi_rsdp_addr or PVH's rsdp_paddr.
	RSDP uint64
}

// Build lays out the tables that describe c, at c.Base, in this order:
//
//	RSDP  revision 2, points at the XSDT only (no RSDT)
//	XSDT  the FADT and the MADT
//	FADT  revision 6.5, hardware-reduced; points at the DSDT
//	MADT  a Processor Local APIC per vCPU, one I/O APIC
//	DSDT  \_S5, then \_SB_ with the COM ports and the virtio-mmio devices
//
// each table on a 16-byte boundary. It returns an error wrapping one of
// the Err* values for a Config it cannot describe.
func Build(c Config) (Tables, error) {
	if err := c.validate(); err != nil {
		return Tables{}, err
	}
	dsdtBody := dsdtAML(&c)

	xsdtAt := align16(rsdpLen)
	fadtAt := align16(xsdtAt + headerLen + 2*8)
	madtAt := align16(fadtAt + fadtLen)
	dsdtAt := align16(madtAt + madtLen(c.VCPUs))
	size := dsdtAt + headerLen + len(dsdtBody)
	if err := c.validateBlob(uint64(size)); err != nil {
		return Tables{}, err
	}

	b := make([]byte, size)
	at := func(off int) uint64 { return c.Base + uint64(off) }
	copy(b, rsdp(at(xsdtAt)))
	copy(b[xsdtAt:], xsdt(at(fadtAt), at(madtAt)))
	copy(b[fadtAt:], fadt(at(dsdtAt), c.Power))
	copy(b[madtAt:], madt(c.VCPUs))
	copy(b[dsdtAt:], table("DSDT", dsdtRevision, dsdtBody))
	return Tables{Bytes: b, RSDP: c.Base}, nil
}

func align16(n int) int { return (n + 15) &^ 15 }

// Every table carries the same identity, so a guest's dmesg and
// /sys/firmware/acpi/tables name azote-hv as their author.
const (
	oemID           = "AZOTE "   // 6 bytes
	oemTableID      = "AZOTEHV " // 8 bytes
	oemRevision     = 1
	creatorID       = "AZHV" // the "ASL compiler": this package
	creatorRevision = 1
	// hypervisorVendor is the FADT's Hypervisor Vendor Identity.
	hypervisorVendor = "AZOTE-HV"
)

// Sizes and revisions of the structures (ACPI 6.5 §5.2).
const (
	rsdpLen      = 36
	headerLen    = 36 // every SDT's header (§5.2.6)
	fadtLen      = 276
	madtFixedLen = 44 // header, local APIC address, flags
	madtLAPICLen = 8
	madtIOAPICLn = 12

	rsdpRevision  = 2 // ACPI 2.0+: has the XSDT address
	xsdtRevision  = 1
	fadtRevision  = 6 // with fadtMinor: ACPI 6.5
	fadtMinor     = 5
	madtRevision  = 6
	dsdtRevision  = 2 // 2 or more: AML integers are 64 bits wide
	checksumAt    = 9 // offset of an SDT header's checksum
	rsdpChecksum1 = 20
)

func madtLen(vcpus int) int { return madtFixedLen + vcpus*madtLAPICLen + madtIOAPICLn }

var le = binary.LittleEndian

// table is an SDT: the header (§5.2.6) for signature and revision, then
// body, with the length and checksum filled in.
func table(signature string, revision uint8, body []byte) []byte {
	t := make([]byte, headerLen, headerLen+len(body))
	copy(t[0:4], signature)
	le.PutUint32(t[4:], uint32(headerLen+len(body)))
	t[8] = revision
	copy(t[10:16], oemID)
	copy(t[16:24], oemTableID)
	le.PutUint32(t[24:], oemRevision)
	copy(t[28:32], creatorID)
	le.PutUint32(t[32:], creatorRevision)
	return seal(append(t, body...))
}

// seal sets an SDT's checksum so that all its bytes sum to zero.
func seal(t []byte) []byte {
	t[checksumAt] = 0
	t[checksumAt] = -sum8(t)
	return t
}

// rsdp is the Root System Description Pointer (§5.2.5.3), revision 2. Its
// RsdtAddress stays zero: a revision-2 RSDP with an XSDT address sends
// every current OS to the XSDT, whose 64-bit pointers need no second,
// 32-bit copy of the table list.
func rsdp(xsdtAddr uint64) []byte {
	b := make([]byte, rsdpLen)
	copy(b[0:8], "RSD PTR ")
	copy(b[9:15], oemID)
	b[15] = rsdpRevision
	le.PutUint32(b[20:], rsdpLen)
	le.PutUint64(b[24:], xsdtAddr)
	// The first checksum covers the ACPI 1.0 part (bytes 0-19), the
	// extended one the whole structure, the first checksum included.
	b[8] = -sum8(b[:rsdpChecksum1])
	b[32] = -sum8(b)
	return b
}

// xsdt is the Extended System Description Table (§5.2.8): 64-bit
// addresses of every table but the DSDT, which only the FADT names.
func xsdt(entries ...uint64) []byte {
	body := make([]byte, 0, 8*len(entries))
	for _, e := range entries {
		body = le.AppendUint64(body, e)
	}
	return table("XSDT", xsdtRevision, body)
}

// FADT fields and flags (§5.2.9), offsets from the start of the table.
const (
	fadtIAPCBootArch = 109
	fadtFlags        = 112
	fadtResetReg     = 116
	fadtResetValue   = 128
	fadtMinorVersion = 131
	fadtXDSDT        = 140
	fadtSleepControl = 244
	fadtSleepStatus  = 256
	fadtHypervisorID = 268

	// Fixed Feature Flags.
	flagPowerButton = 1 << 4  // PWR_BUTTON: no fixed-hardware power button
	flagSleepButton = 1 << 5  // SLP_BUTTON: no fixed-hardware sleep button
	flagResetReg    = 1 << 10 // RESET_REG_SUP
	flagHWReduced   = 1 << 20 // HW_REDUCED_ACPI

	// IA-PC Boot Architecture Flags (§5.2.9.3) that are set.
	bootNoVGA     = 1 << 2
	bootNoCMOSRTC = 1 << 5
)

// Generic Address Structure (§5.2.3.2) address spaces and access sizes.
const (
	gasLen        = 12
	gasSystemIO   = 1
	gasByteAccess = 1
)

// fadt is the Fixed ACPI Description Table, revision 6.5, of a
// hardware-reduced ACPI platform (§4.1): no PM1 event/control blocks, no
// PM timer, no GPE blocks, no SCI, no FACS. Linux honours HW_REDUCED_ACPI
// by ignoring every one of those fields, keeping the 8259 PIC out of its
// interrupt setup and not setting up the PIT or HPET as its timer (a KVM
// guest keeps time with kvmclock and the local APIC timer), so the hv
// emulates none of them.
// What a hardware-reduced guest still needs from here is the DSDT's
// address and, to power off and reboot, the sleep and reset registers.
func fadt(dsdtAddr uint64, p Power) []byte {
	t := table("FACP", fadtRevision, make([]byte, fadtLen-headerLen))
	flags := uint32(flagHWReduced | flagPowerButton | flagSleepButton)
	// No VGA, and no CMOS RTC: the hv emulates neither, so Linux must not
	// register the rtc_cmos platform device (the wall clock comes from
	// kvmclock). Neither LEGACY_DEVICES (bit 0) nor 8042 (bit 1) is set,
	// so Linux skips the PnP BIOS and leaves its i8042 driver off: the
	// i8042 the hv has is only there for a reset pulse.
	le.PutUint16(t[fadtIAPCBootArch:], bootNoVGA|bootNoCMOSRTC)
	if p.ResetPort != 0 {
		flags |= flagResetReg
		putIOByteGAS(t[fadtResetReg:], p.ResetPort)
		t[fadtResetValue] = p.ResetValue
	}
	le.PutUint32(t[fadtFlags:], flags)
	t[fadtMinorVersion] = fadtMinor
	// The 32-bit DSDT field stays zero: "if X_DSDT is non-zero, DSDT must
	// be ignored", and the tables may sit anywhere.
	le.PutUint64(t[fadtXDSDT:], dsdtAddr)
	if p.hasSleep() {
		putIOByteGAS(t[fadtSleepControl:], p.SleepControlPort)
		putIOByteGAS(t[fadtSleepStatus:], p.SleepStatusPort)
	}
	copy(t[fadtHypervisorID:fadtHypervisorID+8], hypervisorVendor)
	return seal(t)
}

// putIOByteGAS writes a Generic Address Structure for a one-byte register
// at an I/O port: space SystemIO, 8 bits wide at bit 0, byte access.
func putIOByteGAS(b []byte, port uint16) {
	b[0] = gasSystemIO
	b[1] = 8
	b[2] = 0
	b[3] = gasByteAccess
	le.PutUint64(b[4:], uint64(port))
}

// MADT fields and structures (§5.2.12).
const (
	madtPCATCompat = 1 << 0

	madtTypeLocalAPIC = 0
	madtTypeIOAPIC    = 1
	lapicEnabled      = 1 << 0

	// ioapicID is the I/O APIC's ID as KVM's in-kernel I/O APIC reports
	// it after reset; the MADT says the same so that Linux has no reason
	// to renumber it.
	ioapicID = 0
)

// madt is the Multiple APIC Description Table: the local APICs, enabled,
// with APIC ID and processor UID i for vCPU i (the first entry is the
// boot processor, as the spec asks), then the I/O APIC with all 24 pins
// from GSI 0.
//
// PCAT_COMPAT is set because KVM's in-kernel irqchip does include the
// dual 8259 PICs, and the flag is how the spec tells the OS to keep them
// masked. A hardware-reduced Linux never touches them (its legacy_pic is
// the null one), and KVM's default routing sends GSIs 0-15 to the PIC as
// well as to the I/O APIC, so keeping the PIC quiet (IMR 0xFF through
// KVM_SET_IRQCHIP, or the boot vCPU's LINT0 masked) is the VMM's part.
//
// There are no Interrupt Source Overrides: KVM routes GSI n to I/O APIC
// pin n for every line, so each ISA IRQ is its GSI, edge-triggered and
// active-high, which is the default an OS assumes without an override.
// (QEMU needs IRQ0 → GSI2 because it routes the PIT to pin 2; KVM's
// default routing does not, and a hardware-reduced guest does not use the
// PIT anyway. There is no SCI to override either.)
func madt(vcpus int) []byte {
	body := make([]byte, 0, madtLen(vcpus)-headerLen)
	body = le.AppendUint32(body, LocalAPICAddr)
	body = le.AppendUint32(body, madtPCATCompat)
	for i := range vcpus {
		body = append(body, madtTypeLocalAPIC, madtLAPICLen, byte(i), byte(i))
		body = le.AppendUint32(body, lapicEnabled)
	}
	body = append(body, madtTypeIOAPIC, madtIOAPICLn, ioapicID, 0)
	body = le.AppendUint32(body, IOAPICAddr)
	body = le.AppendUint32(body, 0) // GSI base
	return table("APIC", madtRevision, body)
}

// dsdtAML is the DSDT's definition block:
//
//	Name (_S5, Package () { SleepTypeS5, 0, 0, 0 })     if there are sleep registers
//	Scope (\_SB) {
//	    Device (COM1) { _HID EisaId("PNP0501"), _UID 1, _CRS { IO, IRQ } }
//	    ...
//	    Device (V000) { _HID "LNRO0005", _UID 0, _CCA 1, _CRS { Memory32Fixed, Interrupt } }
//	    ...
//	}
//
// The COM ports are here, though Linux's 8250 driver also finds them at
// their legacy addresses without any table, because a hardware-reduced
// Linux has no legacy PIC and so no fixed ISA IRQ numbers (nr_legacy_irqs()
// is 0, and the I/O APIC's IRQs are allocated dynamically): Linux IRQ 4,
// which the legacy probe assumes for COM1, is not I/O APIC pin 4. Described
// by ACPI, the port is claimed by 8250_pnp, which gets its interrupt
// through acpi_register_gsi and replaces the legacy registration.
//
// _CCA (cache-coherent access) is 1: the card reads and writes guest RAM
// coherently. x86 Linux assumes that when _CCA is missing; arm64 requires
// the object, so stating it keeps the tables honest for either.
func dsdtAML(c *Config) []byte {
	var aml []byte
	if c.Power.hasSleep() {
		// SLP_TYPa first; b and the two reserved elements zero. A
		// hardware-reduced guest writes only SLP_TYPa.
		aml = append(aml, name("_S5_", pkgOf(integer(uint64(c.Power.SleepTypeS5)), integer(0), integer(0), integer(0)))...)
	}
	var devs [][]byte
	for i, s := range c.Serial {
		devs = append(devs, device(fmt.Sprintf("COM%d", i+1),
			name("_HID", dword(eisaID(hidSerial))),
			name("_UID", integer(uint64(i+1))),
			name("_CRS", resourceTemplate(ioPort(s.Port, uartWindow), irq(s.IRQ))),
		))
	}
	for i, d := range c.VirtioMMIO {
		devs = append(devs, device(fmt.Sprintf("V%03d", i),
			name("_HID", str(HIDVirtioMMIO)),
			name("_UID", integer(uint64(i))),
			name("_CCA", integer(1)),
			name("_CRS", resourceTemplate(memory32Fixed(uint32(d.Base), uint32(d.Size)), extendedInterrupt(d.GSI, d.Level))),
		))
	}
	if len(devs) > 0 {
		aml = append(aml, scope(`\_SB_`, devs...)...)
	}
	return aml
}
