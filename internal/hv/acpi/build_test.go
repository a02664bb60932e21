package acpi

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// The machine of azote-hv as internal/hv/devices lays it out: COM1 and
// COM2, the power registers at 0x600-0x602, virtio-mmio windows from
// 0xd000_0000 in the MMIO hole, and the tables in the BIOS area.
const testBase = 0x000e_0000

var (
	testSerial = []Serial{{Port: 0x3f8, IRQ: 4}, {Port: 0x2f8, IRQ: 3}}
	testPower  = Power{SleepControlPort: 0x600, SleepStatusPort: 0x601, SleepTypeS5: 5, ResetPort: 0x602, ResetValue: 1}
)

func testDevices(n int) []VirtioMMIO {
	var d []VirtioMMIO
	for i := range n {
		d = append(d, VirtioMMIO{Base: 0xd000_0000 + uint64(i)*0x1000, Size: 0x1000, GSI: uint32(MinDeviceGSI + i), Level: i%2 == 1})
	}
	return d
}

// Every vCPU count and device count of the issue, built and parsed back:
// what the guest would read is what the VMM asked for.
func TestBuildParseRoundTrip(t *testing.T) {
	for _, vcpus := range []int{1, 2, 8} {
		for _, ndev := range []int{0, 1, 4} {
			t.Run(fmt.Sprintf("vcpus=%d/devices=%d", vcpus, ndev), func(t *testing.T) {
				c := Config{VCPUs: vcpus, Base: testBase, Serial: testSerial, Power: testPower, VirtioMMIO: testDevices(ndev)}
				tb, err := Build(c)
				if err != nil {
					t.Fatal(err)
				}
				if tb.RSDP != testBase {
					t.Errorf("RSDP at %#x, want the base %#x", tb.RSDP, testBase)
				}
				p, err := Parse(tb.Bytes, c.Base, tb.RSDP)
				if err != nil {
					t.Fatal(err)
				}
				checkParsed(t, c, tb, p)
			})
		}
	}
}

