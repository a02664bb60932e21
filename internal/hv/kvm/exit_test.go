//go:build linux && amd64

package kvm

import (
	"encoding/binary"
	"errors"
	"testing"
)

// mapping is a stand-in for a vCPU's kvm_run mapping: struct kvm_run, then
// the page KVM puts port I/O data in.
func mapping() []byte { return make([]byte, 3*4096) }

func putIO(run []byte, dir, size uint8, port uint16, count uint32, off uint64) {
	run[runIODirection] = dir
	run[runIOSize] = size
	binary.LittleEndian.PutUint16(run[runIOPort:], port)
	binary.LittleEndian.PutUint32(run[runIOCount:], count)
	binary.LittleEndian.PutUint64(run[runIODataOffset:], off)
}

func TestDecodeIO(t *testing.T) {
	run := mapping()
	putIO(run, 1, 2, 0x3f8, 3, 4096)
	copy(run[4096:], "abcdef")
	io, err := decodeIO(run)
	if err != nil {
		t.Fatal(err)
	}
	if io.In || io.Size != 2 || io.Port != 0x3f8 || io.Count != 3 || string(io.Data) != "abcdef" {
		t.Fatalf("%+v", io)
	}
	// Data aliases the mapping, so that an in is answered in place,
	// and cannot be grown past its end.
	io.Data[0] = 'X'
	if run[4096] != 'X' || cap(io.Data) != 6 {
		t.Fatalf("data does not alias the mapping exactly (cap %d)", cap(io.Data))
	}

	for _, c := range []struct {
		name  string
		size  uint8
		count uint32
		off   uint64
	}{
		{"size 3", 3, 1, 4096},
		{"size 8", 8, 1, 4096},
		{"size 0", 0, 1, 4096},
		{"no items", 1, 0, 4096},
		{"offset past the end", 1, 1, uint64(len(run))},
		{"data past the end", 4, 1, uint64(len(run)) - 2},
		{"count overflowing", 4, 1 << 31, 4096},
		{"offset wrapping", 1, 2, ^uint64(0)},
	} {
		putIO(run, 0, c.size, 0x60, c.count, c.off)
		if io, err := decodeIO(run); !errors.Is(err, ErrBadExit) {
			t.Errorf("%s: %+v, %v; want ErrBadExit", c.name, io, err)
		}
	}
}

func TestDecodeMMIO(t *testing.T) {
	run := mapping()
	binary.LittleEndian.PutUint64(run[runMMIOPhysAddr:], 0xd000_0000)
	copy(run[runMMIOData:], []byte{1, 2, 3, 4, 5, 6, 7, 8})
	binary.LittleEndian.PutUint32(run[runMMIOLen:], 4)
	run[runMMIOIsWrite] = 1
	m, err := decodeMMIO(run)
	if err != nil {
		t.Fatal(err)
	}
	if m.Addr != 0xd000_0000 || !m.Write || string(m.Data) != "\x01\x02\x03\x04" || cap(m.Data) != 4 {
		t.Fatalf("%+v", m)
	}
	for _, n := range []uint32{0, 9, 1 << 31} {
		binary.LittleEndian.PutUint32(run[runMMIOLen:], n)
		if _, err := decodeMMIO(run); !errors.Is(err, ErrBadExit) {
			t.Errorf("length %d: %v, want ErrBadExit", n, err)
		}
	}
}

func TestDecodeOtherExits(t *testing.T) {
	run := mapping()
	binary.LittleEndian.PutUint64(run[runFailEntryReason:], 0xffff_ffff_ffff_ffff)
	binary.LittleEndian.PutUint32(run[runFailEntryCPU:], 1)
	if f := decodeFailEntry(run); f.HardwareReason != ^uint64(0) || f.CPU != 1 {
		t.Errorf("fail entry %+v", f)
	}

	run = mapping()
	binary.LittleEndian.PutUint32(run[runInternalSuberror:], InternalErrorEmulation)
	binary.LittleEndian.PutUint32(run[runInternalNData:], 1000) // more than data[16] holds
	for i := range 16 {
		binary.LittleEndian.PutUint64(run[runInternalData+8*i:], uint64(i))
	}
	if e := decodeInternalError(run); e.Suberror != InternalErrorEmulation || len(e.Data) != 16 || e.Data[15] != 15 {
		t.Errorf("internal error %+v", e)
	}

	run = mapping()
	binary.LittleEndian.PutUint32(run[runSystemEventType:], SystemEventReset)
	binary.LittleEndian.PutUint64(run[runSystemEventData:], 7)
	// ndata 0: a kernel before 5.18, whose data[0] was the flags field.
	if e := decodeSystemEvent(run); e.Type != SystemEventReset || len(e.Data) != 1 || e.Data[0] != 7 {
		t.Errorf("system event %+v", e)
	}

	if ExitMMIO.String() != "mmio" || ExitReason(99).String() != "exit-99" {
		t.Errorf("names: %v %v", ExitMMIO, ExitReason(99))
	}
}

// Whatever kvm_run holds, decoding neither panics nor hands out a slice
// outside the mapping.
func FuzzDecodeExit(f *testing.F) {
	seed := mapping()[:runSize+8]
	putIO(seed, 1, 1, 0x3f8, 1, runSize)
	f.Add(seed[:runExit+24])
	f.Fuzz(func(t *testing.T, head []byte) {
		run := mapping()[:runSize+64]
		copy(run, head)
		if io, err := decodeIO(run); err == nil {
			if len(io.Data) != int(io.Size)*int(io.Count) || len(io.Data) > len(run) {
				t.Fatalf("I/O data of %d bytes for %d×%d", len(io.Data), io.Count, io.Size)
			}
		}
		if m, err := decodeMMIO(run); err == nil && (len(m.Data) < 1 || len(m.Data) > 8) {
			t.Fatalf("MMIO data of %d bytes", len(m.Data))
		}
		decodeInternalError(run)
		decodeSystemEvent(run)
		decodeFailEntry(run)
	})
}
