package cardproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func validMetrics() BlkMetrics {
	m := BlkMetrics{Ops: make([]OpMetrics, len(BlkOps)), ThrottledNs: 5}
	for i := range m.Ops {
		m.Ops[i] = OpMetrics{Requests: uint64(i), Latency: make([]uint64, len(LatencyBuckets)+1)}
	}
	return m
}

func TestReadBlkMetrics(t *testing.T) {
	enc := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	good := validMetrics()
	got, err := ReadBlkMetrics(strings.NewReader(enc(good)))
	if err != nil || got.Ops[3].Requests != 3 || got.ThrottledNs != 5 {
		t.Fatalf("valid answer: %+v %v", got, err)
	}
	fewer := validMetrics()
	fewer.Ops = fewer.Ops[1:]
	short := validMetrics()
	short.Ops[2].Latency = short.Ops[2].Latency[1:]
	wrap := validMetrics()
	wrap.Ops[0].Latency[0], wrap.Ops[0].Latency[1] = 1<<63, 1<<63
	withPaths := validMetrics()
	withPaths.IOPath = "mapped"
	withPaths.Paths = []PathMetrics{{Op: "read", Path: "pread", Requests: 7, Bytes: 7 << 20}, {Op: "write", Path: "mapped"}}
	if got, err := ReadBlkMetrics(strings.NewReader(enc(withPaths))); err != nil || got.IOPath != "mapped" || len(got.Paths) != 2 || got.Paths[0].Requests != 7 {
		t.Fatalf("valid answer with paths: %+v %v", got, err)
	}
	badPath, badOp, badIO, manyPaths := validMetrics(), validMetrics(), validMetrics(), validMetrics()
	badPath.Paths = []PathMetrics{{Op: "read", Path: "vol-other\n"}}
	badOp.Paths = []PathMetrics{{Op: "erase", Path: "mapped"}}
	badIO.IOPath = "tape"
	manyPaths.Paths = make([]PathMetrics, 5)
	for i := range manyPaths.Paths {
		manyPaths.Paths[i] = PathMetrics{Op: "read", Path: "mapped"}
	}
	for name, in := range map[string]string{
		"not JSON":             "azote_volume_ops_total{volume=\"vol-other\"} 1",
		"too few operations":   enc(fewer),
		"short histogram":      enc(short),
		"bucket sums overflow": enc(wrap),
		"too large":            `{"ops":[` + strings.Repeat(" ", MaxBlkMetrics) + `]}`,
		"empty":                "",
		"unknown path":         enc(badPath),
		"unknown path op":      enc(badOp),
		"unknown io path":      enc(badIO),
		"too many paths":       enc(manyPaths),
	} {
		if _, err := ReadBlkMetrics(strings.NewReader(in)); !errors.Is(err, ErrBadMetrics) {
			t.Errorf("%s: %v, want ErrBadMetrics", name, err)
		}
	}
}

// FuzzReadBlkMetrics: any answer is refused or has the shape the renderer
// relies on.
func FuzzReadBlkMetrics(f *testing.F) {
	b, _ := json.Marshal(validMetrics())
	f.Add(b)
	f.Add([]byte(`{"ops":[]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := ReadBlkMetrics(bytes.NewReader(in))
		if err != nil {
			return
		}
		if len(m.Ops) != len(BlkOps) {
			t.Fatalf("accepted %d operations", len(m.Ops))
		}
		for _, o := range m.Ops {
			if len(o.Latency) != len(LatencyBuckets)+1 {
				t.Fatalf("accepted %d buckets", len(o.Latency))
			}
		}
	})
}

func validNetMetrics() NetMetrics {
	m := NetMetrics{TxPackets: 4, RxBytes: 1500, Drops: make([]uint64, len(NetDrops)), ConntrackEntries: 2}
	m.Drops[3] = 9
	return m
}

func TestReadNetMetrics(t *testing.T) {
	enc := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	got, err := ReadNetMetrics(strings.NewReader(enc(validNetMetrics())))
	if err != nil || got.TxPackets != 4 || got.RxBytes != 1500 || got.Drops[3] != 9 || got.ConntrackEntries != 2 {
		t.Fatalf("valid answer: %+v %v", got, err)
	}
	fewer, more := validNetMetrics(), validNetMetrics()
	fewer.Drops = fewer.Drops[1:]
	more.Drops = append(more.Drops, 1)
	for name, in := range map[string]string{
		"not JSON":         `azote_interface_drops_total{interface="eni-other",reason="spoof"} 1`,
		"too few reasons":  enc(fewer),
		"too many reasons": enc(more),
		"no drops":         `{"tx_packets":1}`,
		"by name":          `{"drops":{"spoof":1}}`,
		"negative":         strings.Replace(enc(validNetMetrics()), `"tx_packets":4`, `"tx_packets":-4`, 1),
		"too large":        `{"drops":[` + strings.Repeat(" ", MaxNetMetrics) + `]}`,
		"empty":            "",
	} {
		if _, err := ReadNetMetrics(strings.NewReader(in)); !errors.Is(err, ErrBadMetrics) {
			t.Errorf("%s: %v, want ErrBadMetrics", name, err)
		}
	}
}

// FuzzReadNetMetrics: any answer is refused or has one counter per
// reason, as the renderer relies on.
func FuzzReadNetMetrics(f *testing.F) {
	b, _ := json.Marshal(validNetMetrics())
	f.Add(b)
	f.Add([]byte(`{"drops":[]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := ReadNetMetrics(bytes.NewReader(in))
		if err != nil {
			return
		}
		if len(m.Drops) != len(NetDrops) {
			t.Fatalf("accepted %d drop counters", len(m.Drops))
		}
	})
}