// checkParsed asserts that p describes exactly c.
func checkParsed(t *testing.T, c Config, tb Tables, p *Parsed) {
	t.Helper()
	if p.OEMID != oemID {
		t.Errorf("RSDP OEM ID %q", p.OEMID)
	}

	var sigs []string
	end := uint64(0)
	for _, h := range p.Tables {
		sigs = append(sigs, h.Signature)
		if h.Addr%16 != 0 {
			t.Errorf("%s at %#x is not 16-byte aligned", h.Signature, h.Addr)
		}
		if h.OEMID != oemID || h.OEMTableID != oemTableID {
			t.Errorf("%s OEM %q %q", h.Signature, h.OEMID, h.OEMTableID)
		}
		end = max(end, h.Addr+uint64(h.Length))
	}
	if want := []string{"XSDT", "FACP", "APIC", "DSDT"}; !reflect.DeepEqual(sigs, want) {
		t.Errorf("tables %v, want %v", sigs, want)
	}
	if end != c.Base+uint64(len(tb.Bytes)) {
		t.Errorf("last table ends at %#x, the blob at %#x", end, c.Base+uint64(len(tb.Bytes)))
	}
	if p.Tables[0].Addr != p.XSDTAddr {
		t.Errorf("XSDT at %#x, RSDP says %#x", p.Tables[0].Addr, p.XSDTAddr)
	}

	f := p.FADT
	if f.Revision != 6 || f.MinorVersion != 5 || f.Length != 276 {
		t.Errorf("FADT revision %d.%d, %d bytes; want 6.5, 276", f.Revision, f.MinorVersion, f.Length)
	}
	if !f.HWReduced() {
		t.Error("FADT without HW_REDUCED_ACPI")
	}
	if f.DSDTAddr != p.DSDT.Addr {
		t.Errorf("X_DSDT %#x, DSDT at %#x", f.DSDTAddr, p.DSDT.Addr)
	}
	if f.IAPCBootArch != bootNoVGA|bootNoCMOSRTC {
		t.Errorf("IAPC_BOOT_ARCH %#x", f.IAPCBootArch)
	}
	if f.HypervisorVendor != hypervisorVendor {
		t.Errorf("hypervisor vendor %q", f.HypervisorVendor)
	}
	wantFlags := uint32(flagHWReduced | flagPowerButton | flagSleepButton)
	var reset, sleepCtl, sleepSts GAS
	if c.Power.ResetPort != 0 {
		wantFlags |= flagResetReg
		reset = GAS{SpaceID: 1, BitWidth: 8, AccessSize: 1, Address: uint64(c.Power.ResetPort)}
	}
	if c.Power.hasSleep() {
		sleepCtl = GAS{SpaceID: 1, BitWidth: 8, AccessSize: 1, Address: uint64(c.Power.SleepControlPort)}
		sleepSts = GAS{SpaceID: 1, BitWidth: 8, AccessSize: 1, Address: uint64(c.Power.SleepStatusPort)}
	}
	if f.Flags != wantFlags {
		t.Errorf("FADT flags %#x, want %#x", f.Flags, wantFlags)
	}
	if f.ResetReg != reset || f.ResetValue != c.Power.ResetValue {
		t.Errorf("RESET_REG %+v value %#x, want %+v value %#x", f.ResetReg, f.ResetValue, reset, c.Power.ResetValue)
	}
	if f.SleepControl != sleepCtl || f.SleepStatus != sleepSts {
		t.Errorf("sleep registers %+v %+v, want %+v %+v", f.SleepControl, f.SleepStatus, sleepCtl, sleepSts)
	}

	m := p.MADT
	if m.LocalAPICAddr != LocalAPICAddr || m.Flags != madtPCATCompat {
		t.Errorf("MADT local APIC at %#x, flags %#x", m.LocalAPICAddr, m.Flags)
	}
	var lapics []LocalAPIC
	for i := range c.VCPUs {
		lapics = append(lapics, LocalAPIC{ProcessorUID: uint8(i), APICID: uint8(i), Flags: lapicEnabled})
	}
	if !reflect.DeepEqual(m.LocalAPICs, lapics) {
		t.Errorf("local APICs %+v, want %+v", m.LocalAPICs, lapics)
	}
	if want := []IOAPIC{{ID: 0, Addr: IOAPICAddr, GSIBase: 0}}; !reflect.DeepEqual(m.IOAPICs, want) {
		t.Errorf("I/O APICs %+v, want %+v", m.IOAPICs, want)
	}
	if len(m.OtherTypes) != 0 {
		t.Errorf("MADT has other structures: %v", m.OtherTypes)
	}

	d := p.DSDT
	if d.Revision != dsdtRevision {
		t.Errorf("DSDT revision %d", d.Revision)
	}
	if !equalOrEmpty(d.VirtioMMIO, c.VirtioMMIO) {
		t.Errorf("virtio-mmio devices %+v, want %+v", d.VirtioMMIO, c.VirtioMMIO)
	}
	if !equalOrEmpty(d.Serial, c.Serial) {
		t.Errorf("serial ports %+v, want %+v", d.Serial, c.Serial)
	}
	if d.HasS5 != c.Power.hasSleep() || d.SleepTypeS5 != c.Power.SleepTypeS5 {
		t.Errorf("_S5 %v SLP_TYP %d, want %v %d", d.HasS5, d.SleepTypeS5, c.Power.hasSleep(), c.Power.SleepTypeS5)
	}
	var devs []Device
	for i := range c.Serial {
		devs = append(devs, Device{Path: fmt.Sprintf(`\_SB_.COM%d`, i+1), HID: "PNP0501", UID: uint64(i + 1)})
	}
	for i := range c.VirtioMMIO {
		devs = append(devs, Device{Path: fmt.Sprintf(`\_SB_.V%03d`, i), HID: "LNRO0005", UID: uint64(i)})
	}
	if !equalOrEmpty(d.Devices, devs) {
		t.Errorf("devices %+v, want %+v", d.Devices, devs)
	}
}

// equalOrEmpty is reflect.DeepEqual that takes nil and empty as equal.
func equalOrEmpty[T any](a, b []T) bool {
	return len(a) == 0 && len(b) == 0 || reflect.DeepEqual(a, b)
}

// The largest machines Build allows still come out right: 254 vCPUs, and
// every GSI from 5 to 23 with COM ports on the three ISA IRQs left.
func TestBuildLargest(t *testing.T) {
	c := Config{
		VCPUs:      MaxVCPUs,
		Base:       testBase,
		Serial:     []Serial{{0x3f8, 4}, {0x2f8, 3}, {0x3e8, 1}},
		Power:      testPower,
		VirtioMMIO: testDevices(MaxDeviceGSI - MinDeviceGSI + 1),
	}
	tb, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(tb.Bytes, c.Base, tb.RSDP)
	if err != nil {
		t.Fatal(err)
	}
	checkParsed(t, c, tb, p)
}

