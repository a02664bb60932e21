package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// TestParseDebianKernel reads the header of the kernel azote's images
// boot and checks it against the kernel's own build configuration.
func TestParseDebianKernel(t *testing.T) {
	dk := realKernel(t)
	k, err := ParseBzImage(dk.image)
	if err != nil {
		t.Fatalf("%s: %v", dk.path, err)
	}
	if k.Protocol < 0x020f {
		t.Errorf("protocol %#x, a 6.1 kernel speaks 2.15", k.Protocol)
	}
	if k.XLoadFlags&XLFKernel64 == 0 || k.XLoadFlags&XLFAbove4G == 0 {
		t.Errorf("xloadflags %#x lack XLF_KERNEL_64 or XLF_CAN_BE_LOADED_ABOVE_4G", k.XLoadFlags)
	}
	if k.LoadFlags&LoadedHigh == 0 {
		t.Errorf("loadflags %#x: not loaded high", k.LoadFlags)
	}
	if want := dk.config["CONFIG_RELOCATABLE"] == "y"; k.Relocatable != want {
		t.Errorf("relocatable %v, CONFIG_RELOCATABLE=%s", k.Relocatable, dk.config["CONFIG_RELOCATABLE"])
	}
	if want := dk.configUint(t, "CONFIG_PHYSICAL_ALIGN"); uint64(k.KernelAlignment) != want {
		t.Errorf("kernel_alignment %#x, CONFIG_PHYSICAL_ALIGN=%#x", k.KernelAlignment, want)
	}
	if want := dk.configUint(t, "CONFIG_PHYSICAL_START"); k.PrefAddress != want {
		t.Errorf("pref_address %#x, CONFIG_PHYSICAL_START=%#x", k.PrefAddress, want)
	}
	// COMMAND_LINE_SIZE is 2048 on x86, and the header counts without the NUL.
	if k.CmdlineSize != 2047 {
		t.Errorf("cmdline_size %d, want 2047", k.CmdlineSize)
	}
	if k.InitrdAddrMax != 0x7fffffff {
		t.Errorf("initrd_addr_max %#x, want 0x7fffffff (2 GiB, the x86-64 limit)", k.InitrdAddrMax)
	}
	setup := (k.SetupSects + 1) * 512
	if syssize := binary.LittleEndian.Uint32(dk.image[offSyssize:]); len(k.Code) != int(syssize)*16 {
		t.Errorf("%d bytes of code, syssize says %d", len(k.Code), syssize*16)
	}
	if !bytes.Equal(k.Code, dk.image[setup:setup+len(k.Code)]) {
		t.Error("Code is not the bytes after the setup sectors")
	}
	// The kernel decompresses into init_size bytes: more than its
	// compressed self, and room for the decompressed vmlinux.
	if uint64(k.InitSize) <= uint64(len(k.Code)) || k.InitSize > 256<<20 {
		t.Errorf("init_size %#x for %#x bytes of kernel", k.InitSize, len(k.Code))
	}
	if k.HandoverOffset == 0 || uint64(k.HandoverOffset) >= uint64(len(k.Code)) {
		t.Errorf("handover_offset %#x outside the %#x-byte kernel (CONFIG_EFI_STUB=%s)", k.HandoverOffset, len(k.Code), dk.config["CONFIG_EFI_STUB"])
	}
	if p := k.Payload(); len(p) < 1<<20 || !bytes.HasPrefix(p, []byte{0x02, 0x21, 0x4c, 0x18}) {
		t.Errorf("payload of %d bytes starting % x, want the LZ4 legacy magic", len(p), p[:min(4, len(p))])
	}
	// The 64-bit entry: startup_64 is 0x200 into the protected-mode code.
	if k.runtimeStart(KernelAddr) != k.PrefAddress {
		t.Errorf("a kernel loaded at 1 MiB runs at %#x, want pref_address %#x", k.runtimeStart(KernelAddr), k.PrefAddress)
	}
}

