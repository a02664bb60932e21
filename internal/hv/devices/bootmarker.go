package devices

import (
	"sync"
	"time"
)

// BootMarker records when the guest says it is up: the first write of
// BootMarkerMagic to its port stores the time elapsed since the VM
// started, for the VMM to report as the boot time (meant for azote-agent
// to write at its ready line; Firecracker's boot timer is the model).
// Later marks are ignored, so a guest cannot rewrite its boot time once
// taken, and other values are ignored, so a stray write is not a boot.
// Reads give 0xff, as an empty port does.
type BootMarker struct {
	notify func(time.Duration)
	now    func() time.Time // time.Now; replaced in tests

	mu      sync.Mutex
	start   time.Time
	elapsed time.Duration
	marked  bool
}

// NewBootMarker returns a marker timing from start, which should come
// from time.Now so it carries the monotonic clock. notify (nil: none) is
// called once, with the elapsed time, on the vCPU goroutine that made
// the mark; it must not block.
func NewBootMarker(start time.Time, notify func(time.Duration)) *BootMarker {
	return &BootMarker{notify: notify, now: time.Now, start: start}
}

// Read answers 0xff: the marker has nothing to tell the guest.
func (m *BootMarker) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}

// Write takes the mark if the byte at offset 0 is BootMarkerMagic and no
// mark was taken yet.
func (m *BootMarker) Write(offset uint64, data []byte) {
	if offset != 0 || len(data) == 0 || data[0] != BootMarkerMagic {
		return
	}
	m.mu.Lock()
	if m.marked {
		m.mu.Unlock()
		return
	}
	m.marked = true
	m.elapsed = m.now().Sub(m.start)
	d := m.elapsed
	m.mu.Unlock()
	if m.notify != nil {
		m.notify(d)
	}
}

// Elapsed returns the recorded boot time, and false until there is one.
func (m *BootMarker) Elapsed() (time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.elapsed, m.marked
}

// Reset forgets the mark and times a new boot from start, for a guest
// reboot.
func (m *BootMarker) Reset(start time.Time) {
	m.mu.Lock()
	m.start, m.elapsed, m.marked = start, 0, false
	m.mu.Unlock()
}
