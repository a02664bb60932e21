package boot

import (
	"errors"
	"sync"
	"testing"
)

// FuzzParseBzImage: any bytes give a BzImage whose slices are inside the
// input, or an error; never a panic. What parses is then loaded, so the
// address arithmetic of Load sees hostile headers too.
func FuzzParseBzImage(f *testing.F) {
	f.Add(fakeBzImage())
	for _, n := range []int{0, 0x1f1, hdrEndMin, 0x26c, 1024, 1025} {
		f.Add(fakeBzImage()[:n])
	}
	small := fakeBzImage()
	small[offSetupSects] = 0 // 0 means 4: more than the file holds
	f.Add(small)
	big := fakeBzImage()
	big[offJump+1] = 0x8e // the longest header boot_params has room for
	f.Add(big)

	// One guest memory for all runs: allocating it per input would make
	// the fuzzer measure the allocator.
	const memSize = 32 << 20
	var mu sync.Mutex
	mem := make([]byte, memSize)
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseBzImage(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v wraps neither ErrInvalid nor ErrUnsupported", err)
			}
			return
		}
		if len(k.Code) == 0 || len(k.header) < hdrEndMin-offSetupSects || len(k.Payload()) != int(k.PayloadLength) {
			t.Fatalf("parsed into %d bytes of code, %d of header", len(k.Code), len(k.header))
		}
		mu.Lock()
		defer mu.Unlock()
		bt, err := Load(mem, b, nil, "console=ttyS0", memSize, Options{HoleStart: 3 << 30})
		if err != nil {
			return
		}
		if bt.Layout.KernelEnd > memSize || bt.Regs.RIP != KernelAddr+0x200 {
			t.Fatalf("loaded with layout %+v", bt.Layout)
		}
	})
}

// FuzzParseVmlinux: the ELF path, through debug/elf and the note walk.
func FuzzParseVmlinux(f *testing.F) {
	f.Add(fakeVmlinux(4))
	f.Add(fakeVmlinux(8))
	f.Add(fakeVmlinux(8)[:200])
	const memSize = 32 << 20
	var mu sync.Mutex
	mem := make([]byte, memSize)
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseVmlinux(b)
		if err != nil {
			return
		}
		for _, s := range v.Segments {
			if uint64(len(s.Data)) > s.MemSize {
				t.Fatalf("segment with %d file bytes and memsz %d", len(s.Data), s.MemSize)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if bt, err := Load(mem, b, nil, "", memSize, Options{HoleStart: 3 << 30}); err == nil && bt.Layout.KernelEnd > memSize {
			t.Fatalf("loaded beyond memory: %+v", bt.Layout)
		}
	})
}
