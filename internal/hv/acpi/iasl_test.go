package acpi

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestIASL cross-checks the tables against ACPICA's iasl, the compiler and
// disassembler that Linux's own ACPI code comes from: iasl must
// disassemble every table without a checksum complaint, show the DSDT's
// devices as the ASL they stand for, and compile that ASL back into AML
// that this package's decoder reads as the same devices.
func TestIASL(t *testing.T) {
	iasl := iaslPath(t)
	c := Config{VCPUs: 2, Base: testBase, Serial: testSerial, Power: testPower, VirtioMMIO: testDevices(2)}
	tb, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(tb.Bytes, c.Base, tb.RSDP)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(iasl, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("iasl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	dsl := map[string]string{}
	for _, h := range p.Tables {
		off := h.Addr - c.Base
		if err := os.WriteFile(filepath.Join(dir, h.Signature+".dat"), tb.Bytes[off:off+uint64(h.Length)], 0o644); err != nil {
			t.Fatal(err)
		}
		out := run("-d", h.Signature+".dat")
		b, err := os.ReadFile(filepath.Join(dir, h.Signature+".dsl"))
		if err != nil {
			t.Fatalf("iasl -d %s.dat wrote no disassembly: %v\n%s", h.Signature, err, out)
		}
		for _, bad := range []string{"Incorrect checksum", "Error", "Warning", "**** "} {
			if strings.Contains(out, bad) || strings.Contains(string(b), bad) {
				t.Errorf("iasl -d %s.dat reports %q:\n%s\n%s", h.Signature, bad, out, b)
			}
		}
		dsl[h.Signature] = string(b)
	}

	expect := func(table string, patterns ...string) {
		t.Helper()
		for _, pat := range patterns {
			if !regexp.MustCompile(pat).MatchString(dsl[table]) {
				t.Errorf("%s disassembly lacks %s:\n%s", table, pat, dsl[table])
			}
		}
	}
	expect("FACP",
		`Hardware Reduced \(V5\) : 1`,
		`Reset Register Supported \(V2\) : 1`,
		`FADT Minor Revision : 05`,
		`VGA Not Present \(V4\) : 1`,
		`CMOS RTC Not Present \(V5\) : 1`,
		`Sleep Control Register : \[Generic Address Structure\]\s+.*Space ID : 01 \[SystemIO\]`,
		`Address : 0000000000000600`,
	)
	expect("APIC",
		`Local Apic Address : FEE00000`,
		`PC-AT Compatibility : 1`,
		`Subtable Type : 01 \[I/O APIC\]\s+.*Length : 0C\s+.*I/O Apic ID : 00\s+.*Reserved : 00\s+.*Address : FEC00000\s+.*Interrupt : 00000000`,
	)
	if n := strings.Count(dsl["APIC"], "[Processor Local APIC]"); n != c.VCPUs {
		t.Errorf("iasl sees %d Processor Local APIC structures, want %d", n, c.VCPUs)
	}
	expect("XSDT", `ACPI Table Address   0 : 00000000000E0070`)
	expect("DSDT",
		`Name \(_S5, Package \(0x04\)\s+// _S5_.*\s+\{\s+0x05,\s+Zero,\s+Zero,\s+Zero\s+\}\)`,
		`Device \(COM1\)\s+\{\s+Name \(_HID, EisaId \("PNP0501"\)`,
		`IO \(Decode16,\s+0x03F8,\s+// Range Minimum\s+0x03F8,\s+// Range Maximum\s+0x01,\s+// Alignment\s+0x08,`,
		`IRQ \(Edge, ActiveHigh, Exclusive, \)\s+\{4\}`,
		`IRQ \(Edge, ActiveHigh, Exclusive, \)\s+\{3\}`,
		`Device \(V000\)\s+\{\s+Name \(_HID, "LNRO0005"\).*\s+Name \(_UID, Zero\).*\s+Name \(_CCA, One\)`,
		`Memory32Fixed \(ReadWrite,\s+0xD0000000,\s+// Address Base\s+0x00001000,\s+// Address Length`,
		`Interrupt \(ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, \)\s+\{\s+0x00000005,\s+\}`,
		`Memory32Fixed \(ReadWrite,\s+0xD0001000,`,
		`Interrupt \(ResourceConsumer, Level, ActiveHigh, Exclusive, ,, \)\s+\{\s+0x00000006,\s+\}`,
	)

	// Compile the disassembly: iasl must accept it as it stands, and its
	// own encoding must decode to the same machine.
	out := run("-p", "recompiled", "DSDT.dsl")
	if !strings.Contains(out, "0 Errors, 0 Warnings") {
		t.Errorf("iasl compiling the disassembled DSDT:\n%s", out)
	}
	aml, err := os.ReadFile(filepath.Join(dir, "recompiled.aml"))
	if err != nil {
		t.Fatal(err)
	}
	if sum8(aml) != 0 {
		t.Errorf("iasl's DSDT sums to %#x", sum8(aml))
	}
	again, err := decodeDSDT(Header{}, aml)
	if err != nil {
		t.Fatalf("decoding iasl's DSDT: %v", err)
	}
	if !equalOrEmpty(again.VirtioMMIO, c.VirtioMMIO) || !equalOrEmpty(again.Serial, c.Serial) ||
		!again.HasS5 || again.SleepTypeS5 != c.Power.SleepTypeS5 {
		t.Errorf("iasl's DSDT decodes as %+v, want the devices of %+v", again, c)
	}
}

// iaslPath finds iasl, installing Debian's acpica-tools when it is
// missing and the test runs as root (as CI does, where scripts/test.sh
// also installs it). Only a developer's unprivileged run skips, and says
// so.
func iaslPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("iasl"); err == nil {
		return p
	}
	if os.Geteuid() != 0 {
		t.Skip("iasl is not installed and installing it needs root: apt-get install acpica-tools (scripts/test.sh does)")
	}
	apt := func(args ...string) error {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Logf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return err
	}
	install := []string{"install", "-y", "-q", "--no-install-recommends", "acpica-tools"}
	if apt(install...) != nil {
		// Stale or missing package lists: refresh them once.
		if apt("update", "-q") != nil || apt(install...) != nil {
			t.Fatal("cannot install acpica-tools for iasl")
		}
	}
	p, err := exec.LookPath("iasl")
	if err != nil {
		t.Fatalf("acpica-tools is installed but iasl is not on PATH: %v", err)
	}
	return p
}
