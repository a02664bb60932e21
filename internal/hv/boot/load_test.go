package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

const (
	testHole = 3 << 30 // hv.MMIOHoleStart
	testRSDP = 0xe0000 // where an ACPI writer would put it, in the BIOS area
)

func testInitrd(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(b)
	return b
}

// TestLoadDebianKernel loads the real kernel into a 256 MiB guest and
// reads back everything the kernel will read: the zero page field by
// field, the command line, the initrd, the code at the entry point, the
// GDT behind the segment registers and the page tables behind CR3.
func TestLoadDebianKernel(t *testing.T) {
	dk := realKernel(t)
	const memSize = 256 << 20
	mem := make([]byte, memSize)
	initrd := testInitrd(3<<20 + 123)
	cmdline := "console=ttyS0 panic=-1 quiet"
	b, err := Load(mem, dk.image, initrd, cmdline, memSize, Options{HoleStart: testHole, RSDP: testRSDP})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ParseBzImage(dk.image)
	lay := b.Layout
	if lay.Protocol != Linux64 {
		t.Fatalf("protocol %v, want linux64", lay.Protocol)
	}
	le := binary.LittleEndian
	zp := mem[ZeroPageAddr : ZeroPageAddr+ZeroPageSize]

	// The setup header is the image's, but for the fields a loader writes.
	hdrEnd := offMagic + int(dk.image[offJump+1])
	written := map[int]int{ // offset: size
		offTypeOfLoader: 1, offLoadflags: 1, offHeapEndPtr: 2, offCmdLinePtr: 4,
		offRamdiskImage: 4, offRamdiskSize: 4,
	}
	for off := offSetupSects; off < hdrEnd; off++ {
		if in(written, off) {
			continue
		}
		if zp[off] != dk.image[off] {
			t.Errorf("zero page %#x = %#x, the image's header has %#x", off, zp[off], dk.image[off])
		}
	}
	for _, f := range []struct {
		name      string
		off, size int
		want      uint64
	}{
		{"type_of_loader", offTypeOfLoader, 1, 0xff},
		{"loadflags", offLoadflags, 1, uint64(dk.image[offLoadflags] | CanUseHeap)},
		{"heap_end_ptr", offHeapEndPtr, 2, 0xde00},
		{"cmd_line_ptr", offCmdLinePtr, 4, CmdlineAddr},
		{"ext_cmd_line_ptr", zpExtCmdLinePtr, 4, 0},
		{"ramdisk_image", offRamdiskImage, 4, lay.Initrd},
		{"ext_ramdisk_image", zpExtRamdiskImg, 4, 0},
		{"ramdisk_size", offRamdiskSize, 4, uint64(len(initrd))},
		{"ext_ramdisk_size", zpExtRamdiskSize, 4, 0},
		{"acpi_rsdp_addr", zpACPIRSDPAddr, 8, testRSDP},
		{"e820_entries", zpE820Entries, 1, 3},
		{"sentinel", zpSentinel, 1, 0},
	} {
		var got uint64
		for i := f.size - 1; i >= 0; i-- {
			got = got<<8 | uint64(zp[f.off+i])
		}
		if got != f.want {
			t.Errorf("zero page %s (%#x) = %#x, want %#x", f.name, f.off, got, f.want)
		}
		written[f.off] = f.size
	}
	for i, want := range lay.E820 {
		o := zpE820Table + i*e820EntrySize
		got := E820Entry{Addr: le.Uint64(zp[o:]), Size: le.Uint64(zp[o+8:]), Type: le.Uint32(zp[o+16:])}
		if got != want {
			t.Errorf("zero page e820[%d] = %+v, want %+v", i, got, want)
		}
	}
	written[zpE820Table] = len(lay.E820) * e820EntrySize
	// Everything else is zero: screen_info, EDD, EFI info are not ours to fake.
	for off := range zp {
		if !in(written, off) && (off < offSetupSects || off >= hdrEnd) && zp[off] != 0 {
			t.Fatalf("zero page %#x = %#x, want 0", off, zp[off])
		}
	}

	// The command line, NUL-terminated, where cmd_line_ptr says.
	if got := mem[CmdlineAddr : CmdlineAddr+len(cmdline)+1]; string(got) != cmdline+"\x00" {
		t.Errorf("command line %q", got)
	}
	// The initrd, whole, where ramdisk_image says; high, aligned, legal.
	if !bytes.Equal(mem[lay.Initrd:lay.Initrd+lay.InitrdLen], initrd) {
		t.Error("initrd bytes differ")
	}
	checkInitrd(t, lay, uint64(k.InitrdAddrMax), memSize)
	if run := k.runtimeStart(KernelAddr); lay.KernelEnd != run+uint64(k.InitSize) {
		t.Errorf("kernel end %#x, want runtime start %#x + init_size %#x", lay.KernelEnd, run, k.InitSize)
	}

	// The protected-mode kernel at 1 MiB, entered 0x200 in.
	if !bytes.Equal(mem[KernelAddr:KernelAddr+len(k.Code)], k.Code) {
		t.Error("kernel code at 1 MiB differs from the image")
	}
	if b.Regs.RIP != KernelAddr+0x200 || b.Regs.RSI != ZeroPageAddr || b.Regs.RFLAGS != 2 {
		t.Errorf("regs %+v: want RIP 0x100200, RSI the zero page, RFLAGS 2", b.Regs)
	}
	// The boot protocol's register contract for 64-bit entry.
	s := b.SRegs
	if s.CR0 != CR0PE|CR0ET|CR0PG || s.CR4 != CR4PAE || s.EFER != EFERLME|EFERLMA || s.CR3 != PML4Addr {
		t.Errorf("control registers CR0 %#x CR3 %#x CR4 %#x EFER %#x", s.CR0, s.CR3, s.CR4, s.EFER)
	}
	if s.CS.Selector != 0x10 || s.CS.L != 1 || s.CS.DB != 0 || s.CS.Type&0x8 == 0 {
		t.Errorf("CS %+v, want __BOOT_CS 0x10, 64-bit code", s.CS)
	}
	for _, seg := range []Segment{s.DS, s.ES, s.SS} {
		if seg.Selector != 0x18 || seg.Type&0x8 != 0 || seg.Type&0x2 == 0 {
			t.Errorf("data segment %+v, want __BOOT_DS 0x18, read/write", seg)
		}
	}
	checkGDT(t, mem, s)

	// Identity mapping of what the protocol asks for: the kernel from its
	// load address through init_size past its runtime start, the zero
	// page and the command line; and the initrd, GDT and the LAPIC too.
	for _, r := range [][2]uint64{
		{KernelAddr, lay.KernelEnd - KernelAddr},
		{ZeroPageAddr, ZeroPageSize},
		{CmdlineAddr, lay.CmdlineLen},
		{lay.Initrd, lay.InitrdLen},
		{GDTAddr, gdtEntries * 8},
		{0xfee00000, 4096},
	} {
		for _, va := range []uint64{r[0], r[0] + r[1]/2, r[0] + r[1] - 1} {
			if pa, ok := translate(t, mem, s.CR3, va); !ok || pa != va {
				t.Errorf("virtual %#x maps to %#x (%v), want itself", va, pa, ok)
			}
		}
	}
}

