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
