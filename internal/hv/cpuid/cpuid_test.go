package cpuid

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// regs packs a 12-byte string into the three registers that hold it.
func regs(s string) [3]uint32 {
	var r [3]uint32
	for i := range 12 {
		r[i/4] |= uint32(s[i]) << (8 * (i % 4))
	}
	return r
}

func vendorLeaf(max uint32, vendor string) Entry {
	r := regs(vendor) // EBX, EDX, ECX order in the string
	return Entry{Function: 0, EAX: max, EBX: r[0], EDX: r[1], ECX: r[2]}
}

const idx = FlagSignificantIndex

// Tables shaped like what KVM_GET_SUPPORTED_CPUID returns on an Intel
// server and on an AMD EPYC (the model the kvmhost emulates), with the
// host's own topology left in where KVM passes it through.
func intelTable() []Entry {
	sig := regs("KVMKVMKVM\x00\x00\x00")
	return []Entry{
		vendorLeaf(0x1f, "GenuineIntel"),
		{Function: 1, EAX: 0x000806f8, EBX: 0x3a400800, ECX: 0xf7fa3223 | ecxVMX | ecxPDCM, EDX: 0x1f8bfbff | edxHTT},
		{Function: 4, Index: 0, Flags: idx, EAX: 0xfc004121, EBX: 0x02c0003f, ECX: 0x3f, EDX: 0},
		{Function: 4, Index: 1, Flags: idx, EAX: 0xfc004122, EBX: 0x01c0003f, ECX: 0x3f, EDX: 0},
		{Function: 4, Index: 2, Flags: idx, EAX: 0xfc004143, EBX: 0x03c0003f, ECX: 0x7ff, EDX: 0},
		{Function: 4, Index: 3, Flags: idx, EAX: 0xfc1fc163, EBX: 0x03c0003f, ECX: 0xfffff, EDX: 4},
		{Function: 4, Index: 4, Flags: idx},
		{Function: 6, EAX: 0x77, EBX: 2, ECX: 9, EDX: 1},
		{Function: 7, Index: 0, Flags: idx, EAX: 2, EBX: 0xf1bf2fbb, ECX: 0x1b415f6e, EDX: 0xac004410},
		{Function: 0xa, EAX: 0x08300805, EBX: 0, ECX: 0, EDX: 0x603},
		{Function: 0xb, Index: 0, Flags: idx},
		{Function: 0xd, Index: 0, Flags: idx, EAX: 0x2e7, EBX: 0xa88, ECX: 0x2b00, EDX: 0},
		{Function: 0xd, Index: 1, Flags: idx, EAX: 0x1f},
		{Function: 0x1f, Index: 0, Flags: idx},
		{Function: 0x40000000, EAX: 0x40000001, EBX: sig[0], ECX: sig[1], EDX: sig[2]},
		{Function: 0x40000001, EAX: 0x01007afb},
		{Function: 0x80000000, EAX: 0x80000008},
		{Function: 0x80000001, ECX: 0x121, EDX: 0x2c100800},
		{Function: 0x80000002, EAX: 0x65746e49, EBX: 0x2952286c, ECX: 0x6f655820, EDX: 0x2952286e},
		{Function: 0x80000007, EDX: edxInvariantTSC | 1},
		{Function: 0x80000008, EAX: 0x3027},
	}
}

func amdTable() []Entry {
	return []Entry{
		vendorLeaf(0x10, "AuthenticAMD"),
		{Function: 1, EAX: 0x00800f12, EBX: 0x10200800, ECX: 0xfed83203, EDX: 0x178bfbff | edxHTT},
		{Function: 6, EAX: eaxARAT, ECX: 1},
		{Function: 7, Index: 0, Flags: idx, EBX: 0x209c01a9},
		{Function: 0xb, Index: 0, Flags: idx},
		{Function: 0xd, Index: 0, Flags: idx, EAX: 7, EBX: 0x340, ECX: 0x340},
		{Function: 0x40000001, EAX: 0x01007afb}, // KVM's signature leaf left out, to be added
		{Function: 0x80000000, EAX: 0x8000001f},
		{Function: 0x80000001, ECX: 0x75c237ff | ecxSVM | ecxTopoExt | ecxCmpLegacy, EDX: 0x2fd3fbff},
		{Function: 0x80000007, EDX: 0x7f9 | edxInvariantTSC},
		{Function: 0x80000008, EAX: 0x3030, ECX: 0x0001703f},
		{Function: 0x8000001d, Index: 0, Flags: idx, EAX: 0x00004121, EBX: 0x01c0003f, ECX: 0x3f},
		{Function: 0x8000001d, Index: 1, Flags: idx, EAX: 0x00004122, EBX: 0x01c0003f, ECX: 0x3f},
		{Function: 0x8000001d, Index: 2, Flags: idx, EAX: 0x00004143, EBX: 0x01c0003f, ECX: 0x3ff},
		{Function: 0x8000001d, Index: 3, Flags: idx, EAX: 0x0003c163, EBX: 0x03c0003f, ECX: 0x3fff, EDX: 1},
		{Function: 0x8000001d, Index: 4, Flags: idx},
		{Function: 0x8000001e, EAX: 0x10, EBX: 0x0108, ECX: 0x0300},
	}
}

