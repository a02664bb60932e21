package blk

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// Metrics counts per operation without locks: the data path only adds.
type Metrics struct {
	ops       [numOps]atomic.Uint64
	bytes     [numOps]atomic.Uint64
	errors    [numOps]atomic.Uint64
	latency   [numOps][len(latencyBuckets) + 1]atomic.Uint64
	latSumNs  [numOps]atomic.Uint64
	throttled atomic.Uint64 // nanoseconds spent waiting on QoS
}

const numOps = 8

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

var opNames = [numOps]string{"read", "write", "flush", "get_id", "discard", "write_zeroes", "invalid", "unsupported"}

// latencyBuckets are the histogram's upper bounds in seconds.
var latencyBuckets = [...]float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1}

func newMetrics() *Metrics { return &Metrics{} }

func (m *Metrics) record(i op, nbytes uint64, status byte, d time.Duration) {
	m.ops[i].Add(1)
	m.bytes[i].Add(nbytes)
	if status != statusOK {
		m.errors[i].Add(1)
	}
	s := d.Seconds()
	b := len(latencyBuckets)
	for j, ub := range latencyBuckets {
		if s <= ub {
			b = j
			break
		}
	}
	m.latency[i][b].Add(1)
	m.latSumNs[i].Add(uint64(d.Nanoseconds()))
}

func (m *Metrics) addThrottled(d time.Duration) {
	if d > 0 {
		m.throttled.Add(uint64(d))
	}
}

// WritePrometheus writes the metrics in Prometheus text format with the
// given volume label, each family's samples together.
func (m *Metrics) WritePrometheus(w io.Writer, volume string) {
	label := func(op string) string { return fmt.Sprintf(`volume=%q,op=%q`, volume, op) }
	for i, op := range opNames {
		fmt.Fprintf(w, "azote_volume_ops_total{%s} %d\n", label(op), m.ops[i].Load())
	}
	for i, op := range opNames {
		fmt.Fprintf(w, "azote_volume_bytes_total{%s} %d\n", label(op), m.bytes[i].Load())
	}
	for i, op := range opNames {
		fmt.Fprintf(w, "azote_volume_errors_total{%s} %d\n", label(op), m.errors[i].Load())
	}
	for i, op := range opNames {
		l := label(op)
		var cum uint64
		for j, ub := range latencyBuckets {
			cum += m.latency[i][j].Load()
			fmt.Fprintf(w, "azote_volume_latency_seconds_bucket{%s,le=\"%g\"} %d\n", l, ub, cum)
		}
		cum += m.latency[i][len(latencyBuckets)].Load()
		fmt.Fprintf(w, "azote_volume_latency_seconds_bucket{%s,le=\"+Inf\"} %d\n", l, cum)
		fmt.Fprintf(w, "azote_volume_latency_seconds_sum{%s} %g\n", l, float64(m.latSumNs[i].Load())/1e9)
		fmt.Fprintf(w, "azote_volume_latency_seconds_count{%s} %d\n", l, cum)
	}
	fmt.Fprintf(w, "azote_volume_throttled_seconds_total{volume=%q} %g\n", volume, float64(m.throttled.Load())/1e9)
}
