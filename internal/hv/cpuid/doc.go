// Package cpuid turns the CPUID table KVM offers (KVM_GET_SUPPORTED_CPUID)
// into the table one vCPU is given (KVM_SET_CPUID2): what the host and KVM
// can do, less what azote-hv does not offer, plus who this vCPU is.
//
// The machine it describes is one socket of N cores, one thread each, the
// vCPU's index being its APIC id and x2APIC id (so the ACPI MADT must list
// local APICs 0..N-1). Per vCPU it writes the APIC id and logical
// processor count of leaf 1, the x2APIC topology of leaves 0xB and 0x1F,
// the cache sharing of leaf 4 (Intel) or 0x8000001D (AMD), and AMD's
// extended APIC id and core count (0x80000008, 0x8000001E). It sets the
// hypervisor bit and the KVM signature leaf, so that the guest uses
// kvmclock and the other paravirtual features KVM lists in 0x40000001.
//
// It withholds what a multi-tenant host should not hand a guest: power
// management (leaf 6 but for the always-running APIC timer, 0x80000007
// but for the invariant TSC), the performance monitoring unit (leaf 0xA,
// PDCM), and nested virtualization (VMX, SVM), whose emulation is a large
// part of KVM's attack surface. The vendor, family, model and brand pass
// through unchanged.
//
// The functions are pure: they never modify their input, never return a
// slice that shares its backing array, and never issue an ioctl (the KVM
// package does, and translates Entry to struct kvm_cpuid_entry2).
package cpuid