// get returns (function, index) from t, failing the test if absent.
func get(t *testing.T, table []Entry, function, index uint32) Entry {
	t.Helper()
	for _, e := range table {
		if e.Function == function && e.Index == index {
			return e
		}
	}
	t.Fatalf("no leaf %#x index %d", function, index)
	return Entry{}
}

func has(table []Entry, function uint32) bool {
	return slices.ContainsFunc(table, func(e Entry) bool { return e.Function == function })
}

func TestNormalize(t *testing.T) {
	for _, vendor := range []struct {
		name  string
		table func() []Entry
	}{{"intel", intelTable}, {"amd", amdTable}} {
		for _, n := range []int{1, 2, 4} {
			for v := range n {
				t.Run(fmt.Sprintf("%s/%d-of-%d", vendor.name, v, n), func(t *testing.T) {
					in := vendor.table()
					pristine := vendor.table()
					out, err := Normalize(in, v, n)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(in, pristine) {
						t.Fatal("Normalize modified its input")
					}
					checkTable(t, pristine, out, v, n)
					// The output has its own backing array: writing every
					// entry of it leaves the input as it was.
					for i := range out {
						out[i].EAX, out[i].EDX = ^out[i].EAX, ^out[i].EDX
					}
					if !slices.Equal(in, pristine) {
						t.Fatal("the output shares memory with the input")
					}
				})
			}
		}
	}
}