// Without power registers there is no \_S5 and no RESET_REG, and without
// devices or ports the DSDT is an empty definition block.
func TestBuildBareMachine(t *testing.T) {
	c := Config{VCPUs: 1, Base: 0x10_0000}
	tb, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(tb.Bytes, c.Base, tb.RSDP)
	if err != nil {
		t.Fatal(err)
	}
	checkParsed(t, c, tb, p)
	if p.DSDT.Length != headerLen {
		t.Errorf("DSDT of %d bytes, want just its header", p.DSDT.Length)
	}
}

func TestBuildRejects(t *testing.T) {
	ok := Config{VCPUs: 2, Base: testBase, Serial: testSerial, Power: testPower, VirtioMMIO: testDevices(2)}
	tests := []struct {
		name   string
		modify func(*Config)
		want   error
	}{
		{"no vCPUs", func(c *Config) { c.VCPUs = 0 }, ErrVCPUCount},
		{"255 vCPUs", func(c *Config) { c.VCPUs = 255 }, ErrVCPUCount},
		{"negative vCPUs", func(c *Config) { c.VCPUs = -1 }, ErrVCPUCount},
		{"unaligned base", func(c *Config) { c.Base = testBase + 8 }, ErrAddress},
		{"tables wrap around", func(c *Config) { c.Base = 1<<64 - 16 }, ErrAddress},
		{"empty window", func(c *Config) { c.VirtioMMIO[1].Size = 0 }, ErrDeviceWindow},
		{"window above 4 GiB", func(c *Config) { c.VirtioMMIO[1].Base = 1 << 32 }, ErrDeviceWindow},
		{"window across 4 GiB", func(c *Config) { c.VirtioMMIO[1].Base = 1<<32 - 0x800 }, ErrDeviceWindow},
		{"window wraps", func(c *Config) { c.VirtioMMIO[1].Base, c.VirtioMMIO[1].Size = 1<<64-0x1000, 0x2000 }, ErrDeviceWindow},
		{"windows overlap", func(c *Config) { c.VirtioMMIO[1].Base = c.VirtioMMIO[0].Base + 0xfff }, ErrDeviceWindow},
		{"window on the I/O APIC", func(c *Config) { c.VirtioMMIO[0].Base = IOAPICAddr - 0x800 }, ErrDeviceWindow},
		{"window on the local APIC", func(c *Config) { c.VirtioMMIO[0].Base = LocalAPICAddr + 0xff0 }, ErrDeviceWindow},
		{"window on the tables", func(c *Config) { c.VirtioMMIO[0].Base = testBase + 0x100 }, ErrDeviceWindow},
		{"GSI 4", func(c *Config) { c.VirtioMMIO[0].GSI = 4 }, ErrGSI},
		{"GSI 24", func(c *Config) { c.VirtioMMIO[0].GSI = 24 }, ErrGSI},
		{"shared GSI", func(c *Config) { c.VirtioMMIO[1].GSI = c.VirtioMMIO[0].GSI }, ErrGSI},
		{"GSI of a COM port", func(c *Config) { c.Serial[1].IRQ = 7; c.VirtioMMIO[1].GSI = 7 }, ErrGSI},
		{"five COM ports", func(c *Config) {
			c.Serial = []Serial{{0x3f8, 4}, {0x2f8, 3}, {0x3e8, 10}, {0x2e8, 11}, {0x100, 12}}
		}, ErrSerialPort},
		{"COM port 0", func(c *Config) { c.Serial[0].Port = 0 }, ErrSerialPort},
		{"COM port at the top", func(c *Config) { c.Serial[0].Port = 0xfffc }, ErrSerialPort},
		{"COM IRQ 0", func(c *Config) { c.Serial[0].IRQ = 0 }, ErrSerialPort},
		{"COM IRQ 2", func(c *Config) { c.Serial[0].IRQ = 2 }, ErrSerialPort},
		{"COM IRQ 16", func(c *Config) { c.Serial[0].IRQ = 16 }, ErrSerialPort},
		{"COM ports overlap", func(c *Config) { c.Serial[1].Port = 0x3fc }, ErrSerialPort},
		{"COM ports share an IRQ", func(c *Config) { c.Serial[1].IRQ = 4 }, ErrSerialPort},
		{"sleep control alone", func(c *Config) { c.Power.SleepStatusPort = 0 }, ErrPowerReg},
		{"sleep status alone", func(c *Config) { c.Power.SleepControlPort = 0 }, ErrPowerReg},
		{"SLP_TYP 8", func(c *Config) { c.Power.SleepTypeS5 = 8 }, ErrPowerReg},
		{"SLP_TYP without registers", func(c *Config) { c.Power = Power{SleepTypeS5: 5} }, ErrPowerReg},
		{"reset value without register", func(c *Config) { c.Power.ResetPort = 0 }, ErrPowerReg},
		{"one port twice", func(c *Config) { c.Power.ResetPort = c.Power.SleepStatusPort }, ErrPowerReg},
		{"power port in a UART", func(c *Config) { c.Power.ResetPort = 0x3f9 }, ErrPowerReg},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			c.Serial = append([]Serial(nil), ok.Serial...)
			c.VirtioMMIO = append([]VirtioMMIO(nil), ok.VirtioMMIO...)
			tt.modify(&c)
			tb, err := Build(c)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Build: %v, want %v", err, tt.want)
			}
			if tb.Bytes != nil {
				t.Error("a refused Config still produced tables")
			}
		})
	}
	if _, err := Build(ok); err != nil {
		t.Fatalf("the base Config of these cases is refused: %v", err)
	}
}

