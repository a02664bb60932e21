package acpi

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// The DSDT body for COM1, the power registers and one virtio-mmio device,
// encoded by hand from the ACPI 6.5 grammar (§20.2) and resource
// descriptor layouts (§6.4), one object per line.
func TestGoldenDSDT(t *testing.T) {
	c := Config{
		VCPUs:      1,
		Serial:     []Serial{{Port: 0x3f8, IRQ: 4}},
		Power:      testPower,
		VirtioMMIO: []VirtioMMIO{{Base: 0xd000_0000, Size: 0x1000, GSI: 5}},
	}
	want := cat(
		// Name (_S5, Package (4) { 5, Zero, Zero, Zero }):
		// NameOp "_S5_" PackageOp PkgLength=7 NumElements=4 BytePrefix 5, Zero ×3.
		"08 5F 53 35 5F  12 07 04  0A 05  00 00 00",
		// Scope (\_SB): ScopeOp, PkgLength 120 in two bytes (lead 0x40|0x8,
		// then 120>>4 = 7), RootChar "_SB_".
		"10 48 07  5C 5F 53 42 5F",
		// Device (COM1): ExtOpPrefix DeviceOp, PkgLength 44 in one byte.
		"5B 82 2C  43 4F 4D 31",
		// Name (_HID, EisaId ("PNP0501")): DWordPrefix 0x0105D041.
		"08 5F 48 49 44  0C 41 D0 05 01",
		// Name (_UID, One).
		"08 5F 55 49 44  01",
		// Name (_CRS, ResourceTemplate): BufferOp PkgLength=17 BufferSize=BytePrefix 14,
		"08 5F 43 52 53  11 11 0A 0E",
		// IO (Decode16, 0x3F8, 0x3F8, 1, 8): tag 0x47, info 1 (16-bit), min, max, align, length,
		"47 01 F8 03 F8 03 01 08",
		// IRQ (Edge, ActiveHigh, Exclusive) {4}: tag 0x23, mask 1<<4, flags edge,
		"23 10 00 01",
		// End Tag: the template's bytes sum to 0x2F4, so the checksum is 0x0C.
		"79 0C",
		// Device (V000): PkgLength 65 in two bytes (lead 0x40|0x1, then 65>>4 = 4).
		"5B 82 41 04  56 30 30 30",
		// Name (_HID, "LNRO0005"): StringPrefix, the characters, NUL.
		"08 5F 48 49 44  0D 4C 4E 52 4F 30 30 30 35 00",
		// Name (_UID, Zero), Name (_CCA, One).
		"08 5F 55 49 44  00",
		"08 5F 43 43 41  01",
		// Name (_CRS, ResourceTemplate): BufferOp PkgLength=26 BufferSize=BytePrefix 23,
		"08 5F 43 52 53  11 1A 0A 17",
		// Memory32Fixed (ReadWrite, 0xD0000000, 0x1000): tag 0x86, length 9, info 1 (writable),
		"86 09 00 01  00 00 00 D0  00 10 00 00",
		// Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) {5}: tag 0x89,
		// length 6, flags consumer|edge, one interrupt, GSI 5,
		"89 06 00 03 01  05 00 00 00",
		// End Tag: the template's bytes sum to 0x281, so the checksum is 0x7F.
		"79 7F",
	)
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if got := dsdtAML(&c); !bytes.Equal(got, want) {
		t.Errorf("DSDT AML\n got % X\nwant % X", got, want)
	}
}

// cat joins hex byte strings such as "5B 82"; they are the tests' own
// constants, so a typo in one is a bug in the test and panics.
func cat(lines ...string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(strings.Join(lines, " ")), ""))
	if err != nil {
		panic(err)
	}
	return b
}

func TestPkgLength(t *testing.T) {
	tests := []struct {
		contents int
		want     string
	}{
		{0, "01"},
		{62, "3F"},          // 63 with itself: the largest one-byte length
		{63, "41 04"},       // 65 = 0x041
		{0xffd, "4F FF"},    // 0xFFF: the largest two-byte length
		{0xffe, "81 00 01"}, // 0x1001
		{0xffffc, "8F FF FF"},
		{0xffffd, "C1 00 00 01"},
		{1<<28 - 5, "CF FF FF FF"},
	}
	for _, tt := range tests {
		got := pkgLength(tt.contents)
		if want := cat(tt.want); !bytes.Equal(got, want) {
			t.Errorf("pkgLength(%#x) = % X, want % X", tt.contents, got, want)
			continue
		}
		// The decoder reads it back: the package ends after the contents
		// (checked for the lengths small enough to allocate).
		if tt.contents > 1<<21 {
			continue
		}
		b := make([]byte, len(got)+tt.contents)
		copy(b, got)
		p := amlParser{b: b}
		end, next, err := p.pkgLength(0, len(b))
		if err != nil || end != len(b) || next != len(got) {
			t.Errorf("decoding % X: end %d next %d %v, want %d %d", got, end, next, err, len(b), len(got))
		}
	}
}

func TestInteger(t *testing.T) {
	for _, tt := range []struct {
		v    uint64
		want string
	}{
		{0, "00"},
		{1, "01"},
		{2, "0A 02"},
		{0xff, "0A FF"},
		{0x100, "0B 00 01"},
		{0xffff, "0B FF FF"},
		{0x10000, "0C 00 00 01 00"},
		{0xffff_ffff, "0C FF FF FF FF"},
		{1 << 32, "0E 00 00 00 00 01 00 00 00"},
	} {
		got := integer(tt.v)
		if want := cat(tt.want); !bytes.Equal(got, want) {
			t.Errorf("integer(%#x) = % X, want % X", tt.v, got, want)
		}
		p := amlParser{b: got}
		v, next, err := p.dataObject(0, len(got), 0)
		if err != nil || v.kind != amlInteger || v.n != tt.v || next != len(got) {
			t.Errorf("decoding % X: %+v %d %v", got, v, next, err)
		}
	}
}

