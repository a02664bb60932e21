package audit

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
)

// BenchmarkAppendParallel measures Append with 64 concurrent appenders
// (RunParallel runs parallelism × GOMAXPROCS goroutines), each record
// fsynced by group commit. Run with
//
//	go test ./internal/audit -run '^$' -bench AppendParallel -benchtime 100000x
func BenchmarkAppendParallel(b *testing.B) {
	cfg := testConfig(b, b.TempDir(), nil)
	tr, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.SetParallelism((64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if err := tr.Append(ctx, testRecord(int(n.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	s := tr.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(s.Records)/float64(max(s.Batches, 1)), "records/batch")
	b.ReportMetric(float64(s.FsyncTime.Microseconds())/float64(max(s.Fsyncs, 1)), "µs/fsync")
	if err := tr.Close(); err != nil {
		b.Fatal(err)
	}
}

// appendAllocBudget bounds the allocations of one Append of testRecord
// (8 when written): the event ID, and encoding/json's for the record's map
// and timestamps. The request, its buffer and the writer's batch are
// reused.
const appendAllocBudget = 10

func TestAppendAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	tr, _ := newTrail(t, nil)
	ctx := context.Background()
	recs := make([]*Record, 300)
	for i := range recs {
		recs[i] = testRecord(i)
	}
	i := 0
	got := testing.AllocsPerRun(200, func() {
		r := recs[i]
		i++
		if err := tr.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%.0f allocations per Append", got)
	if got > appendAllocBudget {
		t.Errorf("%.0f allocations per Append, budget %d", got, appendAllocBudget)
	}
}
