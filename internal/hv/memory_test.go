package hv

import (
	"errors"
	"testing"
)

func TestMemoryLayout(t *testing.T) {
	for _, c := range []struct {
		size    uint64
		regions int
	}{{256 << 20, 1}, {3 << 30, 1}, {4 << 30, 2}} {
		m, err := NewMemory(c.size)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Regions) != c.regions || m.Size() != c.size {
			t.Fatalf("%d bytes: %d regions, size %d", c.size, len(m.Regions), m.Size())
		}
		var total uint64
		for _, r := range m.Regions {
			total += uint64(len(r.Host))
			if r.GuestAddr < MMIOHoleStart && r.GuestAddr+uint64(len(r.Host)) > MMIOHoleStart {
				t.Fatalf("region %#x+%#x crosses the MMIO hole", r.GuestAddr, len(r.Host))
			}
		}
		if total != c.size {
			t.Fatalf("regions hold %d bytes of %d", total, c.size)
		}
		cr := m.CardRegions()
		if len(cr) != c.regions || cr[len(cr)-1].MmapOffset+cr[len(cr)-1].Size != c.size {
			t.Fatalf("card regions %+v", cr)
		}
		// The same byte through two views: the high region is the memfd
		// past the low one.
		if c.regions == 2 {
			b, err := m.Slice(highMemStart, 1)
			if err != nil {
				t.Fatal(err)
			}
			b[0] = 0x5a
			if m.mapping[MMIOHoleStart] != 0x5a {
				t.Fatal("guest 4 GiB is not the memfd's byte after the low region")
			}
		}
		for _, bad := range [][2]uint64{{MMIOHoleStart, 1}, {m.Regions[0].GuestAddr + uint64(len(m.Regions[0].Host)) - 1, 2}, {^uint64(0), 2}, {0, ^uint64(0)}} {
			if _, err := m.Slice(bad[0], bad[1]); !errors.Is(err, ErrOutside) {
				t.Errorf("%d bytes: Slice(%#x, %#x) = %v, want ErrOutside", c.size, bad[0], bad[1], err)
			}
		}
		m.Close()
	}
	for _, bad := range []uint64{0, 1 << 20, 65<<20 + 1} {
		if _, err := NewMemory(bad); err == nil {
			t.Errorf("NewMemory(%d) accepted", bad)
		}
	}
}
