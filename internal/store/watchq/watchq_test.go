package watchq

import (
	"context"
	"testing"
	"time"
)

func recv(t *testing.T, ch <-chan int) int {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatal("channel closed early")
		}
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("no value within 5 s")
	}
	return 0
}

func TestInOrder(t *testing.T) {
	q := New[int](100)
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan int)
	done := make(chan struct{})
	go func() { q.Run(ctx, out, -1); close(done) }()
	for i := range 50 {
		q.Push(i)
	}
	for i := range 50 {
		if v := recv(t, out); v != i {
			t.Fatalf("value %d: got %d", i, v)
		}
	}
	cancel()
	<-done
	if _, ok := <-out; ok {
		t.Fatal("out not closed after ctx was cancelled")
	}
}

// A consumer that does not read never blocks the producer; once it reads
// again it gets one reset, then what was pushed after the overflow.
func TestOverflowBecomesReset(t *testing.T) {
	q := New[int](4)
	for i := range 10 { // never blocks, holds at most 4
		q.Push(i)
	}
	if n := len(q.items); n > 4 {
		t.Fatalf("queue holds %d values past its bound of 4", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan int)
	go q.Run(ctx, out, -1)
	if v := recv(t, out); v != -1 {
		t.Fatalf("first value after an overflow: got %d, want the reset", v)
	}
	q.Push(42)
	if v := recv(t, out); v != 42 {
		t.Fatalf("value after the reset: got %d, want 42", v)
	}
	q.Lose()
	if v := recv(t, out); v != -1 {
		t.Fatalf("after Lose: got %d, want the reset", v)
	}
}

// Run returns when ctx ends even while the consumer is not reading.
func TestRunStopsWhileBlocked(t *testing.T) {
	q := New[int](4)
	q.Push(1)
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan int)
	done := make(chan struct{})
	go func() { q.Run(ctx, out, -1); close(done) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after ctx was cancelled")
	}
}
