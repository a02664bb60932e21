//go:build linux && amd64

package kvm_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azote/azote/internal/hv/kvm"
	"github.com/azote/azote/test/kvmhost"
)

// TestKVM runs real guests. Where this process has no KVM that can run
// Linux (every machine of this project), it runs itself inside the nested
// KVM test host instead, so it never skips for want of KVM.
func TestKVM(t *testing.T) {
	if !kvmhost.Direct() {
		kvmhost.RunTest(t, ".", "^TestKVM$")
		return
	}
	t.Run("System", testSystem)
	t.Run("RealModeIO", testRealModeIO)
	t.Run("RunAllocs", testRunAllocs)
	t.Run("LongModeMMIO", testLongModeMMIO)
	t.Run("IOEventFD", testIOEventFD)
	t.Run("Interrupts", testInterrupts)
	t.Run("TripleFault", testTripleFault)
}

// Guest physical layout of the test guests: 64 KiB of RAM at 0, and the
// pages Intel's VMX needs for real mode just below 4 GiB, where the
// firmware of a PC has them too.
const (
	memSize     = 64 << 10
	codeAddr    = 0x1000
	tssAddr     = 0xfffb_d000
	identityMap = 0xfffb_c000
	comPort     = 0x3f8
	exitTimeout = 20 * time.Second // TCG runs the nested guest slowly
)

// guest is a VM with its RAM and one vCPU.
type guest struct {
	sys  *kvm.System
	vm   *kvm.VM
	cpu  *kvm.VCPU
	mem  []byte
	tid  int // the thread the vCPU runs on
	name string
}

// newGuest makes a VM with memSize bytes of RAM at guest address 0 and
// vCPU 0, optionally with the in-kernel irqchip and PIT (which must exist
// before the vCPU). It locks the test's goroutine to its thread for the
// rest of the test: the vCPU runs there, and the watchdog of exit signals
// that thread.
func newGuest(t *testing.T, irqchip bool) *guest {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	g := &guest{tid: unix.Gettid(), name: t.Name()}
	var err error
	if g.sys, err = kvm.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.sys.Close() })
	if g.vm, err = g.sys.CreateVM(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.vm.Close() })
	// Anonymous memory, not Go heap: KVM keeps its address.
	g.mem, err = unix.Mmap(-1, 0, memSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(g.mem) })
	if err := g.vm.SetUserMemoryRegion(kvm.MemoryRegion{Slot: 0, GuestAddr: 0, Memory: g.mem}); err != nil {
		t.Fatal(err)
	}
	if err := g.vm.SetTSSAddr(tssAddr); err != nil {
		t.Fatal(err)
	}
	if err := g.vm.SetIdentityMapAddr(identityMap); err != nil {
		t.Fatal(err)
	}
	if irqchip {
		if err := g.vm.CreateIRQChip(); err != nil {
			t.Fatal(err)
		}
		if err := g.vm.CreatePIT2(); err != nil {
			t.Fatal(err)
		}
	}
	if g.cpu, err = g.vm.CreateVCPU(0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.cpu.Close() })
	return g
}

// realMode points the vCPU at code loaded at codeAddr, in real mode with
// all segments at 0 and the stack below 0x8000.
func (g *guest) realMode(t *testing.T, code []byte) {
	t.Helper()
	copy(g.mem[codeAddr:], code)
	s, err := g.cpu.Sregs()
	if err != nil {
		t.Fatal(err)
	}
	// Out of reset CS is f000 with base ffff0000 (the reset vector);
	// these guests have no firmware.
	for _, seg := range []*kvm.Segment{&s.CS, &s.DS, &s.ES, &s.SS} {
		seg.Base, seg.Selector = 0, 0
	}
	if err := g.cpu.SetSregs(&s); err != nil {
		t.Fatal(err)
	}
	r := kvm.Regs{RIP: codeAddr, RFLAGS: 2, RSP: 0x8000} // bit 1 of RFLAGS is always set
	if err := g.cpu.SetRegs(&r); err != nil {
		t.Fatal(err)
	}
}

