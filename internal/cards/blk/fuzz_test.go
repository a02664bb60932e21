package blk

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/azote/azote/internal/virtio"
	"github.com/azote/azote/internal/xts"
)

// fuzzChain cuts a fuzz input into a descriptor chain: the first byte
// gives the number of readable buffers (low nibble) and writable ones
// (high nibble), each following byte pair a buffer's length; the buffers'
// contents come from what is left.
func fuzzChain(in []byte) *virtio.Chain {
	c := &virtio.Chain{}
	if len(in) == 0 {
		return c
	}
	nr, nw := int(in[0]&15), int(in[0]>>4)
	in = in[1:]
	take := func() []byte {
		if len(in) < 2 {
			return nil
		}
		n := int(binary.LittleEndian.Uint16(in)) % 9000
		in = in[2:]
		b := make([]byte, n)
		k := copy(b, in)
		in = in[k:]
		return b
	}
	for range nr {
		c.Readable = append(c.Readable, take())
	}
	for range nw {
		c.Writable = append(c.Writable, take())
	}
	return c
}

// fuzzRequest builds a well-formed input: a header, data buffers, a
// status byte.
func fuzzRequest(typ uint32, sector uint64, write bool, data ...uint16) []byte {
	hdr := make([]byte, 16)
	binary.LittleEndian.PutUint32(hdr, typ)
	binary.LittleEndian.PutUint64(hdr[8:], sector)
	nr, nw := 1, 1
	if write {
		nr += len(data)
	} else {
		nw += len(data)
	}
	out := []byte{byte(nr | nw<<4), 16, 0}
	out = append(out, hdr...)
	for _, n := range data {
		out = binary.LittleEndian.AppendUint16(out, n)
		out = append(out, make([]byte, n)...)
	}
	return append(out, 1, 0, 0xff)
}

// FuzzParse: whatever the guest puts in a chain, parse answers a request
// that stays inside the device and charges only what it will move, and
// serving it never panics.
func FuzzParse(f *testing.F) {
	var seeds [][]byte
	add := func(in []byte) { seeds = append(seeds, in); f.Add(in) }
	add(fuzzRequest(typeIn, 0, false, 4096))
	add(fuzzRequest(typeOut, 8, true, 512, 3584))
	add(fuzzRequest(typeIn, 127, false, 512))
	add(fuzzRequest(typeIn, 128, false, 512)) // past the end
	add(fuzzRequest(typeOut, 0, true, 1000))  // not whole sectors
	add(fuzzRequest(typeFlush, 0, false))
	add(fuzzRequest(typeGetID, 0, false, 20))
	seg := make([]byte, 16)
	binary.LittleEndian.PutUint64(seg, 8)
	binary.LittleEndian.PutUint32(seg[8:], 16)
	for _, typ := range []uint32{typeDiscard, typeWriteZeroes} {
		in := fuzzRequest(typ, 0, true, 16)
		copy(in[3+16+2:], seg)
		add(in)
	}
	add(fuzzRequest(99, 0, false))
	add([]byte{0x11, 8, 0, 1, 2, 3}) // short header
	add([]byte{})

	dir := f.TempDir()
	file, err := os.OpenFile(filepath.Join(dir, "vol.img"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		f.Fatal(err)
	}
	defer file.Close()
	const size = 64 << 10
	file.Truncate(size)
	key := make([]byte, 64)
	for i := range key {
		key[i] = byte(i)
	}
	cipher, err := xts.New(key)
	if err != nil {
		f.Fatal(err)
	}
	dev, err := New(Config{File: file, Queues: 1, ID: "vol-fuzz", Cipher: cipher})
	if err != nil {
		f.Fatal(err)
	}
	defer dev.Close()
	iov := make([][]byte, 0, MaxSegments+2)
	// The seeds parse as they were built to.
	for i, want := range []struct {
		o  op
		ok bool
	}{{opRead, true}, {opWrite, true}, {opRead, true}, {opRead, false}, {opWrite, false}, {opFlush, true},
		{opGetID, true}, {opDiscard, true}, {opWriteZeroes, true}, {opUnsupported, false}, {opInvalid, false}, {opInvalid, false}} {
		r := dev.parse(fuzzChain(seeds[i]), nil, iov)
		if r.op != want.o || (r.status == statusOK) != want.ok {
			f.Fatalf("seed %d: op %d status %d, want op %d ok %v", i, r.op, r.status, want.o, want.ok)
		}
	}

	f.Fuzz(func(t *testing.T, in []byte) {
		c := fuzzChain(in)
		r := dev.parse(c, nil, iov)
		if r.status != statusOK {
			if r.cost != 0 {
				t.Fatalf("refused request (op %d, status %d) charged %d bytes", r.op, r.status, r.cost)
			}
		} else {
			switch r.op {
			case opRead, opWrite:
				if r.n%SectorSize != 0 || r.sector*SectorSize+r.n > size || r.n != totalLen(r.data) || r.cost != r.n {
					t.Fatalf("op %d: sector %d, %d bytes (data %d), cost %d on a %d-byte device", r.op, r.sector, r.n, totalLen(r.data), r.cost, size)
				}
			case opDiscard, opWriteZeroes:
				if (r.seg.sector+r.seg.count)*SectorSize > size || r.n != r.seg.count*SectorSize {
					t.Fatalf("op %d: segment %+v on a %d-byte device", r.op, r.seg, size)
				}
			case opFlush, opGetID:
				if r.cost != 0 {
					t.Fatalf("op %d charged %d bytes", r.op, r.cost)
				}
			default:
				t.Fatalf("op %d answered OK", r.op)
			}
		}
		dev.Handle(0, c, nil)
	})
}