// checkTable asserts what vCPU v of n must see.
func checkTable(t *testing.T, in, out []Entry, v, n int) {
	t.Helper()
	if !slices.IsSortedFunc(out, compare) || len(slices.CompactFunc(slices.Clone(out), func(a, b Entry) bool { return compare(a, b) == 0 })) != len(out) {
		t.Fatal("output not sorted by (function, index), or has duplicates")
	}
	_, vendor := VendorOf(in)
	pow2 := uint32(1)
	for pow2 < uint32(n) {
		pow2 <<= 1
	}

	// Passed through untouched: vendor, brand, features KVM decides.
	for _, f := range []uint32{0, 7, 0xd, 0x40000001, 0x80000002} {
		for _, e := range in {
			if e.Function == f && get(t, out, f, e.Index) != e {
				t.Errorf("leaf %#x index %d changed: %+v -> %+v", f, e.Index, e, get(t, out, f, e.Index))
			}
		}
	}

	// Leaf 1: who this vCPU is, and that it runs under a hypervisor.
	l1, h1 := get(t, out, 1, 0), get(t, in, 1, 0)
	if l1.EBX>>24 != uint32(v) || l1.EBX>>16&0xff != pow2 || l1.EBX&0xffff != h1.EBX&0xffff {
		t.Errorf("leaf 1 EBX %#x: want APIC id %d, %d logical processors, the host's CLFLUSH and brand bits %#x", l1.EBX, v, pow2, h1.EBX&0xffff)
	}
	if l1.ECX&ecxHypervisor == 0 || l1.ECX&(ecxVMX|ecxPDCM) != 0 {
		t.Errorf("leaf 1 ECX %#x: want the hypervisor bit, no VMX, no PDCM", l1.ECX)
	}
	if l1.ECX|ecxVMX|ecxPDCM|ecxHypervisor != h1.ECX|ecxVMX|ecxPDCM|ecxHypervisor || l1.EAX != h1.EAX {
		t.Errorf("leaf 1 changed beyond the topology: %+v from %+v", l1, h1)
	}
	if got := l1.EDX&edxHTT != 0; got != (n > 1) {
		t.Errorf("leaf 1 HTT %v with %d vCPUs", got, n)
	}

	// x2APIC topology, read the way Linux's detect_extended_topology does.
	for _, f := range []uint32{0xb, 0x1f} {
		if get(t, out, 0, 0).EAX < f {
			if has(out, f) {
				t.Errorf("leaf %#x beyond the max basic leaf", f)
			}
			continue
		}
		smt, core, end := get(t, out, f, 0), get(t, out, f, 1), get(t, out, f, 2)
		for _, e := range []Entry{smt, core, end} {
			if e.EDX != uint32(v) || e.Flags&FlagSignificantIndex == 0 || e.ECX&0xff != e.Index {
				t.Errorf("leaf %#x.%d %+v: want x2APIC id %d, an indexed leaf numbering its level", f, e.Index, e, v)
			}
		}
		if smt.ECX>>8&0xff != 1 || smt.EBX != 1 || smt.EAX != 0 {
			t.Errorf("leaf %#x SMT level %+v: one thread per core", f, smt)
		}
		if core.ECX>>8&0xff != 2 || core.EBX != uint32(n) || 1<<core.EAX != pow2 {
			t.Errorf("leaf %#x core level %+v: %d cores in %d ids", f, core, n, pow2)
		}
		if end.ECX>>8&0xff != 0 || end.EBX != 0 {
			t.Errorf("leaf %#x.2 %+v: want the invalid level that ends the list", f, end)
		}
		if pkg, coreID := uint32(v)>>core.EAX, uint32(v)&(1<<core.EAX-1)>>smt.EAX; pkg != 0 || coreID != uint32(v) {
			t.Errorf("leaf %#x: x2APIC id %d decodes to package %d core %d", f, v, pkg, coreID)
		}
	}

	// Caches: L1/L2 per core, L3 per package.
	cacheLeaf := uint32(4)
	if vendor == VendorAMD {
		cacheLeaf = 0x8000001d
	}
	for _, e := range out {
		if e.Function != cacheLeaf || e.EAX&0x1f == 0 {
			continue
		}
		want := uint32(0)
		if e.EAX>>5&7 == 3 {
			want = pow2 - 1
		}
		if e.EAX>>14&0xfff != want {
			t.Errorf("cache leaf %#x.%d level %d: %d sharing, want %d", cacheLeaf, e.Index, e.EAX>>5&7, e.EAX>>14&0xfff+1, want+1)
		}
		if h := get(t, in, cacheLeaf, e.Index); e.EAX&0x3fff != h.EAX&0x3fff || e.EBX != h.EBX || e.ECX != h.ECX {
			t.Errorf("cache leaf %#x.%d: size or type changed", cacheLeaf, e.Index)
		}
		if vendor == VendorIntel && e.EAX>>26 != pow2-1 {
			t.Errorf("leaf 4.%d: %d cores per package, want %d", e.Index, e.EAX>>26+1, pow2)
		}
	}

	// Withheld: power management, the PMU, nested virtualization.
	if l6 := get(t, out, 6, 0); l6.EAX != get(t, in, 6, 0).EAX&eaxARAT || l6.EBX|l6.ECX|l6.EDX != 0 {
		t.Errorf("leaf 6 %+v: want ARAT only", l6)
	}
	if has(in, 0xa) {
		if e := get(t, out, 0xa, 0); e.EAX|e.EBX|e.ECX|e.EDX != 0 {
			t.Errorf("leaf 0xA %+v: want no PMU", e)
		}
	}
	if e := get(t, out, 0x80000007, 0); e.EDX != edxInvariantTSC {
		t.Errorf("leaf 0x80000007 EDX %#x: want the invariant TSC only", e.EDX)
	}
	x1 := get(t, out, 0x80000001, 0)
	if x1.ECX&ecxSVM != 0 {
		t.Errorf("leaf 0x80000001 ECX %#x offers SVM", x1.ECX)
	}

	// KVM's signature, so that the guest uses kvmclock.
	hv := get(t, out, 0x40000000, 0)
	if sig := string(le(hv.EBX)) + string(le(hv.ECX)) + string(le(hv.EDX)); sig != "KVMKVMKVM\x00\x00\x00" || hv.EAX != 0x40000001 {
		t.Errorf("hypervisor leaf %+v (%q): want KVMKVMKVM and max leaf 0x40000001", hv, sig)
	}

	if vendor != VendorAMD {
		if e := get(t, out, 0x80000008, 0); e != get(t, in, 0x80000008, 0) {
			t.Errorf("Intel leaf 0x80000008 changed: %+v", e)
		}
		return
	}
	if got := x1.ECX&ecxCmpLegacy != 0; got != (n > 1) {
		t.Errorf("CmpLegacy %v with %d vCPUs", got, n)
	}
	if x1.ECX&ecxTopoExt == 0 {
		t.Error("TOPOEXT dropped though 0x8000001E is given")
	}
	x8, h8 := get(t, out, 0x80000008, 0), get(t, in, 0x80000008, 0)
	if x8.ECX&0xff != uint32(n-1) || 1<<(x8.ECX>>12&0xf) != pow2 || x8.ECX&^0xf0ff != h8.ECX&^0xf0ff {
		t.Errorf("leaf 0x80000008 ECX %#x: want NC %d, ApicIdSize for %d ids, PerfTscSize kept", x8.ECX, n-1, pow2)
	}
	if e := get(t, out, 0x8000001e, 0); e.EAX != uint32(v) || e.EBX != uint32(v) || e.ECX != 0 || e.EDX != 0 {
		t.Errorf("leaf 0x8000001E %+v: want extended APIC id and core id %d, one thread per core, node 0", e, v)
	}
}

