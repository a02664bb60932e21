package blk

import (
	"sync"
	"time"
)

// TokenBucket limits operations and bytes per second. Each queue calls
// Wait before serving a request; the bucket is shared by all queues of
// the volume.
type TokenBucket struct {
	mu         sync.Mutex
	opsRate    float64 // tokens per second; 0 means unlimited
	bytesRate  float64
	ops, bytes float64 // available tokens
	opsBurst   float64
	bytesBurst float64
	last       time.Time
	sleep      func(time.Duration)
	now        func() time.Time
}

// NewTokenBucket limits to iops operations and bps bytes per second (0 for
// no limit), with a burst of one tenth of a second.
func NewTokenBucket(iops, bps int64) *TokenBucket {
	t := &TokenBucket{opsRate: float64(iops), bytesRate: float64(bps), sleep: time.Sleep, now: time.Now}
	t.opsBurst = max(t.opsRate/10, 1)
	t.bytesBurst = max(t.bytesRate/10, 1<<20)
	t.ops, t.bytes = t.opsBurst, t.bytesBurst
	t.last = t.now()
	return t
}

// Wait takes ops and bytes from the bucket, sleeping until they are there.
// A request larger than the burst is let through after the debt is paid.
func (t *TokenBucket) Wait(ops int, bytes int64) time.Duration {
	t.mu.Lock()
	now := t.now()
	el := now.Sub(t.last).Seconds()
	t.last = now
	var wait float64
	if t.opsRate > 0 {
		t.ops = min(t.ops+el*t.opsRate, t.opsBurst) - float64(ops)
		if t.ops < 0 {
			wait = max(wait, -t.ops/t.opsRate)
		}
	}
	if t.bytesRate > 0 {
		t.bytes = min(t.bytes+el*t.bytesRate, t.bytesBurst) - float64(bytes)
		if t.bytes < 0 {
			wait = max(wait, -t.bytes/t.bytesRate)
		}
	}
	t.mu.Unlock()
	if wait <= 0 {
		return 0
	}
	d := time.Duration(wait * float64(time.Second))
	t.sleep(d)
	return d
}