// exit runs the vCPU to its next exit and checks its reason. A watchdog
// signals the vCPU's thread after exitTimeout, so that a guest that never
// exits (waiting in the kernel's HLT for an interrupt that does not come)
// fails the test instead of hanging it.
func (g *guest) exit(t *testing.T, want kvm.ExitReason) {
	t.Helper()
	done := make(chan struct{})
	var late atomic.Bool
	go func() {
		select {
		case <-done:
			return
		case <-time.After(exitTimeout):
		}
		late.Store(true)
		// Repeat: a signal that lands just before KVM_RUN starts
		// does not interrupt it. SIGURG, because the Go runtime
		// handles it and ignores one it did not send.
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			unix.Tgkill(unix.Getpid(), g.tid, unix.SIGURG)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	defer close(done)
	for {
		r, err := g.cpu.Run()
		if err != nil {
			t.Fatal(err)
		}
		if r == kvm.ExitIntr {
			if late.Load() {
				t.Fatalf("no exit within %v, want %v", exitTimeout, want)
			}
			continue // a signal meant for someone else
		}
		if r != want {
			t.Fatalf("exit %v, want %v%s", r, want, g.describe(r))
		}
		return
	}
}

// describe says what an unexpected exit was.
func (g *guest) describe(r kvm.ExitReason) string {
	regs, _ := g.cpu.Regs()
	s := ""
	switch r {
	case kvm.ExitIO:
		io, err := g.cpu.IO()
		s = fmt.Sprintf("%+v %v", io, err)
	case kvm.ExitMMIO:
		m, err := g.cpu.MMIO()
		s = mmioString(m, err)
	case kvm.ExitFailEntry:
		s = g.cpu.FailEntry().String()
	case kvm.ExitInternalError:
		s = g.cpu.InternalError().String()
	}
	return fmt.Sprintf(" (%s, rip %#x)", s, regs.RIP)
}

func mmioString(m kvm.MMIO, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("addr %#x data %x", m.Addr, m.Data)
}

// expectOut checks that the exit Run just returned is a one-byte out of
// val to port.
func (g *guest) expectOut(t *testing.T, port uint16, val byte) {
	t.Helper()
	g.exit(t, kvm.ExitIO)
	io, err := g.cpu.IO()
	if err != nil {
		t.Fatal(err)
	}
	if io.In || io.Port != port || io.Size != 1 || io.Count != 1 || len(io.Data) != 1 || io.Data[0] != val {
		t.Fatalf("I/O exit %+v, want an out of %#x to port %#x", io, val, port)
	}
}

func testSystem(t *testing.T) {
	sys, err := kvm.Open() // checks KVM_GET_API_VERSION
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	if err := sys.Require(kvm.RequiredCaps...); err != nil {
		t.Fatal(err)
	}
	if n, err := sys.CheckExtension(kvm.CapMaxVCPUs); err != nil || n < 2 {
		t.Errorf("KVM_CAP_MAX_VCPUS %d, %v", n, err)
	}
	if n := sys.VCPUMmapSize(); n < 4096 {
		t.Errorf("vCPU mapping of %d bytes", n)
	}
	ids, err := sys.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	leaves := map[uint32]kvm.CPUIDEntry{}
	for _, e := range ids {
		if e.Index == 0 {
			leaves[e.Function] = e
		}
	}
	// Leaf 0's vendor is the emulated EPYC's (or the real CPU's), and
	// 0x80000001 has long mode (EDX bit 29), which a 64-bit guest needs.
	vendor := string(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil,
		leaves[0].EBX), leaves[0].EDX), leaves[0].ECX))
	if vendor != "AuthenticAMD" && vendor != "GenuineIntel" {
		t.Errorf("CPUID vendor %q", vendor)
	}
	if leaves[0x8000_0001].EDX&(1<<29) == 0 {
		t.Errorf("no long mode in the supported CPUID (0x80000001 EDX %#x)", leaves[0x8000_0001].EDX)
	}
	t.Logf("%d supported CPUID entries, vendor %s", len(ids), vendor)
}