func in(fields map[int]int, off int) bool {
	for o, n := range fields {
		if off >= o && off < o+n {
			return true
		}
	}
	return false
}

// checkInitrd: aligned, within initrd_addr_max and RAM, above the kernel,
// and as high as those allow.
func checkInitrd(t *testing.T, lay Layout, addrMax, memSize uint64) {
	t.Helper()
	end := lay.Initrd + lay.InitrdLen
	top := min(addrMax+1, memSize, testHole)
	switch {
	case lay.Initrd%4096 != 0:
		t.Errorf("initrd at %#x is not 4 KiB aligned", lay.Initrd)
	case end-1 > addrMax:
		t.Errorf("initrd ends at %#x, beyond initrd_addr_max %#x", end-1, addrMax)
	case end > top:
		t.Errorf("initrd ends at %#x, beyond RAM %#x", end, top)
	case lay.Initrd < lay.KernelEnd:
		t.Errorf("initrd at %#x, inside the kernel (to %#x)", lay.Initrd, lay.KernelEnd)
	case end+4096 <= top:
		t.Errorf("initrd ends at %#x, a page or more below %#x: not as high as it could be", end, top)
	}
}

// translate walks the 4-level page tables at cr3 as the MMU would.
func translate(t *testing.T, mem []byte, cr3, va uint64) (uint64, bool) {
	t.Helper()
	const addr = 0x000ffffffffff000
	table := cr3
	for level, shift := range []uint64{39, 30, 21, 12} {
		e := binary.LittleEndian.Uint64(mem[table+(va>>shift&511)*8:])
		if e&ptePresent == 0 {
			return 0, false
		}
		if e&pteWrite == 0 {
			t.Errorf("level %d entry %#x for %#x is read-only", 4-level, e, va)
		}
		if e&ptePS != 0 && (shift == 21 || shift == 30) {
			return e&addr&^(1<<shift-1) | va&(1<<shift-1), true
		}
		table = e & addr
	}
	return table | va&0xfff, true
}

