package blk

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/azote/azote/internal/virtio"
)

// pinPath makes every chooser of d take p, exploring the other path only
// after exploreMaxPeriod transfers.
func pinPath(d *Device, p path) {
	for i := range d.queues {
		for dir := range d.queues[i].choice {
			for k := range d.queues[i].choice[dir] {
				c := &d.queues[i].choice[dir][k]
				*c = chooser{best: p, cost: [numPaths]float64{1, 1}, samples: [numPaths]uint32{100, 100}}
				c.cost[1-p] = 1000
			}
		}
	}
}

// handleChains returns a read and a write chain of n bytes at sector 64,
// in Go memory, for calling Handle directly.
func handleChains(n int) (read, write *virtio.Chain, data, st []byte) {
	hdrR, hdrW := make([]byte, 16), make([]byte, 16)
	binary.LittleEndian.PutUint32(hdrR, typeIn)
	binary.LittleEndian.PutUint64(hdrR[8:], 64)
	binary.LittleEndian.PutUint32(hdrW, typeOut)
	binary.LittleEndian.PutUint64(hdrW[8:], 64)
	data = alignedBuffer(n)
	st = make([]byte, 1)
	return &virtio.Chain{Readable: [][]byte{hdrR}, Writable: [][]byte{data, st}},
		&virtio.Chain{Readable: [][]byte{hdrW, data}, Writable: [][]byte{st}}, data, st
}

// TestPageCachePaths: both page-cache paths, plaintext and encrypted, read
// back what either wrote, are counted in the metrics under the path they
// took, and allocate nothing per request.
func TestPageCachePaths(t *testing.T) {
	for _, encrypted := range []bool{false, true} {
		for _, n := range []int{4096, 1 << 20} {
			r := newRig(t, 4<<20, 1, encrypted, false)
			read, write, data, st := handleChains(n)
			want := make([]byte, n)
			for _, wp := range []path{pathMapped, pathSyscall} {
				for _, rp := range []path{pathMapped, pathSyscall} {
					name := fmt.Sprintf("encrypted=%v %d bytes: written by %s, read by %s", encrypted, n, pathNames[wp], pathNames[rp])
					rand.Read(want)
					copy(data, want)
					pinPath(r.dev, wp)
					if r.dev.Handle(0, write, nil); st[0] != statusOK {
						t.Fatalf("%s: write status %d", name, st[0])
					}
					clear(data)
					pinPath(r.dev, rp)
					if r.dev.Handle(0, read, nil); st[0] != statusOK || !bytes.Equal(data, want) {
						t.Fatalf("%s: read status %d, data equal %v", name, st[0], bytes.Equal(data, want))
					}
				}
			}
			// Two reads and two writes on each path (the first write
			// through the mapping found its pages uncached: pwrite).
			m := r.dev.Metrics.Snapshot()
			if m.IOPath != "mapped" || len(m.Paths) != 4 {
				t.Fatalf("metrics: io path %q, %d path counters", m.IOPath, len(m.Paths))
			}
			for _, p := range m.Paths {
				want := uint64(2)
				if p.Op == "write" {
					want = map[string]uint64{"mapped": 1, "pread": 3}[p.Path]
				}
				if p.Requests != want || p.Bytes != want*uint64(n) {
					t.Errorf("encrypted=%v %d bytes: %s on %s: %d requests, %d bytes, want %d requests", encrypted, n, p.Op, p.Path, p.Requests, p.Bytes, want)
				}
			}
			for _, p := range []path{pathMapped, pathSyscall} {
				pinPath(r.dev, p)
				for _, c := range []*virtio.Chain{read, write} {
					if a := testing.AllocsPerRun(100, func() { r.dev.Handle(0, c, nil) }); a != 0 || st[0] != statusOK {
						t.Errorf("encrypted=%v %d bytes on %s: %.2f allocations per request, status %d", encrypted, n, pathNames[p], a, st[0])
					}
				}
			}
		}
	}
}

// BenchmarkPageCache serves reads and writes on each page-cache path.
func BenchmarkPageCache(b *testing.B) {
	for _, encrypted := range []bool{false, true} {
		for _, n := range []int{4096, 1 << 20} {
			for _, p := range []path{pathMapped, pathSyscall} {
				for _, write := range []bool{false, true} {
					op := map[bool]string{false: "read", true: "write"}[write]
					b.Run(fmt.Sprintf("encrypted=%v/%d/%s/%s", encrypted, n, pathNames[p], op), func(b *testing.B) {
						r := newRig(b, 64<<20, 1, encrypted, false)
						read, wr, data, _ := handleChains(n)
						rand.Read(data)
						c := read
						if write {
							c = wr
						}
						r.dev.Handle(0, wr, nil) // the pages are cached
						pinPath(r.dev, p)
						b.SetBytes(int64(n))
						b.ReportAllocs()
						for b.Loop() {
							r.dev.Handle(0, c, nil)
						}
					})
				}
			}
		}
	}
}