// Every byte that a checksum covers is checked: flipping any of them makes
// Parse fail, with ErrChecksum unless the byte is a signature or a length
// (which fail their own checks first). Flipping a byte of the padding
// between tables changes nothing, so no other byte is covered by
// accident.
func TestFlippedByte(t *testing.T) {
	c := Config{VCPUs: 2, Base: testBase, Serial: testSerial, Power: testPower, VirtioMMIO: testDevices(2)}
	tb, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(tb.Bytes, c.Base, tb.RSDP)
	if err != nil {
		t.Fatal(err)
	}
	// Which structure covers each byte, and whether it is a signature or
	// length field there.
	covered := make([]bool, len(tb.Bytes))
	structural := make([]bool, len(tb.Bytes))
	mark := func(off, n int, fields ...[2]int) {
		for i := off; i < off+n; i++ {
			covered[i] = true
		}
		for _, f := range fields {
			for i := off + f[0]; i < off+f[0]+f[1]; i++ {
				structural[i] = true
			}
		}
	}
	mark(0, rsdpLen, [2]int{0, 8}, [2]int{20, 4})
	for _, h := range p.Tables {
		mark(int(h.Addr-c.Base), int(h.Length), [2]int{0, 8})
	}

	for off := range tb.Bytes {
		b := append([]byte(nil), tb.Bytes...)
		b[off] ^= 0x01
		_, err := Parse(b, c.Base, tb.RSDP)
		switch {
		case !covered[off] && err != nil:
			t.Errorf("byte %#x is padding, yet flipping it fails: %v", off, err)
		case covered[off] && err == nil:
			t.Errorf("flipping byte %#x went unnoticed", off)
		case covered[off] && !structural[off] && !errors.Is(err, ErrChecksum):
			t.Errorf("flipping byte %#x: %v, want %v", off, err, ErrChecksum)
		}
	}
}

// Parse refuses addresses outside the blob rather than reading past it.
func TestParseOutOfBounds(t *testing.T) {
	c := Config{VCPUs: 1, Base: testBase}
	tb, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name       string
		blob       []byte
		base, rsdp uint64
	}{
		{"RSDP below the blob", tb.Bytes, testBase, testBase - 16},
		{"RSDP past the blob", tb.Bytes, testBase, testBase + uint64(len(tb.Bytes)) - 8},
		{"RSDP at the top of the address space", tb.Bytes, testBase, 1<<64 - 1},
		{"blob cut before the DSDT ends", tb.Bytes[:len(tb.Bytes)-1], testBase, testBase},
		{"blob at another base", tb.Bytes, testBase + 0x1000, testBase + 0x1000},
		{"empty blob", nil, testBase, testBase},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse(tt.blob, tt.base, tt.rsdp); !errors.Is(err, ErrMalformed) {
				t.Errorf("Parse: %v, want %v", err, ErrMalformed)
			}
		})
	}
}