func TestEISAID(t *testing.T) {
	for _, tt := range []struct {
		id   string
		want uint32
	}{
		{"PNP0501", 0x0105d041}, // what iasl compiles EisaId ("PNP0501") to
		{"PNP0303", 0x0303d041},
		{"PNP0A08", 0x080ad041},
		{"ABC1F00", 0x001f4304},
	} {
		if got := eisaID(tt.id); got != tt.want {
			t.Errorf("eisaID(%q) = %#x, want %#x", tt.id, got, tt.want)
		}
		if got := eisaString(tt.want); got != tt.id {
			t.Errorf("eisaString(%#x) = %q, want %q", tt.want, got, tt.id)
		}
	}
}

func TestNameString(t *testing.T) {
	for _, tt := range []struct {
		path string
		want string
	}{
		{"_HID", "5F 48 49 44"},
		{"_S5", "5F 53 35 5F"},
		{`\_SB_`, "5C 5F 53 42 5F"},
		{`\_SB_.COM1`, "5C 2E 5F 53 42 5F 43 4F 4D 31"},
		{`\_SB_.PCI0.S08`, "5C 2F 03 5F 53 42 5F 50 43 49 30 53 30 38 5F"},
	} {
		got := nameString(tt.path)
		if want := cat(tt.want); !bytes.Equal(got, want) {
			t.Errorf("nameString(%q) = % X, want % X", tt.path, got, want)
		}
	}
}

// The decoder refuses what is not well-formed AML of the subset, each for
// its own reason.
func TestDecodeAMLRejects(t *testing.T) {
	for _, tt := range []struct {
		name string
		aml  string
	}{
		{"unknown opcode", "14 05 5F 53 54 41 00"}, // a Method
		{"PkgLength past the end", "10 10 5C 5F 53 42 5F"},
		{"PkgLength shorter than itself", "10 00 5C 5F 53 42 5F"},
		{"PkgLength reserved bits", "10 70 00 5C 5F 53 42 5F"},
		{"bad NameSeg", "08 31 41 42 43 00"},
		{"lowercase NameSeg", "08 5F 68 69 64 00"},
		{"name cut short", "08 5F 48 49"},
		{"parent of the root", "08 5E 5F 48 49 44 00"},
		{"string without NUL", "08 5F 48 49 44 0D 41 42"},
		{"non-ASCII string", "08 5F 48 49 44 0D 80 00"},
		{"integer cut short", "08 5F 55 49 44 0C 01 02"},
		{"buffer larger than its size", "08 5F 43 52 53 11 05 0A 01 79 00"},
		{"buffer size not an integer", "08 5F 43 52 53 11 04 0D 41 00"},
		{"package with too many elements", "08 5F 53 35 5F 12 05 01 00 00 00"},
		{"name declared twice", "08 5F 48 49 44 00 08 5F 48 49 44 01"},
		{"device named root", "5B 82 02 00"},
		{"empty MultiNamePath", "08 2F 00"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeAML(cat(tt.aml)); !errors.Is(err, ErrMalformed) {
				t.Errorf("decoding %s: %v, want %v", tt.aml, err, ErrMalformed)
			}
		})
	}
}

// Nesting deeper than maxAMLDepth is refused, not followed.
func TestDecodeAMLDepth(t *testing.T) {
	nest := func(depth int) []byte {
		b := name("_UID", integer(0))
		for range depth {
			b = device("DEEP", b)
		}
		return b
	}
	if _, err := decodeAML(nest(maxAMLDepth)); err != nil {
		t.Errorf("%d nested devices: %v", maxAMLDepth, err)
	}
	if _, err := decodeAML(nest(maxAMLDepth + 1)); err == nil {
		t.Errorf("%d nested devices were decoded", maxAMLDepth+1)
	}
	pkgs := integer(0)
	for range maxAMLDepth + 1 {
		pkgs = pkgOf(pkgs)
	}
	if _, err := decodeAML(name("_S5_", pkgs)); err == nil {
		t.Errorf("%d nested packages were decoded", maxAMLDepth+1)
	}
}

// The resource template decoder checks the End Tag's checksum (zero means
// "not computed") and the descriptors' lengths.
func TestParseResources(t *testing.T) {
	good := resourceTemplate(memory32Fixed(0xd000_0000, 0x1000), extendedInterrupt(5, false))
	p := amlParser{b: good}
	v, _, err := p.dataObject(0, len(good), 0)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := v.buf
	if res, err := parseResources(tmpl); err != nil || len(res) != 2 {
		t.Fatalf("parseResources: %v %v", res, err)
	}
	unchecked := append([]byte(nil), tmpl...)
	unchecked[len(unchecked)-1] = 0
	if _, err := parseResources(unchecked); err != nil {
		t.Errorf("zero checksum: %v", err)
	}
	bad := append([]byte(nil), tmpl...)
	bad[len(bad)-1]++
	if _, err := parseResources(bad); err == nil {
		t.Error("a wrong End Tag checksum was accepted")
	}
	for _, tt := range []struct{ name, tmpl string }{
		{"no End Tag", "47 01 F8 03 F8 03 01 08"},
		{"small item cut short", "47 01 F8 03 79 00"},
		{"large item cut short", "86 09 00 01 00 79 00"},
		{"bytes after the End Tag", "79 00 00"},
		{"End Tag of length 2", "7A 00 00"},
	} {
		if _, err := parseResources(cat(tt.tmpl)); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}