// TestPageTables walks every 2 MiB page: the first 4 GiB map to
// themselves, nothing beyond is mapped.
func TestPageTables(t *testing.T) {
	mem := make([]byte, 1<<20)
	copy(mem[PML4Addr:], pageTables(PML4Addr))
	for va := uint64(0); va < 1<<32; va += 2 << 20 {
		for _, v := range []uint64{va, va + 0x1234, va + 2<<20 - 1} {
			if pa, ok := translate(t, mem, PML4Addr, v); !ok || pa != v {
				t.Fatalf("virtual %#x maps to %#x (%v)", v, pa, ok)
			}
		}
	}
	for _, va := range []uint64{1 << 32, 1<<32 + 2<<20, 1 << 39} {
		if pa, ok := translate(t, mem, PML4Addr, va); ok {
			t.Errorf("virtual %#x maps to %#x: only 4 GiB is claimed", va, pa)
		}
	}
	// The tables lie where the layout says and nowhere else.
	if end := PML4Addr + pageTablesSize; end > CmdlineAddr {
		t.Errorf("page tables end at %#x, over the command line", end)
	}
}

// checkGDT decodes the GDT in guest memory and compares each descriptor
// with the hidden state the segment registers were given, so that a
// reload of a selector by the kernel changes nothing.
func checkGDT(t *testing.T, mem []byte, s SRegs) {
	t.Helper()
	if s.GDT.Base != GDTAddr || s.GDT.Limit != gdtEntries*8-1 {
		t.Errorf("GDTR %+v", s.GDT)
	}
	g := mem[GDTAddr : GDTAddr+gdtEntries*8]
	desc := func(sel uint16) uint64 { return binary.LittleEndian.Uint64(g[sel:]) }
	for _, seg := range []Segment{s.CS, s.DS, s.ES, s.FS, s.GS, s.SS, s.TR} {
		if got := decode(desc(seg.Selector), seg.Selector); got != seg {
			t.Errorf("GDT[%#x] decodes to %+v, the register holds %+v", seg.Selector, got, seg)
		}
	}
	if desc(0) != 0 || desc(8) != 0 || desc(0x28) != 0 {
		t.Error("GDT null entries, or the TSS's upper half, are not zero")
	}
}

// decode is the inverse of descriptor, written from the SDM's picture.
func decode(d uint64, sel uint16) Segment {
	s := Segment{
		Base:     d>>16&0xffffff | d>>56<<24,
		Limit:    uint32(d&0xffff | d>>48&0xf<<16),
		Selector: sel,
		Type:     uint8(d >> 40 & 0xf),
		S:        uint8(d >> 44 & 1),
		DPL:      uint8(d >> 45 & 3),
		Present:  uint8(d >> 47 & 1),
		AVL:      uint8(d >> 52 & 1),
		L:        uint8(d >> 53 & 1),
		DB:       uint8(d >> 54 & 1),
		G:        uint8(d >> 55 & 1),
	}
	if s.G == 1 {
		s.Limit = s.Limit<<12 | 0xfff
	}
	return s
}

// TestDescriptors pins the encodings to the values every x86 loader
// writes (Linux's own GDT_ENTRY(0xa09b, 0, 0xfffff) and friends).
func TestDescriptors(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Segment
		want uint64
	}{
		{"code64", code64, 0x00af9b000000ffff},
		{"code32", code32, 0x00cf9b000000ffff},
		{"data", data, 0x00cf93000000ffff},
		{"tss", tss, 0x00008b0000000067},
	} {
		if got := descriptor(tc.s); got != tc.want {
			t.Errorf("%s: %#016x, want %#016x", tc.name, got, tc.want)
		}
	}
}

// TestInitrdPlacement loads a synthetic kernel whose initrd_addr_max cuts
// below the end of RAM, and one whose limit lies above it.
func TestInitrdPlacement(t *testing.T) {
	const memSize = 64 << 20
	mem := make([]byte, memSize)
	for _, tc := range []struct {
		addrMax uint32
		size    int
	}{
		{0x2345fff, 1 << 20},                       // ends on a page boundary
		{0x2345abc, 1<<20 + 1},                     // does not
		{0x7fffffff, 5<<20 + 17},                   // above RAM: RAM is the limit
		{fakePref + fakeInitSize + 4096 - 1, 4096}, // just fits above the kernel
	} {
		img := fakeBzImage()
		binary.LittleEndian.PutUint32(img[offInitrdAddrMax:], tc.addrMax)
		initrd := testInitrd(tc.size)
		b, err := Load(mem, img, initrd, "", memSize, Options{HoleStart: testHole})
		if err != nil {
			t.Fatalf("initrd_addr_max %#x: %v", tc.addrMax, err)
		}
		checkInitrd(t, b.Layout, uint64(tc.addrMax), memSize)
		if !bytes.Equal(mem[b.Layout.Initrd:b.Layout.Initrd+uint64(tc.size)], initrd) {
			t.Errorf("initrd_addr_max %#x: initrd bytes differ", tc.addrMax)
		}
	}
	// No room between the kernel and the limit: refused, not squeezed in.
	img := fakeBzImage()
	binary.LittleEndian.PutUint32(img[offInitrdAddrMax:], fakePref+fakeInitSize+4096-2)
	if _, err := Load(mem, img, testInitrd(4096), "", memSize, Options{HoleStart: testHole}); !errors.Is(err, ErrMemory) {
		t.Errorf("an initrd that would overlap the kernel: %v, want ErrMemory", err)
	}
	if _, err := Load(mem, fakeBzImage(), testInitrd(memSize), "", memSize, Options{HoleStart: testHole}); !errors.Is(err, ErrMemory) {
		t.Errorf("an initrd as large as RAM: %v, want ErrMemory", err)
	}
	// No initrd: none announced.
	b, err := Load(mem, fakeBzImage(), nil, "", memSize, Options{HoleStart: testHole})
	if err != nil {
		t.Fatal(err)
	}
	if b.Layout.Initrd != 0 || binary.LittleEndian.Uint32(mem[ZeroPageAddr+offRamdiskImage:]) != 0 {
		t.Errorf("no initrd, yet ramdisk_image %#x", b.Layout.Initrd)
	}
}

