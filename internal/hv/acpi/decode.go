package acpi

import (
	"errors"
	"fmt"
)

// Errors of Parse.
var (
	// ErrMalformed: a structure is cut short, points outside the blob,
	// has the wrong signature or size, or holds AML this package does not
	// decode.
	ErrMalformed = errors.New("acpi: malformed table")
	// ErrChecksum: a table's bytes do not sum to zero.
	ErrChecksum = errors.New("acpi: bad checksum")
)

// Parsed is what Parse found in a blob of tables.
type Parsed struct {
	OEMID    string // the RSDP's
	XSDTAddr uint64
	// Tables lists every table in the order Parse met it: the XSDT, its
	// entries, then the DSDT.
	Tables []Header
	FADT   FADT
	MADT   MADT
	DSDT   DSDT
}

// Header is an SDT header (§5.2.6) and where the table was.
type Header struct {
	Signature  string
	Addr       uint64
	Length     uint32
	Revision   uint8
	OEMID      string
	OEMTableID string
}

// FADT is the part of the FADT that a hardware-reduced guest uses.
type FADT struct {
	Header
	MinorVersion     uint8
	Flags            uint32
	IAPCBootArch     uint16
	DSDTAddr         uint64 // X_DSDT, or DSDT when X_DSDT is zero
	ResetReg         GAS
	ResetValue       uint8
	SleepControl     GAS
	SleepStatus      GAS
	HypervisorVendor string
}

// HWReduced reports the HW_REDUCED_ACPI flag.
func (f *FADT) HWReduced() bool { return f.Flags&flagHWReduced != 0 }

// GAS is a Generic Address Structure (§5.2.3.2).
type GAS struct {
	SpaceID    uint8 // 0 system memory, 1 system I/O
	BitWidth   uint8
	BitOffset  uint8
	AccessSize uint8
	Address    uint64
}

// MADT is the MADT's interrupt controllers.
type MADT struct {
	Header
	LocalAPICAddr uint32
	Flags         uint32
	LocalAPICs    []LocalAPIC
	IOAPICs       []IOAPIC
	// OtherTypes lists the types of the structures not decoded above, in
	// order (an Interrupt Source Override is type 2).
	OtherTypes []uint8
}

// LocalAPIC is a Processor Local APIC structure.
type LocalAPIC struct {
	ProcessorUID uint8
	APICID       uint8
	Flags        uint32 // bit 0: enabled
}

// IOAPIC is an I/O APIC structure.
type IOAPIC struct {
	ID      uint8
	Addr    uint32
	GSIBase uint32
}

// DSDT is what the DSDT's AML declares, as far as this package decodes
// it.
type DSDT struct {
	Header
	// Devices is every Device object, in AML order.
	Devices []Device
	// Serial and VirtioMMIO are the devices whose _HID is PNP0501 or
	// LNRO0005, decoded from their _CRS, in AML order.
	Serial     []Serial
	VirtioMMIO []VirtioMMIO
	// HasS5 reports a \_S5 object; SleepTypeS5 is its SLP_TYPa.
	HasS5       bool
	SleepTypeS5 uint8
}

// Device is one Device object of the DSDT.
type Device struct {
	Path string // absolute, such as `\_SB_.V000`
	HID  string // a string _HID, or an EISA ID shown as "PNP0501"
	UID  uint64
}

// Parse walks the tables in blob, which sits at guest-physical address
// base, from the RSDP at rsdpAddr: it checks every signature, length and
// checksum, and decodes the FADT, the MADT and the DSDT. blob is
// untrusted: any inconsistency is an error wrapping ErrMalformed or
// ErrChecksum.
func Parse(blob []byte, base, rsdpAddr uint64) (*Parsed, error) {
	d := decoder{mem: blob, base: base}
	return d.parse(rsdpAddr)
}

