package cpuid

import (
	"cmp"
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// Entry is one CPUID leaf, or one sub-leaf of an indexed leaf. It has the
// fields of struct kvm_cpuid_entry2, not its layout (that has padding).
type Entry struct {
	Function uint32 // EAX on input
	Index    uint32 // ECX on input, when Flags has FlagSignificantIndex
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
}

// FlagSignificantIndex marks a leaf whose sub-leaves differ by ECX
// (KVM_CPUID_FLAG_SIGNIFCANT_INDEX, spelt so in the kernel).
const FlagSignificantIndex = 1 << 0

const (
	// MaxVCPUs is the most vCPUs the topology is written for: leaf 4's
	// core count field is 6 bits wide, so 64 is as far as every field
	// holds its value without clamping.
	MaxVCPUs = 64
	// MaxEntries is KVM_MAX_CPUID_ENTRIES: KVM_SET_CPUID2 refuses more.
	MaxEntries = 256
)

// Errors.
var (
	ErrTable = errors.New("cpuid: unusable CPUID table")
	ErrVCPU  = errors.New("cpuid: vCPU out of range")
)

// Leaves and bits this package reads or writes (Intel SDM vol. 2A CPUID;
// AMD APM vol. 3 appendix E).
const (
	leafVendor      = 0x0
	leafFeatures    = 0x1
	leafCache       = 0x4 // Intel deterministic cache parameters
	leafPower       = 0x6
	leafPMU         = 0xa
	leafTopology    = 0xb
	leafTopologyV2  = 0x1f
	leafHypervisor  = 0x40000000
	leafKVMFeatures = 0x40000001
	leafExtMax      = 0x80000000
	leafExtFeatures = 0x80000001
	leafExtPower    = 0x80000007
	leafAddrSizes   = 0x80000008
	leafAMDCache    = 0x8000001d
	leafAMDTopology = 0x8000001e

	// Leaf 1.
	ecxVMX        = 1 << 5
	ecxPDCM       = 1 << 15 // IA32_PERF_CAPABILITIES: part of the PMU
	ecxHypervisor = 1 << 31
	edxHTT        = 1 << 28 // EBX[23:16] counts logical processors
	// Leaf 6.
	eaxARAT = 1 << 2 // the APIC timer runs in every C-state: without it Linux wants a broadcast timer the hv does not have
	// Leaf 0x80000001.
	ecxCmpLegacy = 1 << 1 // with HTT: EBX[23:16] of leaf 1 counts cores
	ecxSVM       = 1 << 2
	ecxTopoExt   = 1 << 22 // leaves 0x8000001D and 0x8000001E exist
	// Leaf 0x80000007.
	edxInvariantTSC = 1 << 8 // the TSC is a clocksource worth keeping

	// Leaf 0xB and 0x1F level types.
	levelSMT  = 1
	levelCore = 2
)

// Vendor is the CPU's maker, from leaf 0.
type Vendor int

const (
	VendorOther Vendor = iota
	VendorIntel
	VendorAMD // AMD, and Hygon, which follows AMD's leaves
)

// VendorOf reads the vendor string of leaf 0 (EBX, EDX, ECX).
func VendorOf(table []Entry) (string, Vendor) {
	i := find(table, leafVendor, 0)
	if i < 0 {
		return "", VendorOther
	}
	e := table[i]
	s := string(le(e.EBX)) + string(le(e.EDX)) + string(le(e.ECX))
	switch s {
	case "GenuineIntel":
		return s, VendorIntel
	case "AuthenticAMD", "HygonGenuine":
		return s, VendorAMD
	}
	return s, VendorOther
}

// Normalize returns the CPUID table of vCPU vcpu of a guest with vcpus
// vCPUs, from the table KVM supports. The result is sorted by function
// and index, and is a fresh slice: supported is not modified.
func Normalize(supported []Entry, vcpu, vcpus int) ([]Entry, error) {
	if vcpus < 1 || vcpus > MaxVCPUs || vcpu < 0 || vcpu >= vcpus {
		return nil, fmt.Errorf("%w: vCPU %d of %d (at most %d)", ErrVCPU, vcpu, vcpus, MaxVCPUs)
	}
	t := slices.Clone(supported)
	slices.SortStableFunc(t, compare)
	for i := 1; i < len(t); i++ {
		if compare(t[i-1], t[i]) == 0 {
			return nil, fmt.Errorf("%w: leaf %#x index %d twice", ErrTable, t[i].Function, t[i].Index)
		}
	}
	v0, v1 := find(t, leafVendor, 0), find(t, leafFeatures, 0)
	if v0 < 0 || v1 < 0 {
		return nil, fmt.Errorf("%w: no leaf 0 or leaf 1", ErrTable)
	}
	maxBasic := t[v0].EAX
	maxExt := uint32(0)
	if i := find(t, leafExtMax, 0); i >= 0 {
		maxExt = t[i].EAX
	}
	_, vendor := VendorOf(t)
	n := &topology{vcpu: uint32(vcpu), vcpus: uint32(vcpus)}
	// pow2 is how many APIC ids the package spans: ids are vcpu indices,
	// so the package's field in an APIC id starts at bit log2(pow2).
	n.pow2 = uint32(1) << bits.Len32(n.vcpus-1)
	n.shift = uint32(bits.Len32(n.vcpus - 1))

	for i := range t {
		e := &t[i]
		switch e.Function {
		case leafFeatures:
			e.EBX = e.EBX&0x0000ffff | n.pow2<<16 | n.vcpu<<24
			e.ECX = e.ECX&^(ecxVMX|ecxPDCM) | ecxHypervisor
			e.EDX = setIf(e.EDX, edxHTT, vcpus > 1)
		case leafCache:
			if vendor == VendorIntel {
				e.EAX = n.cacheSharing(e.EAX, true)
			}
		case leafPower:
			e.EAX &= eaxARAT
			e.EBX, e.ECX, e.EDX = 0, 0, 0
		case leafPMU:
			e.EAX, e.EBX, e.ECX, e.EDX = 0, 0, 0, 0
		case leafExtFeatures:
			e.ECX &^= ecxSVM
			if vendor == VendorAMD {
				e.ECX = setIf(e.ECX, ecxCmpLegacy, vcpus > 1)
				// TOPOEXT promises leaves that must then be there.
				e.ECX = setIf(e.ECX, ecxTopoExt, e.ECX&ecxTopoExt != 0 && maxExt >= leafAMDTopology && find(t, leafAMDTopology, 0) >= 0)
			}
		case leafExtPower:
			e.EDX &= edxInvariantTSC
		case leafAddrSizes:
			if vendor == VendorAMD {
				// NC (cores - 1) in bits 7:0, ApicIdSize in 15:12.
				e.ECX = e.ECX&^0xf0ff | (n.vcpus - 1) | n.shift<<12
			}
		case leafAMDCache:
			if vendor == VendorAMD {
				e.EAX = n.cacheSharing(e.EAX, false)
			}
		case leafAMDTopology:
			if vendor == VendorAMD {
				// Extended APIC id; core id, with one thread per core
				// (ThreadsPerCore - 1 = 0); node 0 of one.
				e.EAX, e.EBX, e.ECX, e.EDX = n.vcpu, n.vcpu&0xff, 0, 0
			}
		}
	}

	// The topology leaves are rebuilt whole: KVM offers them empty, and a
	// host's own sub-leaves would describe the host.
	t = slices.DeleteFunc(t, func(e Entry) bool { return e.Function == leafTopology || e.Function == leafTopologyV2 })
	for _, f := range []uint32{leafTopology, leafTopologyV2} {
		if maxBasic >= f {
			t = append(t, n.x2apicLeaf(f)...)
		}
	}
	t = setHypervisorLeaf(t)

	slices.SortFunc(t, compare)
	if len(t) > MaxEntries {
		return nil, fmt.Errorf("%w: %d entries, KVM takes at most %d", ErrTable, len(t), MaxEntries)
	}
	return t, nil
}

// topology is one vCPU's place in a one-socket, one-thread-per-core guest.
type topology struct {
	vcpu, vcpus uint32
	pow2        uint32 // vcpus rounded up to a power of two
	shift       uint32 // log2(pow2): the bits of an APIC id below the package
}

// x2apicLeaf is leaf f (0xB or 0x1F): the SMT level (one thread, no id
// bits), the core level (all vCPUs, shift bits of the id), and the
// invalid level that ends the list. Every sub-leaf reports the x2APIC id.
func (n *topology) x2apicLeaf(f uint32) []Entry {
	return []Entry{
		{Function: f, Index: 0, Flags: FlagSignificantIndex, EAX: 0, EBX: 1, ECX: levelSMT << 8, EDX: n.vcpu},
		{Function: f, Index: 1, Flags: FlagSignificantIndex, EAX: n.shift, EBX: n.vcpus, ECX: levelCore<<8 | 1, EDX: n.vcpu},
		{Function: f, Index: 2, Flags: FlagSignificantIndex, EAX: 0, EBX: 0, ECX: 2, EDX: n.vcpu},
	}
}

// cacheSharing rewrites the sharing fields of a cache descriptor (Intel
// leaf 4, AMD 0x8000001D; the same EAX format): a level 1 or 2 cache is
// one core's, the level 3 cache is the whole package's. Intel also counts
// the package's cores in EAX[31:26], where AMD has reserved bits.
func (n *topology) cacheSharing(eax uint32, intel bool) uint32 {
	if eax&0x1f == 0 { // no cache: the list's end
		return eax
	}
	sharing := uint32(1)
	if eax>>5&7 >= 3 {
		sharing = n.pow2
	}
	eax = eax&^(0xfff<<14) | (sharing-1)<<14
	if intel {
		eax = eax&^(0x3f<<26) | (n.pow2-1)<<26
	}
	return eax
}

// kvmSignature is "KVMKVMKVM\0\0\0" as EBX, ECX, EDX: what Linux looks
// for to use kvmclock and the paravirtual features of leaf 0x40000001.
var kvmSignature = [3]uint32{0x4b4d564b, 0x564b4d56, 0x0000004d}

// setHypervisorLeaf writes the signature leaf, which KVM normally offers
// already, and its max leaf: the features leaf when there is one.
func setHypervisorLeaf(t []Entry) []Entry {
	e := Entry{Function: leafHypervisor, EAX: leafHypervisor, EBX: kvmSignature[0], ECX: kvmSignature[1], EDX: kvmSignature[2]}
	if find(t, leafKVMFeatures, 0) >= 0 {
		e.EAX = leafKVMFeatures
	}
	if i := find(t, leafHypervisor, 0); i >= 0 {
		t[i] = e
		return t
	}
	return append(t, e)
}

// find returns the position of (function, index), or -1. An entry without
// FlagSignificantIndex answers any index.
func find(t []Entry, function, index uint32) int {
	for i, e := range t {
		if e.Function == function && (e.Index == index || e.Flags&FlagSignificantIndex == 0) {
			return i
		}
	}
	return -1
}

func compare(a, b Entry) int {
	return cmp.Or(cmp.Compare(a.Function, b.Function), cmp.Compare(a.Index, b.Index))
}

func setIf(v, bit uint32, on bool) uint32 {
	if on {
		return v | bit
	}
	return v &^ bit
}

// le is the 4 bytes of a register as the CPU stores them.
func le(r uint32) []byte { return []byte{byte(r), byte(r >> 8), byte(r >> 16), byte(r >> 24)} }
