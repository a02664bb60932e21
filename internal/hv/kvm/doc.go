// Package kvm is azote-hv's layer over Linux's KVM API on x86-64: the
// ioctls on /dev/kvm, on a VM and on a vCPU, through golang.org/x/sys/unix,
// without cgo. System opens KVM and makes VMs; VM holds memory slots,
// the in-kernel interrupt controllers and timer, irqfds and ioeventfds,
// and makes vCPUs; VCPU sets registers, CPUID, MSRs, FPU and local APIC
// state, runs the guest and decodes why it stopped (IO, MMIO, HLT,
// shutdown, failed entry, internal error, system event).
//
// It is a thin, typed mirror of the kernel's interface and decides
// nothing: no memory layout, no CPUID policy, no boot protocol and no
// device model live here (those are internal/hv's). It never reads guest
// memory, and never trusts the layout of kvm_run beyond what it checks: an
// I/O exit's data offset and an MMIO exit's length are validated against
// the mapping before a slice of it is handed out.
//
// The kernel structures are mirrored in abi_amd64.go, with their sizes
// and ioctl numbers checked in tests; unsafe is confined to
// ioctl_unsafe.go. The tests that need KVM run inside the nested KVM test
// host of test/kvmhost wherever this machine cannot run them itself.
package kvm