// decoder reads tables out of one blob.
type decoder struct {
	mem  []byte
	base uint64
	// ignoreChecksums lets the fuzz test reach the decoding past the
	// checksums, which random mutations almost never keep right.
	ignoreChecksums bool
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// at returns the n bytes at guest-physical addr, if they are all in the
// blob.
func (d *decoder) at(addr, n uint64) ([]byte, error) {
	if addr < d.base || addr-d.base > uint64(len(d.mem)) || n > uint64(len(d.mem))-(addr-d.base) {
		return nil, malformed("%d bytes at %#x are outside the tables (%d bytes at %#x)", n, addr, len(d.mem), d.base)
	}
	off := addr - d.base
	return d.mem[off : off+n], nil
}

func (d *decoder) checksum(what string, b []byte) error {
	if s := sum8(b); s != 0 && !d.ignoreChecksums {
		return fmt.Errorf("%w: %s sums to %#02x", ErrChecksum, what, s)
	}
	return nil
}

func (d *decoder) parse(rsdpAddr uint64) (*Parsed, error) {
	p := &Parsed{}
	r, err := d.at(rsdpAddr, rsdpLen)
	if err != nil {
		return nil, fmt.Errorf("RSDP: %w", err)
	}
	if string(r[0:8]) != "RSD PTR " {
		return nil, malformed("RSDP signature %q", r[0:8])
	}
	if err := d.checksum("RSDP (first 20 bytes)", r[:rsdpChecksum1]); err != nil {
		return nil, err
	}
	if r[15] < rsdpRevision {
		return nil, malformed("RSDP revision %d has no XSDT", r[15])
	}
	// The extended checksum covers Length bytes, which a later revision
	// may make longer than the 36 known here.
	n := le.Uint32(r[20:])
	if n < rsdpLen {
		return nil, malformed("RSDP length %d", n)
	}
	if r, err = d.at(rsdpAddr, uint64(n)); err != nil {
		return nil, fmt.Errorf("RSDP: %w", err)
	}
	if err := d.checksum("RSDP", r); err != nil {
		return nil, err
	}
	p.OEMID = string(r[9:15])
	p.XSDTAddr = le.Uint64(r[24:])

	xh, x, err := d.table(p.XSDTAddr, "XSDT")
	if err != nil {
		return nil, err
	}
	p.Tables = append(p.Tables, xh)
	entries := x[headerLen:]
	if len(entries)%8 != 0 {
		return nil, malformed("XSDT length %d leaves a partial entry", xh.Length)
	}
	var haveFADT, haveMADT bool
	for i := 0; i < len(entries); i += 8 {
		h, t, err := d.table(le.Uint64(entries[i:]), "")
		if err != nil {
			return nil, fmt.Errorf("XSDT entry %d: %w", i/8, err)
		}
		p.Tables = append(p.Tables, h)
		switch h.Signature {
		case "FACP":
			if haveFADT {
				return nil, malformed("XSDT lists two FADTs")
			}
			haveFADT = true
			if p.FADT, err = decodeFADT(h, t); err != nil {
				return nil, err
			}
		case "APIC":
			if haveMADT {
				return nil, malformed("XSDT lists two MADTs")
			}
			haveMADT = true
			if p.MADT, err = decodeMADT(h, t); err != nil {
				return nil, err
			}
		case "DSDT":
			return nil, malformed("XSDT lists the DSDT, which only the FADT may point at")
		}
	}
	if !haveFADT || !haveMADT {
		return nil, malformed("XSDT lacks the FADT or the MADT (%d entries)", len(entries)/8)
	}

	h, t, err := d.table(p.FADT.DSDTAddr, "DSDT")
	if err != nil {
		return nil, err
	}
	p.Tables = append(p.Tables, h)
	if p.DSDT, err = decodeDSDT(h, t); err != nil {
		return nil, err
	}
	return p, nil
}

// table reads the SDT at addr, checks its length and checksum and, if want
// is not empty, its signature.
func (d *decoder) table(addr uint64, want string) (Header, []byte, error) {
	hb, err := d.at(addr, headerLen)
	if err != nil {
		return Header{}, nil, err
	}
	h := Header{
		Signature:  string(hb[0:4]),
		Addr:       addr,
		Length:     le.Uint32(hb[4:]),
		Revision:   hb[8],
		OEMID:      string(hb[10:16]),
		OEMTableID: string(hb[16:24]),
	}
	if want != "" && h.Signature != want {
		return Header{}, nil, malformed("table at %#x is %q, want %q", addr, h.Signature, want)
	}
	if h.Length < headerLen {
		return Header{}, nil, malformed("%s at %#x: length %d is shorter than its header", h.Signature, addr, h.Length)
	}
	t, err := d.at(addr, uint64(h.Length))
	if err != nil {
		return Header{}, nil, fmt.Errorf("%s: %w", h.Signature, err)
	}
	if err := d.checksum(h.Signature, t); err != nil {
		return Header{}, nil, err
	}
	return h, t, nil
}

func decodeFADT(h Header, t []byte) (FADT, error) {
	// Up to X_DSDT: a FADT of revision 2 or later has it; what follows
	// is read only if the table is long enough (ACPI 5.0 added the sleep
	// registers, 6.0 the hypervisor vendor).
	if len(t) < fadtXDSDT+8 {
		return FADT{}, malformed("FADT of %d bytes has no X_DSDT", len(t))
	}
	f := FADT{
		Header:       h,
		MinorVersion: t[fadtMinorVersion],
		Flags:        le.Uint32(t[fadtFlags:]),
		IAPCBootArch: le.Uint16(t[fadtIAPCBootArch:]),
		ResetReg:     gas(t[fadtResetReg:]),
		ResetValue:   t[fadtResetValue],
		DSDTAddr:     le.Uint64(t[fadtXDSDT:]),
	}
	if f.DSDTAddr == 0 {
		f.DSDTAddr = uint64(le.Uint32(t[40:]))
	}
	if len(t) >= fadtSleepStatus+gasLen {
		f.SleepControl = gas(t[fadtSleepControl:])
		f.SleepStatus = gas(t[fadtSleepStatus:])
	}
	if len(t) >= fadtHypervisorID+8 {
		f.HypervisorVendor = string(t[fadtHypervisorID : fadtHypervisorID+8])
	}
	return f, nil
}

func gas(b []byte) GAS {
	return GAS{SpaceID: b[0], BitWidth: b[1], BitOffset: b[2], AccessSize: b[3], Address: le.Uint64(b[4:])}
}

func decodeMADT(h Header, t []byte) (MADT, error) {
	if len(t) < madtFixedLen {
		return MADT{}, malformed("MADT of %d bytes", len(t))
	}
	m := MADT{Header: h, LocalAPICAddr: le.Uint32(t[36:]), Flags: le.Uint32(t[40:])}
	for off := madtFixedLen; off < len(t); {
		if len(t)-off < 2 {
			return MADT{}, malformed("MADT structure at offset %d is cut short", off)
		}
		typ, n := t[off], int(t[off+1])
		if n < 2 || n > len(t)-off {
			return MADT{}, malformed("MADT structure type %d at offset %d has length %d", typ, off, n)
		}
		s := t[off : off+n]
		switch typ {
		case madtTypeLocalAPIC:
			if n != madtLAPICLen {
				return MADT{}, malformed("Processor Local APIC structure of %d bytes", n)
			}
			m.LocalAPICs = append(m.LocalAPICs, LocalAPIC{ProcessorUID: s[2], APICID: s[3], Flags: le.Uint32(s[4:])})
		case madtTypeIOAPIC:
			if n != madtIOAPICLn {
				return MADT{}, malformed("I/O APIC structure of %d bytes", n)
			}
			m.IOAPICs = append(m.IOAPICs, IOAPIC{ID: s[2], Addr: le.Uint32(s[4:]), GSIBase: le.Uint32(s[8:])})
		default:
			m.OtherTypes = append(m.OtherTypes, typ)
		}
		off += n
	}
	return m, nil
}

func decodeDSDT(h Header, t []byte) (DSDT, error) {
	ns, err := decodeAML(t[headerLen:])
	if err != nil {
		return DSDT{}, err
	}
	dsdt := DSDT{Header: h}
	if v, ok := ns.root[`\_S5_`]; ok {
		if v.kind != amlPackage || len(v.elems) == 0 || v.elems[0].kind != amlInteger || v.elems[0].n > 7 {
			return DSDT{}, malformed(`\_S5_ is not a package whose first element is a 3-bit SLP_TYP`)
		}
		dsdt.HasS5 = true
		dsdt.SleepTypeS5 = uint8(v.elems[0].n)
	}
	for _, dev := range ns.devices {
		d, err := dev.summary()
		if err != nil {
			return DSDT{}, err
		}
		dsdt.Devices = append(dsdt.Devices, d)
		switch d.HID {
		case hidSerial:
			s, err := dev.serial()
			if err != nil {
				return DSDT{}, err
			}
			dsdt.Serial = append(dsdt.Serial, s)
		case HIDVirtioMMIO:
			v, err := dev.virtioMMIO()
			if err != nil {
				return DSDT{}, err
			}
			dsdt.VirtioMMIO = append(dsdt.VirtioMMIO, v)
		}
	}
	return dsdt, nil
}
