package acpi

import (
	"testing"
)

// fuzzConfigs are the seed machines: tables Build made, which the fuzzer
// then mutates.
var fuzzConfigs = []Config{
	{VCPUs: 1, Base: testBase},
	{VCPUs: 2, Base: testBase, Serial: testSerial, Power: testPower, VirtioMMIO: testDevices(1)},
	{VCPUs: 8, Base: testBase, Serial: testSerial[:1], VirtioMMIO: testDevices(4)},
}

// FuzzParse feeds Parse hostile blobs. With ignoreChecksums the decoder
// reads on past bad checksums, so that mutations reach the table and AML
// decoders instead of all stopping at the first checksum. Whatever the
// input, Parse returns (no panic, no hang), and what it returns lies
// inside the blob.
func FuzzParse(f *testing.F) {
	for _, c := range fuzzConfigs {
		tb, err := Build(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tb.Bytes, uint16(0), false)
		f.Add(tb.Bytes, uint16(0), true)
		f.Add(tb.Bytes[:len(tb.Bytes)/2], uint16(0), true)
	}
	f.Add([]byte("RSD PTR "), uint16(0), true)
	f.Add([]byte{}, uint16(0), false)
	f.Fuzz(func(t *testing.T, blob []byte, rsdpOff uint16, ignoreChecksums bool) {
		d := decoder{mem: blob, base: testBase, ignoreChecksums: ignoreChecksums}
		p, err := d.parse(testBase + uint64(rsdpOff))
		if err != nil {
			return
		}
		for _, h := range p.Tables {
			if h.Addr < testBase || h.Addr+uint64(h.Length) > testBase+uint64(len(blob)) {
				t.Fatalf("%s at %#x+%d is outside the %d-byte blob", h.Signature, h.Addr, h.Length, len(blob))
			}
		}
	})
}

// FuzzAML feeds the AML and resource decoders hostile definition blocks
// directly, seeded with the DSDT bodies Build writes.
func FuzzAML(f *testing.F) {
	for _, c := range fuzzConfigs {
		f.Add(dsdtAML(&c))
	}
	f.Add(cat("10 48 07 5C 5F 53 42 5F"))
	f.Fuzz(func(t *testing.T, aml []byte) {
		dsdt, err := decodeDSDT(Header{Signature: "DSDT"}, append(make([]byte, headerLen), aml...))
		if err != nil {
			return
		}
		// What decodes as a virtio-mmio device or a COM port was read
		// from a well-formed _CRS, and encodes again to a DSDT that
		// decodes to the same devices.
		c := Config{Serial: dsdt.Serial, VirtioMMIO: dsdt.VirtioMMIO}
		again, err := decodeDSDT(Header{}, append(make([]byte, headerLen), dsdtAML(&c)...))
		if err != nil {
			t.Fatalf("re-encoded devices do not decode: %v", err)
		}
		if !equalOrEmpty(again.Serial, dsdt.Serial) || !equalOrEmpty(again.VirtioMMIO, dsdt.VirtioMMIO) {
			t.Fatalf("re-encoded devices decode as %+v %+v, want %+v %+v", again.Serial, again.VirtioMMIO, dsdt.Serial, dsdt.VirtioMMIO)
		}
	})
}
