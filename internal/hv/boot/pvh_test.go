package boot

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"testing"
)

// TestLoadDebianVmlinuxPVH takes the vmlinux out of Debian's bzImage
// (CONFIG_PVH=y) and loads it by PVH: the segments at their physical
// addresses, the start info and its tables read back, the 32-bit state.
func TestLoadDebianVmlinuxPVH(t *testing.T) {
	dk := realKernel(t)
	if dk.config["CONFIG_PVH"] != "y" {
		t.Fatalf("CONFIG_PVH=%q: Debian's cloud kernel has had it set since 5.x", dk.config["CONFIG_PVH"])
	}
	vmlinux := dk.vmlinux(t)
	v, err := ParseVmlinux(vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	start := dk.configUint(t, "CONFIG_PHYSICAL_START")
	if v.Segments[0].Addr != start {
		t.Errorf("first segment at %#x, CONFIG_PHYSICAL_START=%#x", v.Segments[0].Addr, start)
	}

	const memSize = 256 << 20
	mem := make([]byte, memSize)
	initrd := testInitrd(2<<20 + 5)
	cmdline := "console=ttyS0 reboot=k"
	b, err := Load(mem, vmlinux, initrd, cmdline, memSize, Options{HoleStart: testHole, RSDP: testRSDP})
	if err != nil {
		t.Fatal(err)
	}
	lay := b.Layout
	if lay.Protocol != PVH || lay.Entry != uint64(v.Entry) || lay.Kernel != start {
		t.Errorf("layout %+v", lay)
	}
	for _, s := range v.Segments {
		if !bytes.Equal(mem[s.Addr:s.Addr+uint64(len(s.Data))], s.Data) {
			t.Errorf("segment at %#x differs", s.Addr)
		}
	}
	// pvh_start_xen opens with cld (arch/x86/platform/pvh/head.S): the
	// note points at code, in the loaded image.
	if mem[v.Entry] != 0xfc {
		t.Errorf("byte at the PVH entry %#x is %#x, want cld (0xfc)", v.Entry, mem[v.Entry])
	}
	checkStartInfo(t, mem, lay, initrd, cmdline)
	if lay.Initrd < lay.KernelEnd || lay.Initrd%4096 != 0 || lay.Initrd+lay.InitrdLen > memSize {
		t.Errorf("initrd [%#x, +%#x) with the kernel ending at %#x", lay.Initrd, lay.InitrdLen, lay.KernelEnd)
	}

	// PVH's contract: EBX = start info, CR0.PE only, paging off, flat
	// 32-bit CS and data segments.
	s := b.SRegs
	if b.Regs.RBX != StartInfoAddr || b.Regs.RIP != uint64(v.Entry) || b.Regs.RFLAGS != 2 {
		t.Errorf("regs %+v", b.Regs)
	}
	if s.CR0 != CR0PE|CR0ET || s.CR4 != 0 || s.EFER != 0 || s.CR3 != 0 {
		t.Errorf("CR0 %#x CR3 %#x CR4 %#x EFER %#x, want protected mode without paging", s.CR0, s.CR3, s.CR4, s.EFER)
	}
	if s.CS.DB != 1 || s.CS.L != 0 || s.CS.Base != 0 || s.CS.Limit != 0xffffffff || s.CS.Type&0x8 == 0 {
		t.Errorf("CS %+v, want flat 32-bit code", s.CS)
	}
	if s.TR.Type != 0xb || s.TR.Limit != 0x67 || s.TR.S != 0 {
		t.Errorf("TR %+v, want a busy 32-bit TSS of 0x68 bytes", s.TR)
	}
	checkGDT(t, mem, s)
}

// checkStartInfo reads hvm_start_info back by its C layout.
func checkStartInfo(t *testing.T, mem []byte, lay Layout, initrd []byte, cmdline string) {
	t.Helper()
	le := binary.LittleEndian
	si := mem[StartInfoAddr:]
	if le.Uint32(si[0:]) != 0x336ec578 || le.Uint32(si[4:]) != 1 || le.Uint32(si[8:]) != 0 {
		t.Errorf("start info magic %#x version %d flags %#x", le.Uint32(si[0:]), le.Uint32(si[4:]), le.Uint32(si[8:]))
	}
	if le.Uint32(si[0x34:]) != 0 {
		t.Error("start info reserved field is not zero")
	}
	if n := le.Uint32(si[0x0c:]); n != 1 {
		t.Fatalf("%d modules, want the initrd", n)
	}
	mod := mem[le.Uint64(si[0x10:]):]
	if le.Uint64(mod[0:]) != lay.Initrd || le.Uint64(mod[8:]) != uint64(len(initrd)) || le.Uint64(mod[16:]) != 0 || le.Uint64(mod[24:]) != 0 {
		t.Errorf("module 0: paddr %#x size %d cmdline %#x reserved %#x", le.Uint64(mod[0:]), le.Uint64(mod[8:]), le.Uint64(mod[16:]), le.Uint64(mod[24:]))
	}
	if !bytes.Equal(mem[lay.Initrd:lay.Initrd+uint64(len(initrd))], initrd) {
		t.Error("initrd bytes differ")
	}
	c := le.Uint64(si[0x18:])
	if string(mem[c:c+uint64(len(cmdline))+1]) != cmdline+"\x00" {
		t.Errorf("command line at %#x: %q", c, mem[c:c+uint64(len(cmdline))+1])
	}
	if le.Uint64(si[0x20:]) != testRSDP {
		t.Errorf("rsdp_paddr %#x", le.Uint64(si[0x20:]))
	}
	mm, n := le.Uint64(si[0x28:]), le.Uint32(si[0x30:])
	if int(n) != len(lay.E820) {
		t.Fatalf("%d memmap entries, want %d", n, len(lay.E820))
	}
	for i, want := range lay.E820 {
		e := mem[mm+uint64(i)*24:]
		got := E820Entry{Addr: le.Uint64(e), Size: le.Uint64(e[8:]), Type: le.Uint32(e[16:])}
		if got != want || le.Uint32(e[20:]) != 0 {
			t.Errorf("memmap[%d] = %+v (reserved %#x), want %+v", i, got, le.Uint32(e[20:]), want)
		}
	}
	if mm+uint64(n)*24 > ZeroPageAddr || le.Uint64(si[0x10:]) < StartInfoAddr+0x38 {
		t.Error("start info tables overlap the start info or the zero page")
	}
}

// TestLoadFakeVmlinux: both note sizes Linux has emitted, and a bss that
// is zeroed even over memory that held something.
func TestLoadFakeVmlinux(t *testing.T) {
	const memSize = 64 << 20
	mem := make([]byte, memSize)
	for _, size := range []int{4, 8} {
		for i := range mem {
			mem[i] = 0xaa
		}
		b, err := Load(mem, fakeVmlinux(size), nil, "", memSize, Options{HoleStart: testHole})
		if err != nil {
			t.Fatalf("note of %d bytes: %v", size, err)
		}
		if b.Regs.RIP != fakeVmlinuxEntry {
			t.Errorf("note of %d bytes: entry %#x", size, b.Regs.RIP)
		}
		if bss := mem[fakeVmlinuxAddr+fakeVmlinuxFile : fakeVmlinuxAddr+fakeVmlinuxMem]; bytes.ContainsFunc(bss, func(r rune) bool { return r != 0 }) {
			t.Errorf("note of %d bytes: bss not zeroed", size)
		}
		if mem[fakeVmlinuxAddr+fakeVmlinuxMem] != 0xaa {
			t.Error("Load wrote past the segment's memsz")
		}
		if le := binary.LittleEndian; le.Uint32(mem[StartInfoAddr+0x0c:]) != 0 || le.Uint64(mem[StartInfoAddr+0x10:]) != 0 {
			t.Error("no initrd, yet a module")
		}
	}
}

// TestParseVmlinuxRefuses breaks the fake one field at a time.
func TestParseVmlinuxRefuses(t *testing.T) {
	le := binary.LittleEndian
	const ph = 64          // first program header: PT_LOAD
	const note = 64 + 2*56 // the notes: GNU's (20 bytes), then Xen's
	const xenDesc = note + 20 + 12 + 4
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		want   error
	}{
		{"not ELF", func(b []byte) []byte { b[1] = 'X'; return b }, ErrInvalid},
		{"truncated header", func(b []byte) []byte { return b[:40] }, ErrInvalid},
		{"class byte says 32-bit", func(b []byte) []byte { b[elf.EI_CLASS] = byte(elf.ELFCLASS32); return b[:0x200] }, ErrInvalid},
		{"arm64", func(b []byte) []byte { le.PutUint16(b[18:], uint16(elf.EM_AARCH64)); return b }, ErrUnsupported},
		{"no PVH note", func(b []byte) []byte { le.PutUint32(b[note+28:], 17); return b }, ErrUnsupported},
		{"note desc of 6 bytes", func(b []byte) []byte { le.PutUint32(b[note+24:], 6); return b }, ErrInvalid},
		{"note overruns its segment", func(b []byte) []byte { le.PutUint32(b[note+4:], 1<<31); return b }, ErrInvalid},
		{"note name size huge", func(b []byte) []byte { le.PutUint32(b[note:], ^uint32(0)); return b }, ErrInvalid},
		{"entry above 4 GiB", func(b []byte) []byte { le.PutUint64(b[xenDesc:], 1<<32); return b }, ErrInvalid},
		{"entry outside the segments", func(b []byte) []byte { le.PutUint64(b[xenDesc:], 0x100); return b }, ErrInvalid},
		{"segment beyond the file", func(b []byte) []byte { le.PutUint64(b[ph+32:], 1<<20); return b }, ErrInvalid},
		{"segment offset wraps", func(b []byte) []byte { le.PutUint64(b[ph+8:], ^uint64(0)); return b }, ErrInvalid},
		{"filesz above memsz", func(b []byte) []byte { le.PutUint64(b[ph+40:], 0x10); return b }, ErrInvalid},
		{"segment wraps the address space", func(b []byte) []byte { le.PutUint64(b[ph+24:], ^uint64(0)&^0xfff); return b }, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseVmlinux(tc.mutate(fakeVmlinux(8)))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}
}

// TestLoadVmlinuxRefuses: segments that would overwrite the boot
// structures or leave RAM are refused before anything is copied there.
func TestLoadVmlinuxRefuses(t *testing.T) {
	const memSize = 64 << 20
	mem := make([]byte, memSize)
	const paddr = 64 + 24 // the PT_LOAD's p_paddr
	for _, tc := range []struct {
		name string
		addr uint64
		hole uint64
	}{
		{"over the zero page", ZeroPageAddr, testHole},
		{"in the BIOS area", 0xf0000, testHole},
		{"past RAM", memSize - fakeVmlinuxMem/2, testHole},
		// A hole inside the memory given, so that only the e820 map refuses.
		{"in the MMIO hole", 48<<20 + 0x1000, 48 << 20},
	} {
		img := fakeVmlinux(8)
		binary.LittleEndian.PutUint64(img[paddr:], tc.addr)
		binary.LittleEndian.PutUint64(img[64+2*56+36:], tc.addr+0x40) // keep the entry inside
		_, err := Load(mem, img, nil, "", memSize, Options{HoleStart: tc.hole})
		if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrMemory) {
			t.Errorf("%s: %v, want a refusal", tc.name, err)
		}
		t.Logf("%s: %v", tc.name, err)
	}
	if bytes.ContainsFunc(mem[:HighRAMStart], func(r rune) bool { return r != 0 }) {
		t.Error("a refused kernel was written below 1 MiB")
	}
}