// TestAPICIDsAcrossVCPUs: the vCPUs of one guest have distinct ids, in one
// package, and agree on everything but their ids.
func TestAPICIDsAcrossVCPUs(t *testing.T) {
	const n = 4
	var first []Entry
	seen := map[uint32]bool{}
	for v := range n {
		out, err := Normalize(intelTable(), v, n)
		if err != nil {
			t.Fatal(err)
		}
		id := get(t, out, 0xb, 0).EDX
		if seen[id] || get(t, out, 1, 0).EBX>>24 != id {
			t.Errorf("vCPU %d: x2APIC id %d repeated or unlike its APIC id", v, id)
		}
		seen[id] = true
		// Blank the per-vCPU fields; the rest must be the same on all.
		for i := range out {
			switch out[i].Function {
			case 1:
				out[i].EBX &^= 0xff << 24
			case 0xb, 0x1f:
				out[i].EDX = 0
			}
		}
		if first == nil {
			first = out
		} else if !slices.Equal(first, out) {
			t.Errorf("vCPU %d differs from vCPU 0 beyond its ids", v)
		}
	}
}

func TestNormalizeRefuses(t *testing.T) {
	dup := append(intelTable(), Entry{Function: 4, Index: 2, Flags: idx})
	noLeaf1 := slices.DeleteFunc(intelTable(), func(e Entry) bool { return e.Function == 1 })
	tooMany := intelTable()
	for i := range MaxEntries {
		tooMany = append(tooMany, Entry{Function: 0x40000100 + uint32(i)})
	}
	for _, tc := range []struct {
		name    string
		table   []Entry
		v, n    int
		wantErr error
	}{
		{"vCPU past the count", intelTable(), 2, 2, ErrVCPU},
		{"negative vCPU", intelTable(), -1, 2, ErrVCPU},
		{"no vCPUs", intelTable(), 0, 0, ErrVCPU},
		{"more than MaxVCPUs", intelTable(), 0, MaxVCPUs + 1, ErrVCPU},
		{"empty table", nil, 0, 1, ErrTable},
		{"no leaf 1", noLeaf1, 0, 1, ErrTable},
		{"a sub-leaf twice", dup, 0, 1, ErrTable},
		{"more than KVM takes", tooMany, 0, 1, ErrTable},
	} {
		if _, err := Normalize(tc.table, tc.v, tc.n); !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.wantErr)
		}
	}
	if _, err := Normalize(intelTable(), MaxVCPUs-1, MaxVCPUs); err != nil {
		t.Errorf("the last of MaxVCPUs: %v", err)
	}
}

// TestTopoExtNeedsItsLeaf: an AMD table that promises TOPOEXT without
// leaf 0x8000001E loses the promise, or the guest would read zeros as its
// topology.
func TestTopoExtNeedsItsLeaf(t *testing.T) {
	in := slices.DeleteFunc(amdTable(), func(e Entry) bool { return e.Function == 0x8000001e })
	out, err := Normalize(in, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if get(t, out, 0x80000001, 0).ECX&ecxTopoExt != 0 {
		t.Error("TOPOEXT kept without leaf 0x8000001E")
	}
}

// TestHypervisorLeafAdded: without KVM's features leaf, the signature
// leaf is its own max.
func TestHypervisorLeafAdded(t *testing.T) {
	in := slices.DeleteFunc(amdTable(), func(e Entry) bool { return e.Function == 0x40000001 })
	out, err := Normalize(in, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if e := get(t, out, 0x40000000, 0); e.EAX != 0x40000000 || e.EBX != kvmSignature[0] {
		t.Errorf("hypervisor leaf %+v", e)
	}
}

func TestVendorOf(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want Vendor
	}{{"GenuineIntel", VendorIntel}, {"AuthenticAMD", VendorAMD}, {"HygonGenuine", VendorAMD}, {"CentaurHauls", VendorOther}} {
		if s, v := VendorOf([]Entry{vendorLeaf(1, tc.s)}); s != tc.s || v != tc.want {
			t.Errorf("%q: got %q %v", tc.s, s, v)
		}
	}
}