// realModeCode writes 'A' to COM1 and halts:
//
//	ba f8 03   mov dx, 0x3f8
//	b0 41      mov al, 'A'
//	ee         out dx, al
//	f4         hlt
var realModeCode = []byte{0xba, 0xf8, 0x03, 0xb0, 0x41, 0xee, 0xf4}

func testRealModeIO(t *testing.T) {
	g := newGuest(t, false)
	g.realMode(t, realModeCode)
	g.expectOut(t, comPort, 'A')
	// Without an in-kernel irqchip, HLT is the VMM's to handle.
	g.exit(t, kvm.ExitHLT)
	r, err := g.cpu.Regs()
	if err != nil {
		t.Fatal(err)
	}
	if r.RIP != codeAddr+uint64(len(realModeCode)) || r.RAX&0xff != 'A' || r.RDX&0xffff != comPort {
		t.Errorf("after the HLT: rip %#x rax %#x rdx %#x", r.RIP, r.RAX, r.RDX)
	}
}

// Run and decoding an exit are the data path of a VMM: they must not
// allocate.
func testRunAllocs(t *testing.T) {
	g := newGuest(t, false)
	g.realMode(t, realModeCode)
	regs := kvm.Regs{RIP: codeAddr, RFLAGS: 2, RSP: 0x8000}
	var failed error
	allocs := testing.AllocsPerRun(50, func() {
		if err := g.cpu.SetRegs(&regs); err != nil {
			failed = err
			return
		}
		for {
			r, err := g.cpu.Run()
			if err != nil {
				failed = err
				return
			}
			if r == kvm.ExitHLT {
				return
			}
			if r == kvm.ExitIO {
				if _, err := g.cpu.IO(); err != nil {
					failed = err
					return
				}
			}
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per guest run (set registers, run to the out, decode it, run to the HLT), want 0", allocs)
	}
}

// longModeCode writes a quadword to MMIO, reads a doubleword back from
// MMIO and halts:
//
//	bb 00 00 00 d0                  mov ebx, 0xd0000000
//	48 b8 88 77 66 55 44 33 22 11   mov rax, 0x1122334455667788
//	48 89 03                        mov [rbx], rax
//	8b 43 08                        mov eax, [rbx+8]
//	f4                              hlt
var longModeCode = []byte{
	0xbb, 0x00, 0x00, 0x00, 0xd0,
	0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
	0x48, 0x89, 0x03,
	0x8b, 0x43, 0x08,
	0xf4,
}

// Long mode, set up by hand as a VMM that boots a 64-bit kernel directly
// does: identity page tables, a GDT, and CR0, CR4 and EFER with paging
// and long mode on, entered with no mode switch by the guest.
const (
	lmGDT     = 0x0500
	lmPML4    = 0x1000
	lmPDPT    = 0x2000
	lmPDLow   = 0x3000 // maps [0, 2 MiB): RAM and the code
	lmPDHigh  = 0x4000 // maps [3 GiB, 4 GiB)'s 2 MiB page at the MMIO address
	lmCode    = 0x8000
	lmMMIO    = 0xd000_0000
	pagePRW   = 0x3  // present, writable
	pageLarge = 0x80 // PS: a 2 MiB page in a page directory

	cr0PE, cr0ET, cr0PG = 1 << 0, 1 << 4, 1 << 31
	cr4PAE              = 1 << 5
	eferLME, eferLMA    = 1 << 8, 1 << 10
)

// gdt: null, 64-bit code (0x08), data (0x10), 64-bit TSS (0x18).
var gdt = []uint64{0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff, 0x008f_8b00_0000_ffff}

// segment is what the CPU loads from GDT entry index: the hidden part of
// a segment register, which KVM takes as is.
func segment(index int) kvm.Segment {
	d := gdt[index]
	s := kvm.Segment{
		Base:     (d>>16)&0xff_ffff | (d>>56)<<24,
		Limit:    uint32(d&0xffff | (d>>48)&0xf<<16),
		Selector: uint16(index * 8),
		Type:     uint8(d>>40) & 0xf,
		S:        uint8(d>>44) & 1,
		DPL:      uint8(d>>45) & 3,
		Present:  uint8(d>>47) & 1,
		AVL:      uint8(d>>52) & 1,
		L:        uint8(d>>53) & 1,
		DB:       uint8(d>>54) & 1,
		G:        uint8(d>>55) & 1,
	}
	if s.G == 1 {
		s.Limit = s.Limit<<12 | 0xfff
	}
	return s
}

func testLongModeMMIO(t *testing.T) {
	g := newGuest(t, false)
	le := binary.LittleEndian
	for i, d := range gdt {
		le.PutUint64(g.mem[lmGDT+8*i:], d)
	}
	le.PutUint64(g.mem[lmPML4:], lmPDPT|pagePRW)
	le.PutUint64(g.mem[lmPDPT:], lmPDLow|pagePRW)
	le.PutUint64(g.mem[lmPDPT+3*8:], lmPDHigh|pagePRW)
	le.PutUint64(g.mem[lmPDLow:], 0|pagePRW|pageLarge)
	le.PutUint64(g.mem[lmPDHigh+(lmMMIO-0xc000_0000)>>21*8:], lmMMIO|pagePRW|pageLarge)
	copy(g.mem[lmCode:], longModeCode)

	// KVM refuses EFER.LME for a vCPU whose CPUID has no long mode, and
	// a new vCPU's CPUID is empty.
	ids, err := g.sys.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.cpu.SetCPUID(ids); err != nil {
		t.Fatal(err)
	}
	s, err := g.cpu.Sregs()
	if err != nil {
		t.Fatal(err)
	}
	s.GDT = kvm.DTable{Base: lmGDT, Limit: uint16(8*len(gdt) - 1)}
	s.CS = segment(1)
	s.DS, s.ES, s.FS, s.GS, s.SS = segment(2), segment(2), segment(2), segment(2), segment(2)
	s.TR = segment(3)
	s.CR3 = lmPML4
	s.CR4 = cr4PAE
	s.CR0 = cr0PE | cr0ET | cr0PG
	s.EFER = eferLME | eferLMA
	if err := g.cpu.SetSregs(&s); err != nil {
		t.Fatal(err)
	}
	if err := g.cpu.SetRegs(&kvm.Regs{RIP: lmCode, RFLAGS: 2, RSP: 0x7000}); err != nil {
		t.Fatal(err)
	}
	// The FPU and MSR state a Linux boot sets, read back. (Not MXCSR:
	// KVM's x86 KVM_SET_FPU and KVM_GET_FPU have never copied it.)
	fpu := kvm.FPU{FCW: 0x37f}
	fpu.XMM[3][0] = 0x5a
	if err := g.cpu.SetFPU(&fpu); err != nil {
		t.Fatal(err)
	}
	if got, err := g.cpu.FPU(); err != nil || got.FCW != 0x37f || got.XMM[3][0] != 0x5a {
		t.Errorf("FPU read back: fcw %#x xmm3 %x, %v", got.FCW, got.XMM[3], err)
	}
	const sysenterCS, kernelGSBase = 0x174, 0xc000_0102
	if err := g.cpu.SetMSRs([]kvm.MSR{{Index: sysenterCS, Data: 0x10}, {Index: kernelGSBase, Data: 0xffff_8880_0000_0000}}); err != nil {
		t.Fatal(err)
	}
	msrs := []kvm.MSR{{Index: sysenterCS}, {Index: kernelGSBase}}
	if err := g.cpu.GetMSRs(msrs); err != nil || msrs[0].Data != 0x10 || msrs[1].Data != 0xffff_8880_0000_0000 {
		t.Errorf("MSRs read back: %+v, %v", msrs, err)
	}

	// The write: eight bytes at the MMIO address, in the guest's order.
	g.exit(t, kvm.ExitMMIO)
	m, err := g.cpu.MMIO()
	if err != nil {
		t.Fatal(err)
	}
	if m.Addr != lmMMIO || !m.Write || le.Uint64(m.Data) != 0x1122_3344_5566_7788 || len(m.Data) != 8 {
		t.Fatalf("MMIO exit %s write %v, want 1122334455667788 written to %#x", mmioString(m, nil), m.Write, lmMMIO)
	}
	// The read: the VMM answers in place, the guest gets it in EAX.
	g.exit(t, kvm.ExitMMIO)
	if m, err = g.cpu.MMIO(); err != nil {
		t.Fatal(err)
	}
	if m.Addr != lmMMIO+8 || m.Write || len(m.Data) != 4 {
		t.Fatalf("MMIO exit %s write %v, want a 4-byte read of %#x", mmioString(m, nil), m.Write, lmMMIO+8)
	}
	le.PutUint32(m.Data, 0xcafe_f00d)
	g.exit(t, kvm.ExitHLT)
	r, err := g.cpu.Regs()
	if err != nil {
		t.Fatal(err)
	}
	if r.RAX != 0xcafe_f00d || r.RIP != lmCode+uint64(len(longModeCode)) {
		t.Errorf("after the HLT: rax %#x rip %#x", r.RAX, r.RIP)
	}
	if s, err := g.cpu.Sregs(); err != nil || s.EFER&eferLMA == 0 || s.CS.L != 1 {
		t.Errorf("not in 64-bit mode at the end: efer %#x cs.l %d, %v", s.EFER, s.CS.L, err)
	}
}

// ioeventfdCode writes to three addresses that have ioeventfds and one
// that does not match its ioeventfd's data, then reports done:
//
//	ba 34 12                       mov dx, 0x1234
//	b8 78 56                       mov ax, 0x5678
//	ef                             out dx, ax          ; ioeventfd, any data
//	ba 36 12                       mov dx, 0x1236
//	b0 41                          mov al, 0x41
//	ee                             out dx, al          ; ioeventfd wants 0x42: exits
//	b0 42                          mov al, 0x42
//	ee                             out dx, al          ; matches
//	b8 00 a0                       mov ax, 0xa000
//	8e c0                          mov es, ax
//	26 66 c7 06 00 00 ef be ad de  mov dword [es:0], 0xdeadbeef ; MMIO ioeventfd at 0xa0000
//	ba f8 03                       mov dx, 0x3f8
//	b0 44                          mov al, 'D'
//	ee                             out dx, al
//	f4                             hlt
var ioeventfdCode = []byte{
	0xba, 0x34, 0x12, 0xb8, 0x78, 0x56, 0xef,
	0xba, 0x36, 0x12, 0xb0, 0x41, 0xee,
	0xb0, 0x42, 0xee,
	0xb8, 0x00, 0xa0, 0x8e, 0xc0,
	0x26, 0x66, 0xc7, 0x06, 0x00, 0x00, 0xef, 0xbe, 0xad, 0xde,
	0xba, 0xf8, 0x03, 0xb0, 0x44, 0xee,
	0xf4,
}

func eventfd(t *testing.T) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// count reads and resets an eventfd's counter.
func count(t *testing.T, fd int) uint64 {
	t.Helper()
	var b [8]byte
	if _, err := unix.Read(fd, b[:]); err != nil {
		if errors.Is(err, unix.EAGAIN) {
			return 0
		}
		t.Fatal(err)
	}
	return binary.LittleEndian.Uint64(b[:])
}

// A write that has an ioeventfd signals it inside KVM and the guest goes
// on without an exit: a virtio notification reaches its card directly.
func testIOEventFD(t *testing.T) {
	g := newGuest(t, false)
	g.realMode(t, ioeventfdCode)
	anyData := kvm.IOEvent{Addr: 0x1234, PIO: true, Len: 2, FD: eventfd(t)}
	match := kvm.IOEvent{Addr: 0x1236, PIO: true, Len: 1, FD: eventfd(t), Match: true, Data: 0x42}
	mmio := kvm.IOEvent{Addr: 0xa0000, Len: 4, FD: eventfd(t)}
	for _, e := range []kvm.IOEvent{anyData, match, mmio} {
		if err := g.vm.IOEventFD(e); err != nil {
			t.Fatal(err)
		}
	}
	// The out of 0x41 is not the data match wants: it exits, after the
	// write to 0x1234 signalled without one.
	g.expectOut(t, 0x1236, 0x41)
	if n := count(t, anyData.FD); n != 1 {
		t.Errorf("port 0x1234's eventfd counted %d writes before the first exit, want 1", n)
	}
	if n := count(t, match.FD); n != 0 {
		t.Errorf("a write of 0x41 signalled the eventfd that matches 0x42 (%d)", n)
	}
	g.expectOut(t, comPort, 'D')
	if n := count(t, match.FD); n != 1 {
		t.Errorf("port 0x1236's eventfd counted %d matching writes, want 1", n)
	}
	if n := count(t, mmio.FD); n != 1 {
		t.Errorf("the MMIO eventfd at 0xa0000 counted %d writes, want 1", n)
	}
	g.exit(t, kvm.ExitHLT)

	if err := g.vm.RemoveIOEventFD(anyData); err != nil {
		t.Fatal(err)
	}
	if err := g.vm.RemoveIOEventFD(anyData); err == nil {
		t.Error("an ioeventfd removed twice")
	}
	if err := g.vm.IOEventFD(kvm.IOEvent{Addr: 0x10, PIO: true, Len: 3, FD: anyData.FD}); !errors.Is(err, kvm.ErrInvalid) {
		t.Errorf("a 3-byte ioeventfd: %v, want ErrInvalid", err)
	}
}

// interruptCode programs the master 8259 (vectors 0x20–0x27, IRQ 5 and 6
// unmasked), says it is ready on COM1 and waits for interrupts; IRQ 6's
// handler writes 'L', IRQ 5's writes 'F', each then acknowledges the PIC:
//
//	1000 fa           cli
//	1001 b0 11        mov al, 0x11 ; ICW1: edge, cascade, ICW4 follows
//	1003 e6 20        out 0x20, al
//	1005 b0 20        mov al, 0x20 ; ICW2: vector base 0x20
//	1007 e6 21        out 0x21, al
//	1009 b0 04        mov al, 0x04 ; ICW3: slave on IRQ 2
//	100b e6 21        out 0x21, al
//	100d b0 01        mov al, 0x01 ; ICW4: 8086 mode
//	100f e6 21        out 0x21, al
//	1011 b0 9f        mov al, 0x9f ; OCW1: mask all but IRQ 5 and 6
//	1013 e6 21        out 0x21, al
//	1015 ba f8 03     mov dx, 0x3f8
//	1018 b0 52        mov al, 'R'
//	101a ee           out dx, al
//	101b fb           sti          ; wait: sti, hlt, again
//	101c f4           hlt
//	101d eb fc        jmp 101b
//	1040 b0 46 ee     mov al, 'F' ; out dx, al   ; IRQ 5, vector 0x25
//	1043 b0 20 e6 20  mov al, 0x20; out 0x20, al ; EOI
//	1047 cf           iret
//	1060 b0 4c ee     mov al, 'L' ; out dx, al   ; IRQ 6, vector 0x26
//	1063 b0 20 e6 20  mov al, 0x20; out 0x20, al
//	1067 cf           iret
var (
	interruptMain = []byte{
		0xfa, 0xb0, 0x11, 0xe6, 0x20, 0xb0, 0x20, 0xe6, 0x21, 0xb0, 0x04, 0xe6, 0x21,
		0xb0, 0x01, 0xe6, 0x21, 0xb0, 0x9f, 0xe6, 0x21, 0xba, 0xf8, 0x03, 0xb0, 0x52, 0xee,
		0xfb, 0xf4, 0xeb, 0xfc,
	}
	irq5Handler = []byte{0xb0, 0x46, 0xee, 0xb0, 0x20, 0xe6, 0x20, 0xcf}
	irq6Handler = []byte{0xb0, 0x4c, 0xee, 0xb0, 0x20, 0xe6, 0x20, 0xcf}
)

// Interrupts through the in-kernel irqchip reach a halted guest: one
// raised with KVM_IRQ_LINE, one signalled through an irqfd, the path a
// card's interrupt takes.
func testInterrupts(t *testing.T) {
	g := newGuest(t, true)
	g.realMode(t, interruptMain)
	copy(g.mem[codeAddr+0x40:], irq5Handler)
	copy(g.mem[codeAddr+0x60:], irq6Handler)
	for vector, handler := range map[int]uint16{0x25: codeAddr + 0x40, 0x26: codeAddr + 0x60} {
		binary.LittleEndian.PutUint16(g.mem[4*vector:], handler) // offset; segment 0
	}
	// LINT0 takes the PIC's interrupts, LINT1 is NMI, as on a PC.
	lapic, err := g.cpu.LAPIC()
	if err != nil {
		t.Fatal(err)
	}
	lapic.SetReg(kvm.LAPICLVTLINT0, kvm.LAPICDeliveryExtINT)
	lapic.SetReg(kvm.LAPICLVTLINT1, kvm.LAPICDeliveryNMI)
	if err := g.cpu.SetLAPIC(&lapic); err != nil {
		t.Fatal(err)
	}
	if lapic, err = g.cpu.LAPIC(); err != nil || lapic.Reg(kvm.LAPICLVTLINT0) != kvm.LAPICDeliveryExtINT || lapic.Reg(kvm.LAPICLVTLINT1) != kvm.LAPICDeliveryNMI {
		t.Fatalf("LINT0 %#x LINT1 %#x read back, %v", lapic.Reg(kvm.LAPICLVTLINT0), lapic.Reg(kvm.LAPICLVTLINT1), err)
	}
	efd := eventfd(t)
	if err := g.vm.IRQFD(efd, 5); err != nil {
		t.Fatal(err)
	}

	g.expectOut(t, comPort, 'R')
	// An edge on IRQ 6 wakes the guest from its HLT, in the kernel.
	if err := g.vm.IRQLine(6, true); err != nil {
		t.Fatal(err)
	}
	if err := g.vm.IRQLine(6, false); err != nil {
		t.Fatal(err)
	}
	g.expectOut(t, comPort, 'L')
	// A write to the irqfd is an edge on IRQ 5.
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(efd, one[:]); err != nil {
		t.Fatal(err)
	}
	g.expectOut(t, comPort, 'F')

	// Once removed, the irqfd raises nothing. IRQ 5 outranks IRQ 6 at
	// the PIC, so were it still wired, the write below would be
	// delivered before the IRQ 6 raised after it; KVM injects an
	// irqfd's interrupt from a work queue, hence the wait between.
	if err := g.vm.RemoveIRQFD(efd, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(efd, one[:]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := g.vm.IRQLine(6, true); err != nil {
		t.Fatal(err)
	}
	if err := g.vm.IRQLine(6, false); err != nil {
		t.Fatal(err)
	}
	g.expectOut(t, comPort, 'L')
}

// tripleFaultCode loads an empty IDT and raises an exception, which
// cannot be delivered, nor can the #GP and #DF that follow:
//
//	2e 0f 01 1e 10 10   lidt cs:[0x1010] ; limit 0, base 0 (zeroed memory)
//	cc                  int3
var tripleFaultCode = []byte{0x2e, 0x0f, 0x01, 0x1e, 0x10, 0x10, 0xcc}

// A triple fault ends in a shutdown exit, the VMM's cue to stop or reset
// the guest: a guest cannot take the host down this way.
func testTripleFault(t *testing.T) {
	g := newGuest(t, false)
	g.realMode(t, tripleFaultCode)
	g.exit(t, kvm.ExitShutdown)
}
