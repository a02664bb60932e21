package vhostuser

import (
	"testing"
	"time"

	"github.com/azote/azote/internal/virtio"
)

// slowDevice serves a queue one chain at a time (it is not a
// ConcurrentDevice): a chain whose first readable byte is 1 takes longer
// than longSignal, one whose byte is 2 waits until release is closed.
type slowDevice struct{ release chan struct{} }

func (d *slowDevice) Features() uint64 { return 0 }
func (d *slowDevice) NumQueues() int   { return 1 }
func (d *slowDevice) Config() []byte   { return nil }
func (d *slowDevice) Handle(q int, c *virtio.Chain, err error) uint32 {
	if err != nil || len(c.Readable) == 0 || len(c.Readable[0]) == 0 {
		return 0
	}
	switch c.Readable[0][0] {
	case 1:
		time.Sleep(4 * longSignal)
	case 2:
		<-d.release
	}
	return 0
}

// TestLongChainSignalledAtOnce: a worker that serves a batch of chains
// signals the batch once, but a long chain is signalled as soon as it is
// done, not when the whole batch is: a driver with a few 1 MiB requests in
// flight must hear of the first while the device works on the next, or it
// refills its queue only when the device has run dry. Here the second
// chain of the batch finishes only once the driver has seen the first.
func TestLongChainSignalledAtOnce(t *testing.T) {
	dev := &slowDevice{release: make(chan struct{})}
	defer close(dev.release)
	fe, err := Dial(serveOnce(t, dev), FrontendConfig{MemSize: 1 << 20, NumQueues: 1, QueueSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer fe.Close()
	q := fe.Queues[0]
	// The backend signals a ring once when it starts it (see
	// TestRestartSignals); take that call off the eventfd first.
	if !q.Wait(5 * time.Second) {
		t.Fatal("the backend did not signal the ring it started")
	}
	for _, id := range []byte{1, 2} {
		gpa, b, _ := fe.Alloc(1)
		b[0] = id
		if _, err := q.Add([]Buf{{Addr: gpa, Len: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	q.Kick()
	// The used ring is in shared memory: a driver polling it would see the
	// completion without the signal, so this waits on the call eventfd.
	if !callReady(q.callfd, 5*time.Second) {
		t.Fatal("the long first chain was not signalled while the second was in the device")
	}
	if done := q.Reap(nil); len(done) != 1 {
		t.Fatalf("%d completions before the second chain was released, want 1", len(done))
	}
}
