package cardproto

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// BlkOps are the operations a blk card counts, in the order of its
// counters.
var BlkOps = [...]string{"read", "write", "flush", "get_id", "discard", "write_zeroes", "invalid", "unsupported"}

// LatencyBuckets are the upper bounds, in seconds, of a blk card's latency
// histogram; a last bucket without bound follows them.
var LatencyBuckets = [...]float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1}

// BlkMetrics is what a blk card answers on its metrics socket: its raw
// counters. azoted checks them and renders them itself, under the volume
// it knows the socket to serve, so a card (which handles guest data and is
// not trusted) can neither speak for another volume nor break azoted's
// metrics output.
type BlkMetrics struct {
	Ops         []OpMetrics `json:"ops"` // one per BlkOps, in that order
	ThrottledNs uint64      `json:"throttled_ns"`
	// IOPath is how the card reaches its file: "direct" (O_DIRECT),
	// "mapped" (the page cache, mapped; each transfer through the mapping
	// or pread/pwrite, whichever the card measures cheaper) or "pread".
	IOPath string `json:"io_path,omitempty"`
	// Paths counts, on "mapped", the reads and writes by the path each
	// took ("mapped" or "pread").
	Paths []PathMetrics `json:"paths,omitempty"`
}

// PathMetrics counts the transfers of one direction on one path.
type PathMetrics struct {
	Op       string `json:"op"`   // "read" or "write"
	Path     string `json:"path"` // "mapped" or "pread"
	Requests uint64 `json:"requests"`
	Bytes    uint64 `json:"bytes"`
}

// OpMetrics are one operation's counters.
type OpMetrics struct {
	Requests uint64 `json:"requests"`
	Bytes    uint64 `json:"bytes"`
	Errors   uint64 `json:"errors"`
	// Latency counts requests per bucket (not cumulative): one per
	// LatencyBuckets bound, then one for the rest.
	Latency      []uint64 `json:"latency"`
	LatencySumNs uint64   `json:"latency_sum_ns"`
}

// MaxBlkMetrics bounds an answer.
const MaxBlkMetrics = 16 << 10

// ErrBadMetrics is returned for an answer that is not well-formed metrics.
var ErrBadMetrics = errors.New("cardproto: malformed card metrics")

// ReadBlkMetrics reads and checks one answer.
func ReadBlkMetrics(r io.Reader) (BlkMetrics, error) {
	var m BlkMetrics
	b, err := io.ReadAll(io.LimitReader(r, MaxBlkMetrics+1))
	if err != nil {
		return m, err
	}
	if len(b) > MaxBlkMetrics {
		return m, fmt.Errorf("%w: over %d bytes", ErrBadMetrics, MaxBlkMetrics)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%w: %v", ErrBadMetrics, err)
	}
	if len(m.Ops) != len(BlkOps) {
		return m, fmt.Errorf("%w: %d operations, want %d", ErrBadMetrics, len(m.Ops), len(BlkOps))
	}
	for i, o := range m.Ops {
		if len(o.Latency) != len(LatencyBuckets)+1 {
			return m, fmt.Errorf("%w: %s: %d latency buckets, want %d", ErrBadMetrics, BlkOps[i], len(o.Latency), len(LatencyBuckets)+1)
		}
		var n uint64
		for _, c := range o.Latency {
			if n+c < n {
				return m, fmt.Errorf("%w: %s: latency counts overflow", ErrBadMetrics, BlkOps[i])
			}
			n += c
		}
	}
	switch m.IOPath {
	case "", "direct", "mapped", "pread":
	default:
		return m, fmt.Errorf("%w: io path %q", ErrBadMetrics, m.IOPath)
	}
	if len(m.Paths) > 4 {
		return m, fmt.Errorf("%w: %d path counters", ErrBadMetrics, len(m.Paths))
	}
	for _, p := range m.Paths {
		if (p.Op != "read" && p.Op != "write") || (p.Path != "mapped" && p.Path != "pread") {
			return m, fmt.Errorf("%w: path counter %q/%q", ErrBadMetrics, p.Op, p.Path)
		}
	}
	return m, nil
}
