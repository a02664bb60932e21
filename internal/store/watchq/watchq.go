// Package watchq hands values from a producer that must never block (a
// commit, an etcd watch stream) to one slow or fast consumer, in order,
// with a bound on what it holds. When the consumer falls more than the
// bound behind, the queue drops what it holds and gives the consumer one
// reset marker instead, so it knows to re-read the state the values
// describe. It never blocks a producer and never grows past its bound.
package watchq

import (
	"context"
	"sync"
)

// Queue is a bounded, in-order hand-off from producers to one consumer.
// The zero value is not usable; call New.
type Queue[T any] struct {
	max  int
	wake chan struct{} // capacity 1: "there is something to take"

	mu    sync.Mutex
	items []T
	lost  bool // values were dropped since the consumer last took
}

// New returns a queue that holds at most limit values (at least 1) before
// it collapses them into a reset.
func New[T any](limit int) *Queue[T] {
	return &Queue[T]{max: max(limit, 1), wake: make(chan struct{}, 1)}
}

// Push appends v. It never blocks: when the queue is full, everything it
// holds, v included, is dropped and the consumer gets a reset instead.
func (q *Queue[T]) Push(v T) {
	q.mu.Lock()
	if q.lost || len(q.items) >= q.max {
		q.items, q.lost = nil, true
	} else {
		q.items = append(q.items, v)
	}
	q.mu.Unlock()
	q.signal()
}

// Lose drops everything the queue holds and makes the consumer's next
// value a reset: the producer knows it missed values (an etcd history
// compacted under a watch).
func (q *Queue[T]) Lose() {
	q.mu.Lock()
	q.items, q.lost = nil, true
	q.mu.Unlock()
	q.signal()
}

func (q *Queue[T]) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Run sends the queued values to out, in order, and reset wherever values
// were lost, until ctx is done; then it closes out. It is the queue's
// only consumer.
func (q *Queue[T]) Run(ctx context.Context, out chan<- T, reset T) {
	defer close(out)
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
		for {
			q.mu.Lock()
			items, lost := q.items, q.lost
			q.items, q.lost = nil, false
			q.mu.Unlock()
			if !lost && len(items) == 0 {
				break
			}
			if lost && !send(ctx, out, reset) {
				return
			}
			for _, v := range items {
				if !send(ctx, out, v) {
					return
				}
			}
		}
	}
}

func send[T any](ctx context.Context, out chan<- T, v T) bool {
	select {
	case out <- v:
		return true
	case <-ctx.Done():
		return false
	}
}
