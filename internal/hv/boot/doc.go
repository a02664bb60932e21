// Package boot puts a Linux kernel, its initrd and its command line into a
// guest's memory the way the kernel's own boot protocols ask, and says how
// the boot vCPU must start. Two protocols are spoken:
//
//   - the x86 64-bit boot protocol (Documentation/arch/x86/boot.rst) for a
//     bzImage: the protected-mode kernel at 1 MiB, the zero page (struct
//     boot_params) with the setup header, e820 map and ACPI RSDP address,
//     identity page tables and a GDT, and the vCPU in long mode at the
//     kernel's 64-bit entry (load address + 0x200);
//   - PVH for an uncompressed vmlinux ELF: its loadable segments at their
//     physical addresses, an hvm_start_info with the memory map and the
//     initrd as module 0, and the vCPU in flat 32-bit protected mode at
//     the address of the XEN_ELFNOTE_PHYS32_ENTRY note.
//
// Guest memory is a byte slice that stands for guest physical addresses
// from 0. The low megabyte is laid out once, by constants, so that the ACPI
// tables, the hv and this package agree on it:
//
//	0x00500  GDT: null, null, __BOOT_CS (0x10), __BOOT_DS (0x18), TSS (0x20)
//	0x06000  hvm_start_info, its module list and memory map (PVH)
//	0x07000  zero page (bzImage)
//	0x08ff0  initial stack pointer, growing down
//	0x09000  PML4, PDPT and four page directories: 4 GiB in 2 MiB pages
//	0x20000  kernel command line
//	0x9fc00  reserved up to 1 MiB (EBDA, VGA, BIOS): where ACPI tables go
//	1 MiB    the bzImage's protected-mode kernel; a vmlinux goes where its
//	         program headers say, never below 1 MiB
//	high     the initrd, as high in RAM below the 32-bit MMIO hole as the
//	         kernel allows, 4 KiB aligned
//
// The kernel image is hostile input (a tenant may upload one): every
// offset, length and address read from it is validated, with overflow
// checks, against the file and against guest RAM before a byte is copied,
// and a malformed image is an error wrapping ErrInvalid, never a panic.
// The package never touches KVM, files or the network, never uses unsafe,
// and never writes outside the RAM of the e820 map it hands the kernel.
// The register state it returns is a plain Go struct; translating it to
// kvm_regs and kvm_sregs is the KVM package's job.
package boot