// TestParseBzImageRefuses feeds images broken one field at a time; each
// must be refused with the right sentinel and without a panic.
func TestParseBzImageRefuses(t *testing.T) {
	le := binary.LittleEndian
	setup := (fakeSetupSects + 1) * 512
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		want   error
	}{
		{"empty", func(b []byte) []byte { return nil }, ErrInvalid},
		{"boot sector only", func(b []byte) []byte { return b[:512] }, ErrInvalid},
		{"cut before init_size", func(b []byte) []byte { return b[:hdrEndMin-1] }, ErrInvalid},
		{"cut inside the setup", func(b []byte) []byte { return b[:setup-1] }, ErrInvalid},
		{"cut after the setup", func(b []byte) []byte { return b[:setup] }, ErrInvalid},
		{"cut inside the code", func(b []byte) []byte { return b[:len(b)-1] }, ErrInvalid},
		{"no HdrS", func(b []byte) []byte { b[offMagic] = 'h'; return b }, ErrInvalid},
		{"no boot flag", func(b []byte) []byte { le.PutUint16(b[offBootFlag:], 0); return b }, ErrInvalid},
		{"protocol 2.09", func(b []byte) []byte { le.PutUint16(b[offVersion:], 0x0209); return b }, ErrUnsupported},
		{"protocol 2.11, no xloadflags", func(b []byte) []byte { le.PutUint16(b[offVersion:], 0x020b); return b }, ErrUnsupported},
		{"not a short jump", func(b []byte) []byte { b[offJump] = 0xe9; return b }, ErrInvalid},
		{"header ends before init_size", func(b []byte) []byte { b[offJump+1] = 0x61; return b }, ErrInvalid},
		{"header runs into the e820 table", func(b []byte) []byte { b[offJump+1] = 0x8f; return b }, ErrInvalid},
		{"backward jump", func(b []byte) []byte { b[offJump+1] = 0xfe; return b }, ErrInvalid},
		{"setup sectors beyond the file", func(b []byte) []byte { b[offSetupSects] = 0xff; return b }, ErrInvalid},
		{"syssize 0", func(b []byte) []byte { le.PutUint32(b[offSyssize:], 0); return b }, ErrInvalid},
		{"syssize all ones", func(b []byte) []byte { le.PutUint32(b[offSyssize:], ^uint32(0)); return b }, ErrInvalid},
		{"zImage", func(b []byte) []byte { b[offLoadflags] = 0; return b }, ErrUnsupported},
		{"no 64-bit entry", func(b []byte) []byte { le.PutUint16(b[offXloadflags:], XLFAbove4G); return b }, ErrUnsupported},
		{"alignment 0", func(b []byte) []byte { le.PutUint32(b[offKernelAlign:], 0); return b }, ErrInvalid},
		{"alignment not a power of two", func(b []byte) []byte { le.PutUint32(b[offKernelAlign:], 3<<20); return b }, ErrInvalid},
		{"alignment 4 GiB-ish", func(b []byte) []byte { le.PutUint32(b[offKernelAlign:], 1<<31); return b }, ErrInvalid},
		{"init_size 0", func(b []byte) []byte { le.PutUint32(b[offInitSize:], 0); return b }, ErrInvalid},
		{"pref_address at the top", func(b []byte) []byte { le.PutUint64(b[offPrefAddress:], ^uint64(0)&^0xfff); return b }, ErrInvalid},
		{"payload beyond the code", func(b []byte) []byte { le.PutUint32(b[offPayloadLength:], fakeCodeLen); return b }, ErrInvalid},
		{"payload offset wraps", func(b []byte) []byte {
			le.PutUint32(b[offPayloadOffset:], ^uint32(0))
			le.PutUint32(b[offPayloadLength:], 2)
			return b
		}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBzImage(tc.mutate(fakeBzImage()))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}
	if _, err := ParseBzImage(fakeBzImage()); err != nil {
		t.Fatalf("the unbroken fake: %v", err)
	}
}

// TestParseDebianKernelTruncated cuts the real kernel short at the places
// a parser could trip on.
func TestParseDebianKernelTruncated(t *testing.T) {
	img := realKernel(t).image
	k, err := ParseBzImage(img)
	if err != nil {
		t.Fatal(err)
	}
	setup := (k.SetupSects + 1) * 512
	for _, n := range []int{0, 1, offSetupSects, offMagic + 2, hdrEndMin - 1, offMagic + int(img[offJump+1]) - 1, setup - 1, setup, setup + len(k.Code) - 1} {
		if _, err := ParseBzImage(img[:n:n]); !errors.Is(err, ErrInvalid) {
			t.Errorf("cut to %d bytes: %v, want ErrInvalid", n, err)
		}
	}
}
