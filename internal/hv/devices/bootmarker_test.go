package devices

import (
	"sync"
	"testing"
	"time"
)

func TestBootMarkerRecordsOnlyTheFirstMark(t *testing.T) {
	start := time.Unix(1000, 0)
	clock := start
	var notified []time.Duration
	m := NewBootMarker(start, func(d time.Duration) { notified = append(notified, d) })
	m.now = func() time.Time { return clock }
	p := ports{t: t, bus: NewBus(nil)}
	if err := p.bus.Register(BootMarkerPort, BootMarkerPortLen, m); err != nil {
		t.Fatal(err)
	}

	if _, ok := m.Elapsed(); ok {
		t.Fatal("marked before any write")
	}
	clock = start.Add(100 * time.Millisecond)
	p.out(BootMarkerPort, BootMarkerMagic-1) // not the magic: no boot
	if _, ok := m.Elapsed(); ok {
		t.Fatal("a stray value took the mark")
	}
	clock = start.Add(420 * time.Millisecond)
	p.out(BootMarkerPort, BootMarkerMagic)
	clock = start.Add(5 * time.Second)
	p.out(BootMarkerPort, BootMarkerMagic) // a later mark cannot move it
	if d, ok := m.Elapsed(); !ok || d != 420*time.Millisecond {
		t.Fatalf("Elapsed = %v %v, want 420ms", d, ok)
	}
	if len(notified) != 1 || notified[0] != 420*time.Millisecond {
		t.Fatalf("notified %v, want [420ms] once", notified)
	}
	if v := p.in(BootMarkerPort); v != 0xff {
		t.Errorf("read %#x, want 0xff", v)
	}

	// A reboot times the next boot afresh.
	m.Reset(start.Add(10 * time.Second))
	if _, ok := m.Elapsed(); ok {
		t.Fatal("Reset kept the mark")
	}
	clock = start.Add(10*time.Second + 300*time.Millisecond)
	p.out(BootMarkerPort, BootMarkerMagic)
	if d, _ := m.Elapsed(); d != 300*time.Millisecond {
		t.Fatalf("after Reset Elapsed = %v, want 300ms", d)
	}
}

// TestBootMarkerConcurrentMarks: every vCPU writing at once still makes
// one mark and one notification.
func TestBootMarkerConcurrentMarks(t *testing.T) {
	var mu sync.Mutex
	n := 0
	m := NewBootMarker(time.Now(), func(time.Duration) { mu.Lock(); n++; mu.Unlock() })
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				m.Write(0, []byte{BootMarkerMagic})
			}
		}()
	}
	wg.Wait()
	if n != 1 {
		t.Fatalf("notified %d times, want 1", n)
	}
	if d, ok := m.Elapsed(); !ok || d < 0 {
		t.Fatalf("Elapsed = %v %v", d, ok)
	}
}
