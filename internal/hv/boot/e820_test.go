package boot

import (
	"errors"
	"slices"
	"testing"
)

// TestE820 checks the memory map of guests below, at and above the MMIO
// hole: sorted, non-overlapping, and covering exactly the guest's RAM
// (as hv.NewMemory lays it out: up to the hole, the rest from 4 GiB).
func TestE820(t *testing.T) {
	const hole = 3 << 30
	for _, tc := range []struct {
		mem, hole uint64
	}{
		{256 << 20, hole},
		{2 << 30, hole},
		{3 << 30, hole},
		{5 << 30, hole},
		{5 << 30, 2 << 30}, // a larger hole, as a parameter
		{64 << 20, 4 << 30},
	} {
		m, err := E820(tc.mem, tc.hole)
		if err != nil {
			t.Fatalf("%#x bytes, hole at %#x: %v", tc.mem, tc.hole, err)
		}
		// What the guest has: [0, min(mem, hole)) and the rest from 4 GiB.
		want := []E820Entry{{Addr: 0, Size: min(tc.mem, tc.hole)}}
		if tc.mem > tc.hole {
			want = append(want, E820Entry{Addr: 1 << 32, Size: tc.mem - tc.hole})
		}
		var covered []E820Entry
		var ram uint64
		for i, e := range m {
			if e.Size == 0 {
				t.Errorf("%#x: empty entry %d", tc.mem, i)
			}
			if i > 0 && e.Addr < m[i-1].Addr+m[i-1].Size {
				t.Errorf("%#x: entry %d %+v overlaps or precedes entry %d %+v", tc.mem, i, e, i-1, m[i-1])
			}
			if e.Addr < 1<<32 && e.Addr+e.Size > tc.hole {
				t.Errorf("%#x: entry %+v reaches into the MMIO hole at %#x", tc.mem, e, tc.hole)
			}
			switch e.Type {
			case E820RAM:
				ram += e.Size
			case E820Reserved:
				if e.Addr != LowRAMEnd || e.Addr+e.Size != HighRAMStart {
					t.Errorf("%#x: reserved %+v, want the BIOS area [0x9fc00, 1 MiB)", tc.mem, e)
				}
			default:
				t.Errorf("%#x: entry of type %d", tc.mem, e.Type)
			}
			// Merge adjacent entries to compare with the guest's regions.
			if n := len(covered); n > 0 && covered[n-1].Addr+covered[n-1].Size == e.Addr {
				covered[n-1].Size += e.Size
			} else {
				covered = append(covered, E820Entry{Addr: e.Addr, Size: e.Size})
			}
		}
		if !slices.Equal(covered, want) {
			t.Errorf("%#x bytes, hole at %#x: entries cover %+v, the guest has %+v", tc.mem, tc.hole, covered, want)
		}
		if ram != tc.mem-(HighRAMStart-LowRAMEnd) {
			t.Errorf("%#x: %#x bytes of RAM, want all but the BIOS area", tc.mem, ram)
		}
	}
}

func TestE820Refuses(t *testing.T) {
	for _, tc := range []struct{ mem, hole uint64 }{
		{0, 3 << 30},
		{1 << 20, 3 << 30},            // nothing above the BIOS area
		{256<<20 + 1, 3 << 30},        // not a page multiple
		{256 << 20, 0},                // no hole given
		{256 << 20, 1 << 20},          // hole where the kernel goes
		{256 << 20, 3<<30 + 512},      // hole not page aligned
		{256 << 20, 4<<30 + 4096},     // hole above 4 GiB
		{^uint64(0) &^ 4095, 3 << 30}, // more than an address space
	} {
		if _, err := E820(tc.mem, tc.hole); !errors.Is(err, ErrMemory) {
			t.Errorf("E820(%#x, %#x): %v, want ErrMemory", tc.mem, tc.hole, err)
		}
	}
}
