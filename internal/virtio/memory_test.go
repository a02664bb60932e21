package virtio

import (
	"errors"
	"math"
	"testing"
)

func TestNewGuestMemoryRejects(t *testing.T) {
	buf := make([]byte, 0x3000)
	tests := []struct {
		name    string
		regions []Region
	}{
		{"empty table", nil},
		{"zero size", []Region{{GuestAddr: 0, Size: 0, UserAddr: 0, Data: buf}}},
		{"short mapping", []Region{{GuestAddr: 0, Size: 0x4000, UserAddr: 0, Data: buf}}},
		{"guest range wraps", []Region{{GuestAddr: math.MaxUint64 - 0xfff, Size: 0x1000, Data: buf}}},
		{"user range wraps", []Region{{GuestAddr: 0, Size: 0x1000, UserAddr: math.MaxUint64 - 0x10, Data: buf}}},
		{"guest overlap", []Region{
			{GuestAddr: 0x10000, Size: 0x2000, UserAddr: 0x7f0000000000, Data: buf},
			{GuestAddr: 0x11000, Size: 0x1000, UserAddr: 0x7f0000100000, Data: buf},
		}},
		{"guest overlap, unsorted", []Region{
			{GuestAddr: 0x11fff, Size: 0x1000, UserAddr: 0x7f0000100000, Data: buf},
			{GuestAddr: 0x10000, Size: 0x2000, UserAddr: 0x7f0000000000, Data: buf},
		}},
		{"user overlap", []Region{
			{GuestAddr: 0x10000, Size: 0x1000, UserAddr: 0x7f0000000800, Data: buf},
			{GuestAddr: 0x20000, Size: 0x1000, UserAddr: 0x7f0000000000, Data: buf},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewGuestMemory(tt.regions); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("NewGuestMemory = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestGuestMemorySlice(t *testing.T) {
	low, high := make([]byte, 0x2000), make([]byte, 0x1000)
	m, err := NewGuestMemory([]Region{
		{GuestAddr: 0x100000, Size: 0x1000, UserAddr: 0x7f0000200000, Data: high}, // adjacent to low in guest space
		{GuestAddr: 0xff000, Size: 0x1000, UserAddr: 0x7f0000000000, Data: low},   // mapping longer than Size
		{GuestAddr: math.MaxUint64 - 0x1000, Size: 0x1000, UserAddr: 0x1000, Data: make([]byte, 0x1000)},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		gpa, n uint64
		ok     bool
		data   []byte
		off    uint64
	}{
		{0xff000, 0x1000, true, low, 0},
		{0xff010, 0x10, true, low, 0x10},
		{0xfffff, 1, true, low, 0xfff},
		{0xfffff, 2, false, nil, 0}, // spans two regions: Slice wants one
		{0x100000, 0x1000, true, high, 0},
		{0x100fff, 0, true, high, 0xfff},
		{0x101000, 0, false, nil, 0},
		{0xfe000, 1, false, nil, 0},
		{0x100800, math.MaxUint64, false, nil, 0},
		{0x100800, math.MaxUint64 - 0x100800 + 1, false, nil, 0}, // gpa+n wraps to 0
		{math.MaxUint64 - 0x1000, 0x1000, true, nil, 0},
		{math.MaxUint64 - 1, 1, true, nil, 0}, // the last byte below 2^64-1
		{math.MaxUint64 - 1, 2, false, nil, 0},
		{math.MaxUint64, 1, false, nil, 0},
	}
	for _, tt := range tests {
		b, err := m.Slice(tt.gpa, tt.n)
		if tt.ok != (err == nil) {
			t.Errorf("Slice(%#x, %#x) error = %v, want ok=%v", tt.gpa, tt.n, err, tt.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrOutOfBounds) {
				t.Errorf("Slice(%#x, %#x) error = %v, want ErrOutOfBounds", tt.gpa, tt.n, err)
			}
			continue
		}
		if uint64(len(b)) != tt.n || uint64(cap(b)) != tt.n {
			t.Errorf("Slice(%#x, %#x) has len %d cap %d", tt.gpa, tt.n, len(b), cap(b))
		}
		if tt.data != nil && tt.n > 0 && (!within(tt.data, b) || offsetIn(tt.data, b) != tt.off) {
			t.Errorf("Slice(%#x, %#x) points to the wrong host memory", tt.gpa, tt.n)
		}
	}
}

func TestGuestMemoryAppendBufferAcrossRegions(t *testing.T) {
	a, b := make([]byte, 0x1000), make([]byte, 0x1000)
	m, err := NewGuestMemory([]Region{
		{GuestAddr: 0x1000, Size: 0x1000, UserAddr: 0x10000, Data: a},
		{GuestAddr: 0x2000, Size: 0x1000, UserAddr: 0x20000, Data: b},
	})
	if err != nil {
		t.Fatal(err)
	}
	bufs, ok := m.appendBuffer(nil, 0x1ff0, 0x20)
	if !ok || len(bufs) != 2 || len(bufs[0]) != 0x10 || len(bufs[1]) != 0x10 ||
		!within(a, bufs[0]) || offsetIn(a, bufs[0]) != 0xff0 || !within(b, bufs[1]) || offsetIn(b, bufs[1]) != 0 {
		t.Fatalf("appendBuffer across adjacent regions = %d slices, ok=%v", len(bufs), ok)
	}
	if bufs, ok := m.appendBuffer(bufs, 0x2ff0, 0x20); ok || len(bufs) != 2 {
		t.Fatalf("appendBuffer past the last region = %d slices, ok=%v; want the 2 from before, false", len(bufs), ok)
	}
	if _, ok := m.appendBuffer(nil, math.MaxUint64-4, 0x10); ok {
		t.Fatal("appendBuffer accepted a wrapping range")
	}
	if bufs, ok := m.appendBuffer(nil, 0xdead0000, 0); !ok || len(bufs) != 0 {
		t.Fatal("a zero-length buffer must be accepted and add nothing")
	}
}

func TestUserToGuest(t *testing.T) {
	m, err := NewGuestMemory([]Region{
		{GuestAddr: 0, Size: 0xa0000, UserAddr: 0x7f0000000000, Data: make([]byte, 0xa0000)},
		{GuestAddr: 0x100000, Size: 0x1000, UserAddr: 0x7f0000100000, Data: make([]byte, 0x1000)},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		uaddr, gpa uint64
		ok         bool
	}{
		{0x7f0000000000, 0, true},
		{0x7f0000001234, 0x1234, true},
		{0x7f000009ffff, 0x9ffff, true},
		{0x7f00000a0000, 0, false},
		{0x7f0000100010, 0x100010, true},
		{0x7effffffffff, 0, false},
		{0, 0, false},
		{math.MaxUint64, 0, false},
	}
	for _, tt := range tests {
		gpa, err := m.UserToGuest(tt.uaddr)
		if tt.ok != (err == nil) || gpa != tt.gpa {
			t.Errorf("UserToGuest(%#x) = %#x, %v; want %#x, ok=%v", tt.uaddr, gpa, err, tt.gpa, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrOutOfBounds) {
			t.Errorf("UserToGuest(%#x) error %v is not ErrOutOfBounds", tt.uaddr, err)
		}
	}
}
