package blk

import (
	"sync/atomic"
	"time"

	"github.com/azote/azote/internal/cards/cardproto"
)

// Metrics counts per operation without locks: the data path only adds.
type Metrics struct {
	ops       [numOps]atomic.Uint64
	bytes     [numOps]atomic.Uint64
	errors    [numOps]atomic.Uint64
	latency   [numOps][len(cardproto.LatencyBuckets) + 1]atomic.Uint64
	latSumNs  [numOps]atomic.Uint64
	throttled atomic.Uint64 // nanoseconds spent waiting on QoS
	// paths counts page-cache transfers per direction (read, write) by
	// the path each took: the chooser's decisions, as they happen.
	paths [2][numPaths]struct{ ops, bytes atomic.Uint64 }
	// ioPath is how the device reaches its file (Device.IOPath).
	ioPath string
}

const numOps = len(cardproto.BlkOps)

// op indexes the per-operation counters; the data path passes the index,
// never the name.
type op int

const (
	opRead op = iota
	opWrite
	opFlush
	opGetID
	opDiscard
	opWriteZeroes
	opInvalid
	opUnsupported
)

func newMetrics() *Metrics { return &Metrics{} }

func (m *Metrics) record(i op, nbytes uint64, status byte, d time.Duration) {
	m.ops[i].Add(1)
	m.bytes[i].Add(nbytes)
	if status != statusOK {
		m.errors[i].Add(1)
	}
	s := d.Seconds()
	b := len(cardproto.LatencyBuckets)
	for j, ub := range cardproto.LatencyBuckets {
		if s <= ub {
			b = j
			break
		}
	}
	m.latency[i][b].Add(1)
	m.latSumNs[i].Add(uint64(d.Nanoseconds()))
}

func (m *Metrics) addPath(dir int, p path, n uint64) {
	m.paths[dir][p].ops.Add(1)
	m.paths[dir][p].bytes.Add(n)
}

func (m *Metrics) addThrottled(d time.Duration) {
	if d > 0 {
		m.throttled.Add(uint64(d))
	}
}

// Snapshot returns the counters, for azoted to render.
func (m *Metrics) Snapshot() cardproto.BlkMetrics {
	out := cardproto.BlkMetrics{Ops: make([]cardproto.OpMetrics, numOps), ThrottledNs: m.throttled.Load(), IOPath: m.ioPath}
	if m.ioPath == "mapped" {
		for dir, name := range [2]string{"read", "write"} {
			for p := range numPaths {
				out.Paths = append(out.Paths, cardproto.PathMetrics{Op: name, Path: pathNames[p],
					Requests: m.paths[dir][p].ops.Load(), Bytes: m.paths[dir][p].bytes.Load()})
			}
		}
	}
	for i := range out.Ops {
		o := &out.Ops[i]
		o.Requests, o.Bytes, o.Errors = m.ops[i].Load(), m.bytes[i].Load(), m.errors[i].Load()
		o.Latency = make([]uint64, len(m.latency[i]))
		for j := range m.latency[i] {
			o.Latency[j] = m.latency[i][j].Load()
		}
		o.LatencySumNs = m.latSumNs[i].Load()
	}
	return out
}
