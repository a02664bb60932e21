package blk

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/vhostuser"
)

// A wait cut short by a stopping queue lets its request go, and the debt
// stays: the next request waits it out.
func TestTokenBucketCancel(t *testing.T) {
	now := time.Unix(0, 0)
	var slept []time.Duration
	tb := NewTokenBucket(0, 1<<20)
	tb.now = func() time.Time { return now }
	tb.sleep = func(d time.Duration, cancel <-chan struct{}) time.Duration {
		select {
		case <-cancel:
			slept = append(slept, 0)
			return 0
		default:
		}
		slept = append(slept, d)
		now = now.Add(d)
		return d
	}
	tb.last = now
	stopped := make(chan struct{})
	close(stopped)
	if d := tb.Wait(1, 10<<20, stopped); d != 0 {
		t.Fatalf("a cancelled wait took %v", d)
	}
	// 10 MiB at 1 MiB/s with a 0.1 MiB burst: about 9.9 s of debt.
	if d := tb.Wait(1, 0, nil); d < 9800*time.Millisecond || d > 10*time.Second {
		t.Fatalf("the next request waited %v, want the ~9.9 s of debt", d)
	}
}

// recLimiter records what each request is charged.
type recLimiter struct {
	mu      sync.Mutex
	charges []int64
}

func (l *recLimiter) Wait(ops int, bytes int64, _ <-chan struct{}) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ops != 1 {
		l.charges = append(l.charges, -1)
	}
	l.charges = append(l.charges, bytes)
	return 0
}

func (l *recLimiter) take() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.charges
	l.charges = nil
	return c
}

// Every request is charged one operation once it is known valid; bytes
// are what it moves on the device: a refused request costs none, a
// write-zeroes what it covers, a discard one sector.
func TestQoSCharges(t *testing.T) {
	lim := &recLimiter{}
	r := newRigIn(t, t.TempDir(), 4<<20, 1, true, false, 0, func(c *Config) { c.Limiter = lim })
	seg := func(sector uint64, count uint32) {
		binary.LittleEndian.PutUint64(r.data[0:], sector)
		binary.LittleEndian.PutUint32(r.data[8:], count)
		binary.LittleEndian.PutUint32(r.data[12:], 0)
	}
	const sectors = 4 << 20 / SectorSize
	for _, c := range []struct {
		name   string
		send   func() byte
		ok     bool
		charge int64
	}{
		{"read 4K", func() byte { return r.do(0, typeIn, 0, 4096, false) }, true, 4096},
		{"write 8K", func() byte { return r.do(0, typeOut, 8, 8192, true) }, true, 8192},
		{"read past the end", func() byte { return r.do(0, typeIn, sectors, 1<<20, false) }, false, 0},
		{"odd-sized write", func() byte { return r.do(0, typeOut, 0, 1000, true) }, false, 0},
		{"flush", func() byte { return r.do(0, typeFlush, 0, 0, false) }, true, 0},
		{"get id", func() byte { return r.do(0, typeGetID, 0, 20, false) }, true, 0},
		{"write-zeroes 1M", func() byte { seg(0, 2048); return r.do(0, typeWriteZeroes, 0, 16, true) }, true, 1 << 20},
		{"discard 1M", func() byte { seg(2048, 2048); return r.do(0, typeDiscard, 0, 16, true) }, true, SectorSize},
		{"write-zeroes past the end", func() byte { seg(sectors-1, 1<<22); return r.do(0, typeWriteZeroes, 0, 16, true) }, false, 0},
		{"unknown type", func() byte { return r.do(0, 99, 0, 0, false) }, false, 0},
	} {
		st := c.send()
		if (st == statusOK) != c.ok {
			t.Errorf("%s: status %d", c.name, st)
		}
		if got := lim.take(); len(got) != 1 || got[0] != c.charge {
			t.Errorf("%s: charged %v, want one operation and %d bytes", c.name, got, c.charge)
		}
	}
}

// A request waiting for the QoS budget does not hold up a ring stop
// (GET_VRING_BASE, which the frontend waits for with the guest paused):
// the stop lets it go on at once.
func TestThrottledRequestDoesNotBlockStop(t *testing.T) {
	// 64 KiB/s: a 1 MiB read owes about 15 s.
	lim := &enteringLimiter{Limiter: NewTokenBucket(0, 64<<10), entered: make(chan struct{}, 1)}
	r := newRigIn(t, t.TempDir(), 4<<20, 1, true, false, 0, func(c *Config) { c.Limiter = lim })
	binary.LittleEndian.PutUint32(r.hdr, typeIn)
	binary.LittleEndian.PutUint64(r.hdr[8:], 0)
	r.st[0] = 0xff
	dq := r.fe.Queues[0]
	if _, err := dq.Add([]vhostuser.Buf{{Addr: r.hdrGPA, Len: 16}, {Addr: r.dataGPA, Len: 1 << 20, Write: true}, {Addr: r.stGPA, Len: 1, Write: true}}); err != nil {
		t.Fatal(err)
	}
	dq.Kick()
	select {
	case <-lim.entered: // the card took the request and is waiting
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the limiter")
	}
	stopped := make(chan error, 1)
	go func() {
		_, err := dq.Stop()
		stopped <- err
	}()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("GET_VRING_BASE waited for the throttled request")
	}
	if got := dq.Reap(nil); len(got) != 1 || r.st[0] != statusOK {
		t.Fatalf("after the stop: %d completions, status %d", len(got), r.st[0])
	}
	if r.dev.Metrics.throttled.Load() == 0 {
		t.Fatal("no throttled time recorded")
	}
}

// enteringLimiter tells when a request starts waiting.
type enteringLimiter struct {
	Limiter
	entered chan struct{}
}

func (l *enteringLimiter) Wait(ops int, bytes int64, cancel <-chan struct{}) time.Duration {
	select {
	case l.entered <- struct{}{}:
	default:
	}
	return l.Limiter.Wait(ops, bytes, cancel)
}
