package vhostuser

import (
	"encoding/binary"
	"errors"
	"testing"
)

func TestParseHeader(t *testing.T) {
	b := make([]byte, HeaderSize)
	putHeader(b, GetFeatures, flagVersion, 0)
	if req, _, size, err := parseHeader(b); err != nil || req != GetFeatures || size != 0 {
		t.Fatalf("valid header: %v %v %v", req, size, err)
	}
	putHeader(b, GetFeatures, 2, 0)
	if _, _, _, err := parseHeader(b); !errors.Is(err, ErrMalformed) {
		t.Fatalf("version 2 accepted: %v", err)
	}
	putHeader(b, SetMemTable, flagVersion, MaxPayload+1)
	if _, _, _, err := parseHeader(b); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversized payload accepted: %v", err)
	}
}

func TestMemTable(t *testing.T) {
	regions := []MemRegion{{GuestAddr: 0, Size: 1 << 20, UserAddr: 0x7f0000000000}, {GuestAddr: 1 << 32, Size: 1 << 20, UserAddr: 0x7f1000000000, MmapOffset: 4096}}
	m := &Message{Request: SetMemTable, Payload: memTableBytes(regions), FDs: []int{7, 8}}
	got, err := m.MemTable()
	if err != nil || len(got) != 2 || got[1] != regions[1] {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for name, mm := range map[string]*Message{
		"fd count":  {Payload: memTableBytes(regions), FDs: []int{7}},
		"zero":      {Payload: memTableBytes(nil), FDs: nil},
		"too many":  {Payload: memTableBytes(make([]MemRegion, 9)), FDs: make([]int, 9)},
		"truncated": {Payload: memTableBytes(regions)[:40], FDs: []int{7, 8}},
		"overflow":  {Payload: memTableBytes([]MemRegion{{GuestAddr: ^uint64(0), Size: 2}}), FDs: []int{7}},
		"size zero": {Payload: memTableBytes([]MemRegion{{GuestAddr: 0, Size: 0}}), FDs: []int{7}},
	} {
		if _, err := mm.MemTable(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
}

func TestVringFileAndConfig(t *testing.T) {
	m := &Message{Request: SetVringKick, Payload: u64Bytes(3), FDs: []int{9}}
	if i, fd, err := m.VringFile(); err != nil || i != 3 || fd != 9 {
		t.Fatalf("kick: %d %d %v", i, fd, err)
	}
	m = &Message{Request: SetVringKick, Payload: u64Bytes(3 | vringNoFDFlag)}
	if _, fd, err := m.VringFile(); err != nil || fd != -1 {
		t.Fatalf("no-fd kick: %d %v", fd, err)
	}
	for name, mm := range map[string]*Message{
		"no fd":         {Payload: u64Bytes(1)},
		"two fds":       {Payload: u64Bytes(1), FDs: []int{4, 5}},
		"fd and no-fd":  {Payload: u64Bytes(1 | vringNoFDFlag), FDs: []int{4}},
		"reserved bits": {Payload: u64Bytes(1 << 20), FDs: []int{4}},
		"short":         {Payload: []byte{1, 2}, FDs: []int{4}},
	} {
		if _, _, err := mm.VringFile(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
	c := ConfigMsg{Offset: 4, Data: make([]byte, 8)}
	m = &Message{Request: GetConfig, Payload: c.bytes()}
	if got, err := m.Config(); err != nil || got.Offset != 4 || len(got.Data) != 8 {
		t.Fatalf("config: %+v %v", got, err)
	}
	bad := c.bytes()
	binary.LittleEndian.PutUint32(bad[4:], 300)
	if _, err := (&Message{Payload: bad}).Config(); !errors.Is(err, ErrMalformed) {
		t.Fatal("config size beyond the payload accepted")
	}
}

// FuzzMessage feeds arbitrary headers and payloads to every decoder: none
// may panic, and whatever decodes must respect the limits.
func FuzzMessage(f *testing.F) {
	f.Add(uint32(SetMemTable), memTableBytes([]MemRegion{{Size: 4096}}), uint8(1))
	f.Add(uint32(SetVringAddr), VringAddr{Index: 1}.bytes(), uint8(0))
	f.Add(uint32(GetConfig), ConfigMsg{Data: make([]byte, 60)}.bytes(), uint8(0))
	f.Add(uint32(SetVringKick), u64Bytes(0), uint8(1))
	f.Fuzz(func(t *testing.T, req uint32, payload []byte, nfds uint8) {
		hdr := make([]byte, HeaderSize)
		putHeader(hdr, Request(req), flagVersion, uint32(len(payload)))
		if _, _, size, err := parseHeader(hdr); err != nil || size != uint32(len(payload)) {
			if len(payload) <= MaxPayload {
				t.Fatalf("valid header refused: %v", err)
			}
			return
		}
		m := &Message{Request: Request(req), Payload: payload, FDs: make([]int, int(nfds)%10)}
		if regions, err := m.MemTable(); err == nil {
			if len(regions) == 0 || len(regions) > MaxRegions || len(regions) != len(m.FDs) {
				t.Fatalf("bad region table accepted: %d regions, %d fds", len(regions), len(m.FDs))
			}
			for _, r := range regions {
				if r.Size == 0 || r.GuestAddr+r.Size < r.GuestAddr {
					t.Fatalf("overflowing region accepted: %+v", r)
				}
			}
		}
		m.VringAddr()
		m.VringState()
		m.VringFile()
		m.Inflight()
		if c, err := m.Config(); err == nil && c.Offset+uint32(len(c.Data)) > MaxConfigSize {
			t.Fatalf("config beyond the limit accepted: %+v", c)
		}
	})
}
