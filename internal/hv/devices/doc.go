// Package devices holds the small emulated devices of azote-hv and the
// buses that route a vCPU's port I/O and MMIO exits to them: a 16550A
// UART (the console on COM1, the agent's control stream on COM2), a
// minimal i8042 keyboard controller whose only real job is the CPU reset
// pulse, a boot-time marker, and the ACPI hardware-reduced sleep and
// reset registers through which a stock Linux guest powers off or
// reboots. layout.go lists every port, IRQ and register value, so the
// VMM and the ACPI table builder share one map.
//
// Every access comes from the guest and is hostile: offsets, sizes and
// values are checked, an access the bus cannot place is refused (reads
// give 0xff bytes, as an empty ISA bus does) and reported, and no
// register sequence can panic, block a vCPU or grow memory. Input queued
// for the guest is bounded; what does not fit is dropped and counted.
//
// The package never touches guest memory, never opens a file or a
// socket, never logs, and uses neither KVM nor unsafe: it sees only
// (address, bytes, direction) and answers through io.Writers and
// callbacks that the VMM wires to the console log, the agent socket,
// irqfds and its own reboot and shutdown paths.
package devices
