package vhostuser

import (
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRestartSignals: a backend that takes over a ring cannot know
// whether the one before it signalled the completions it published (it
// may have died between the two), and a driver using EVENT_IDX that missed
// that interrupt waits for it forever, since no later completion crosses
// its used_event. So every backend signals each ring once when it starts
// it. Here a request completes; the frontend then reconnects to a new
// backend, which must signal with nothing new to complete.
func TestRestartSignals(t *testing.T) {
	for _, tracking := range []bool{true, false} {
		path := filepath.Join(t.TempDir(), "vhost.sock")
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		dev := &gateDevice{gates: map[byte]chan struct{}{}}
		close(dev.gate(1))
		go func() { // one backend per connection, as a restarted card is
			for {
				c, err := l.AcceptUnix()
				if err != nil {
					return
				}
				b := NewBackend(dev, slog.New(slog.NewTextHandler(io.Discard, nil)))
				b.Serve(c)
				b.Close()
			}
		}()
		fe, err := Dial(path, FrontendConfig{MemSize: 1 << 20, NumQueues: 1, QueueSize: 16, NoInflight: !tracking})
		if err != nil {
			t.Fatal(err)
		}
		q := fe.Queues[0]
		gpa, b, _ := fe.Alloc(1)
		b[0] = 1
		if _, err := q.Add([]Buf{{Addr: gpa, Len: 1}}); err != nil {
			t.Fatal(err)
		}
		q.Kick()
		deadline := time.Now().Add(5 * time.Second)
		for len(q.Reap(nil)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("tracking=%v: the request did not complete", tracking)
			}
			q.Wait(10 * time.Millisecond)
		}
		// Reconnect gives the ring a fresh call eventfd, so a call on it
		// can only come from the new backend.
		if err := fe.Reconnect(path, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if !callReady(q.callfd, 2*time.Second) {
			t.Errorf("tracking=%v: the new backend did not signal the ring it took over", tracking)
		}
		fe.Close()
		l.Close()
	}
}

func callReady(fd int, timeout time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, _ := unix.Poll(fds, int(timeout.Milliseconds()))
	return n > 0
}

// TestNewCallFDSignalled: a call eventfd replaced while its ring runs gets
// one call at once, since what the ring completed before may have been
// signalled on the old one only.
func TestNewCallFDSignalled(t *testing.T) {
	dev := &gateDevice{gates: map[byte]chan struct{}{}}
	fe, err := Dial(serveOnce(t, dev), FrontendConfig{MemSize: 1 << 20, NumQueues: 1, QueueSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer fe.Close()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if _, err := fe.call(SetVringCall, u64Bytes(0), []int{efd}, false); err != nil {
		t.Fatal(err)
	}
	if !callReady(efd, 2*time.Second) {
		t.Fatal("the new call eventfd of a running ring was not signalled")
	}
}

// TestDriverReset: a driver that resets the device starts over with new
// rings from index 0. QEMU stops each ring (GET_VRING_BASE), may enable it
// again while it is stopped, and sends the memory table before the new
// ring addresses and bases. A stopped ring must stay stopped until its
// next SET_VRING_KICK and then run from the base just set: a backend that
// restarted it earlier with the old addresses, or kept the old ring's
// last index over the new base, finds the new ring "broken" (avail idx 0
// far ahead of its last_avail) and the device is dead to the guest.
func TestDriverReset(t *testing.T) {
	for _, tracking := range []bool{true, false} {
		dev := &gateDevice{gates: map[byte]chan struct{}{}}
		close(dev.gate(1))
		fe, err := Dial(serveOnce(t, dev), FrontendConfig{MemSize: 1 << 20, NumQueues: 1, QueueSize: 16, NoInflight: !tracking})
		if err != nil {
			t.Fatal(err)
		}
		complete := func(what string, n int) {
			t.Helper()
			q := fe.Queues[0]
			for range n {
				gpa, b, _ := fe.Alloc(1)
				b[0] = 1
				if _, err := q.Add([]Buf{{Addr: gpa, Len: 1}}); err != nil {
					t.Fatal(err)
				}
			}
			q.Kick()
			got := 0
			deadline := time.Now().Add(5 * time.Second)
			for got < n {
				if time.Now().After(deadline) {
					t.Fatalf("tracking=%v, %s: %d of %d requests completed", tracking, what, got, n)
				}
				got += len(q.Reap(nil))
				q.Wait(10 * time.Millisecond)
			}
		}
		complete("before the reset", 3)
		if err := fe.DriverReset(); err != nil {
			t.Fatalf("tracking=%v: %v", tracking, err)
		}
		complete("after the reset", 2)
		fe.Close()
	}
}