// TestCmdline: the kernel's cmdline_size is a hard limit, counted without
// the NUL; a NUL inside would cut the line short unnoticed.
func TestCmdline(t *testing.T) {
	const memSize = 64 << 20
	mem := make([]byte, memSize)
	img := fakeBzImage()
	limit := int(binary.LittleEndian.Uint32(img[offCmdlineSize:]))
	if _, err := Load(mem, img, nil, strings.Repeat("a", limit), memSize, Options{HoleStart: testHole}); err != nil {
		t.Errorf("a command line of cmdline_size bytes: %v", err)
	}
	if mem[CmdlineAddr+limit] != 0 {
		t.Error("no NUL after the command line")
	}
	for _, c := range []string{strings.Repeat("a", limit+1), "console=ttyS0\x00init=/bin/sh"} {
		if _, err := Load(mem, img, nil, c, memSize, Options{HoleStart: testHole}); !errors.Is(err, ErrCmdline) {
			t.Errorf("command line of %d bytes: %v, want ErrCmdline", len(c), err)
		}
	}
	// A header that claims more than the room below the EBDA is held to the room.
	binary.LittleEndian.PutUint32(img[offCmdlineSize:], ^uint32(0))
	if _, err := Load(mem, img, nil, strings.Repeat("a", LowRAMEnd-CmdlineAddr), memSize, Options{HoleStart: testHole}); !errors.Is(err, ErrCmdline) {
		t.Errorf("a command line into the BIOS area: %v, want ErrCmdline", err)
	}
}

// TestLoadRefuses: a guest too small for what the kernel says it needs,
// memory shorter than claimed, a missing hole.
func TestLoadRefuses(t *testing.T) {
	mem := make([]byte, 64<<20)
	for _, tc := range []struct {
		name    string
		mem     []byte
		memSize uint64
		o       Options
	}{
		{"RAM ends inside init_size", mem[:16<<20], 16 << 20, Options{HoleStart: testHole}},
		{"memory given shorter than 1 MiB + kernel", mem[:1<<20], 64 << 20, Options{HoleStart: testHole}},
		{"no hole given", mem, 64 << 20, Options{}},
		{"hole inside the kernel", mem, 64 << 20, Options{HoleStart: 8 << 20}},
	} {
		_, err := Load(tc.mem, fakeBzImage(), nil, "", tc.memSize, tc.o)
		if !errors.Is(err, ErrMemory) {
			t.Errorf("%s: %v, want ErrMemory", tc.name, err)
		}
		t.Logf("%s: %v", tc.name, err)
	}
}

// TestLowLayout: the fixed structures are disjoint and all in the RAM
// below the EBDA.
func TestLowLayout(t *testing.T) {
	areas := []struct {
		name       string
		start, end uint64
	}{
		{"GDT", GDTAddr, GDTAddr + gdtEntries*8},
		{"start info", StartInfoAddr, StartInfoAddr + startInfoMaxSize},
		{"zero page", ZeroPageAddr, ZeroPageAddr + ZeroPageSize},
		{"stack", BootStack - 0x400, BootStack},
		{"page tables", PML4Addr, PML4Addr + pageTablesSize},
		{"command line", CmdlineAddr, CmdlineAddr + 2048},
	}
	for i, a := range areas {
		if a.start < 0x500 || a.end > LowRAMEnd {
			t.Errorf("%s [%#x, %#x) outside [0x500, EBDA)", a.name, a.start, a.end)
		}
		for _, b := range areas[i+1:] {
			if a.start < b.end && b.start < a.end {
				t.Errorf("%s [%#x, %#x) overlaps %s [%#x, %#x)", a.name, a.start, a.end, b.name, b.start, b.end)
			}
		}
	}
}
