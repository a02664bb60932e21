package vhostuser

import (
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/virtio"
)

// waitDevice holds every request until its queue is stopped, as a device
// throttled far below the request rate does.
type waitDevice struct {
	slots   int
	entered chan struct{}
	mu      sync.Mutex
	release chan struct{}
	starts  int
}

func newWaitDevice(slots int) *waitDevice {
	return &waitDevice{slots: slots, entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (d *waitDevice) Features() uint64 { return 0 }
func (d *waitDevice) NumQueues() int   { return 1 }
func (d *waitDevice) Config() []byte   { return nil }
func (d *waitDevice) Slots() int       { return d.slots }
func (d *waitDevice) Handle(q int, c *virtio.Chain, err error) uint32 {
	return d.HandleSlot(q, 0, c, err)
}

func (d *waitDevice) HandleSlot(q, slot int, c *virtio.Chain, err error) uint32 {
	d.mu.Lock()
	release := d.release
	d.mu.Unlock()
	d.entered <- struct{}{}
	<-release
	return 0
}

func (d *waitDevice) StopQueue(q int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.release:
	default:
		close(d.release)
	}
}

func (d *waitDevice) StartQueue(q int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.starts++
	select {
	case <-d.release:
		d.release = make(chan struct{})
	default:
	}
}

// TestStopReleasesWaitingRequest: GET_VRING_BASE on a ring whose request
// waits in the device (a rate limit) tells the device to let it go, and
// answers once it is done, instead of waiting out the device.
func TestStopReleasesWaitingRequest(t *testing.T) {
	for _, slots := range []int{1, 4} {
		dev := newWaitDevice(slots)
		fe, err := Dial(serveOnce(t, dev), FrontendConfig{MemSize: 1 << 20, NumQueues: 1, QueueSize: 16})
		if err != nil {
			t.Fatal(err)
		}
		q := fe.Queues[0]
		gpa, _, _ := fe.Alloc(16)
		if _, err := q.Add([]Buf{{Addr: gpa, Len: 16}}); err != nil {
			t.Fatal(err)
		}
		q.Kick()
		select {
		case <-dev.entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("slots=%d: the request never reached the device", slots)
		}
		stopped := make(chan uint16, 1)
		go func() {
			base, err := q.Stop()
			if err != nil {
				t.Error(err)
			}
			stopped <- base
		}()
		select {
		case base := <-stopped:
			if base != 1 {
				t.Fatalf("slots=%d: stopped at %d, want 1", slots, base)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("slots=%d: GET_VRING_BASE waited for the device's request", slots)
		}
		if got := q.Reap(nil); len(got) != 1 {
			t.Fatalf("slots=%d: %d completions after the stop, want 1", slots, len(got))
		}
		// Running again re-arms the device's wait.
		if err := q.Start(1); err != nil {
			t.Fatal(err)
		}
		dev.mu.Lock()
		starts := dev.starts
		dev.mu.Unlock()
		if starts != 2 {
			t.Fatalf("slots=%d: StartQueue called %d times, want 2", slots, starts)
		}
		fe.Close()
	}
}
