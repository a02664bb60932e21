// Package hostinfo reads what the host machine offers: CPU model and
// features, memory, and whether KVM is backed by real hardware
// virtualization. It only reads /proc, /sys and /dev/kvm; it changes
// nothing.
package hostinfo
