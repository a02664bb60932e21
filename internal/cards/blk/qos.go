package blk

import (
	"sync"
	"time"
)

// TokenBucket limits operations and bytes per second. Each request is
// charged once it is known to be valid, before its I/O; the bucket is
// shared by all queues (and all slots) of the volume.
type TokenBucket struct {
	mu         sync.Mutex
	opsRate    float64 // tokens per second; 0 means unlimited
	bytesRate  float64
	ops, bytes float64 // available tokens; negative is debt
	opsBurst   float64
	bytesBurst float64
	last       time.Time
	// sleep waits d or until cancel is closed and returns how long it
	// waited; now reads the clock (both replaced in tests).
	sleep func(d time.Duration, cancel <-chan struct{}) time.Duration
	now   func() time.Time
}

// NewTokenBucket limits to iops operations and bps bytes per second (0 for
// no limit), with a burst of one tenth of a second (at least one operation
// and one sector).
func NewTokenBucket(iops, bps int64) *TokenBucket {
	t := &TokenBucket{opsRate: float64(iops), bytesRate: float64(bps), sleep: sleepOrCancel, now: time.Now}
	t.opsBurst = max(t.opsRate/10, 1)
	t.bytesBurst = max(t.bytesRate/10, SectorSize)
	t.ops, t.bytes = t.opsBurst, t.bytesBurst
	t.last = t.now()
	return t
}

// Wait takes ops and bytes from the bucket and sleeps until the debt this
// leaves is paid, or until cancel is closed (the queue is stopping: the
// request goes on, and the debt stays for the requests after it, so the
// long-run rate holds). A request larger than the burst is let through
// once its debt is paid. It returns the time slept.
func (t *TokenBucket) Wait(ops int, bytes int64, cancel <-chan struct{}) time.Duration {
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
	return t.sleep(time.Duration(wait*float64(time.Second)), cancel)
}

func sleepOrCancel(d time.Duration, cancel <-chan struct{}) time.Duration {
	start := time.Now()
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-cancel:
	}
	return time.Since(start)
}

// gate is closed while its queue is stopping, so that requests waiting
// for the QoS budget go on at once instead of holding up the stop (a
// frontend waits for GET_VRING_BASE, with the guest paused, until every
// request the ring took is done).
type gate struct {
	mu      sync.Mutex
	ch      chan struct{}
	stopped bool
}

func newGate() *gate { return &gate{ch: make(chan struct{})} }

// wait returns the channel a waiting request selects on.
func (g *gate) wait() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ch
}

func (g *gate) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.stopped {
		g.stopped = true
		close(g.ch)
	}
}

func (g *gate) start() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		g.stopped = false
		g.ch = make(chan struct{})
	}
}
