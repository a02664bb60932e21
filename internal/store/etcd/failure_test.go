package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/store"
	"github.com/azote/azote/internal/store/etcd/etcdtest"
)

// unavailableBound is how long a call may take to report a cluster that
// does not answer: DefaultTimeout plus slack for a loaded machine.
const unavailableBound = DefaultTimeout + 2*time.Second

// collector records the values of one key that a watch reports.
type collector struct {
	mu      sync.Mutex
	values  []int
	resyncs int
	done    chan struct{}
}

func collect(ch <-chan store.Change) *collector {
	c := &collector{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for ch := range ch {
			c.mu.Lock()
			if ch.Resync {
				c.resyncs++
			} else if !ch.Deleted {
				var r rec
				if err := json.Unmarshal(ch.Value, &r); err == nil {
					c.values = append(c.values, r.N)
				}
			}
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collector) snapshot() ([]int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.values), c.resyncs
}

// waitFor waits until the collector has seen every value in want.
func (c *collector) waitFor(t *testing.T, want []int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, _ := c.snapshot()
		missing := 0
		for _, v := range want {
			if !slices.Contains(got, v) {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch missed %d of %d committed values within %v: got %v, want all of %v", missing, len(want), within, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func putN(s store.Store, n int) error {
	return s.Update(func(tx store.Tx) error { return tx.Put("t", "k", rec{"k", n}) })
}

func readN(s store.Store) (int, error) {
	var r rec
	err := s.View(func(tx store.Tx) error { return tx.Get("t", "k", &r) })
	return r.N, err
}

// A cluster that loses one member of three keeps serving: with a follower
// gone every call succeeds; with the leader gone calls succeed again as
// soon as the others have elected a new one. A watch follows throughout
// and misses no committed change.
func TestMemberKilled(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	prefix := freshPrefix()
	s := open(t, c, prefix)
	w := open(t, c, prefix)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := collect(w.Watch(ctx, "t"))
	var committed []int
	n := 0
	write := func() error {
		n++
		err := putN(s, n)
		if err == nil {
			committed = append(committed, n)
		}
		return err
	}

	leader, err := c.Leader()
	if err != nil {
		t.Fatal(err)
	}
	var follower *etcdtest.Member
	for _, m := range c.Members {
		if m != leader {
			follower = m
			break
		}
	}
	follower.Kill()
	for range 20 {
		if err := write(); err != nil {
			t.Fatalf("write with follower %s killed: %v", follower.Name, err)
		}
		if v, err := readN(s); err != nil || v != n {
			t.Fatalf("read with follower %s killed: %d, %v; want %d", follower.Name, v, err, n)
		}
	}
	got.waitFor(t, committed, time.Second)

	if err := follower.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	leader.Kill()
	killed := time.Now()
	// Until a new leader is elected (an election timeout, one second,
	// and a vote) a call may fail, with ErrUnavailable and nothing else.
	for {
		err := write()
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("write during the election: %v, want ErrUnavailable", err)
		}
		if time.Since(killed) > 15*time.Second {
			t.Fatalf("no write succeeded within 15 s of killing leader %s: %v", leader.Name, err)
		}
	}
	t.Logf("writes succeed again %v after the leader was killed", time.Since(killed).Round(time.Millisecond))
	// Once the two left agree on their leader, nothing fails.
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if err := write(); err != nil {
			t.Fatalf("write after the election: %v", err)
		}
		if v, err := readN(s); err != nil || v != n {
			t.Fatalf("read after the election: %d, %v; want %d", v, err, n)
		}
	}
	got.waitFor(t, committed, 5*time.Second)
	values, _ := got.snapshot()
	for i := 1; i < len(values); i++ {
		if values[i] <= values[i-1] {
			t.Fatalf("watch reported values out of order or twice: %v", values)
		}
	}
}

// A store whose whole cluster is gone, or frozen (sockets open, nothing
// answers: a partition that drops packets), reports ErrUnavailable within
// its bound; when the cluster is back the same store works again and its
// watches go on.
func TestClusterDown(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	prefix := freshPrefix()
	s := open(t, c, prefix)
	w := open(t, c, prefix)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := collect(w.Watch(ctx, "t"))
	if err := putN(s, 1); err != nil {
		t.Fatal(err)
	}
	before.waitFor(t, []int{1}, time.Second)

	unavailable := func(what string) {
		t.Helper()
		calls := map[string]func() error{
			"Update": func() error { return putN(s, -1) },
			"View":   func() error { _, err := readN(s); return err },
		}
		for name, call := range calls {
			start := time.Now()
			err := call()
			if d := time.Since(start); d > unavailableBound {
				t.Errorf("%s with the cluster %s took %v, want under %v", name, what, d, unavailableBound)
			}
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s with the cluster %s: %v, want ErrUnavailable", name, what, err)
			}
		}
	}
	back := func(what string) {
		t.Helper()
		start := time.Now()
		for {
			_, err := readN(s)
			if err == nil {
				break
			}
			if time.Since(start) > 15*time.Second {
				t.Fatalf("the store did not work again within 15 s of the cluster being %s: %v", what, err)
			}
		}
		t.Logf("the store works %v after the cluster was %s", time.Since(start).Round(time.Millisecond), what)
	}

	c.Stop()
	unavailable("stopped")
	start := time.Now()
	during := collect(w.Watch(ctx, "t")) // started while nothing answers
	if d := time.Since(start); d > unavailableBound {
		t.Errorf("Watch with the cluster stopped took %v, want under %v", d, unavailableBound)
	}
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	back("restarted")
	if err := putN(s, 2); err != nil {
		t.Fatalf("write after the restart: %v", err)
	}
	before.waitFor(t, []int{2}, 5*time.Second)
	// The watch started while nothing answered could not know where it
	// began: it asks its receiver to re-read the table once it does, and
	// reports the changes after that (checked with 3 below).
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if _, resyncs := during.snapshot(); resyncs > 0 {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("a watch started while the cluster was down did not ask for a resync within 5 s of the cluster's return")
		}
	}

	for _, m := range c.Members {
		m.Freeze()
	}
	unavailable("frozen")
	for _, m := range c.Members {
		m.Thaw()
	}
	back("thawed")
	if err := putN(s, 3); err != nil {
		t.Fatalf("write after the thaw: %v", err)
	}
	before.waitFor(t, []int{3}, 10*time.Second)
	during.waitFor(t, []int{3}, 5*time.Second)
	// A write that failed with ErrUnavailable had an unknown outcome: the
	// one sent to a frozen member sat in its socket and may have been
	// applied on the thaw. Nothing else may appear, nor twice.
	values, _ := before.snapshot()
	values = slices.DeleteFunc(values, func(v int) bool { return v == -1 })
	if !slices.Equal(values, []int{1, 2, 3}) {
		t.Errorf("the watch that lived through both outages saw %v, want [1 2 3] (and any -1)", values)
	}
	if v, err := readN(s); err != nil || v != 3 {
		t.Errorf("read after both outages: %d, %v; want 3", v, err)
	}

	cancel()
	for _, col := range []*collector{before, during} {
		select {
		case <-col.done:
		case <-time.After(5 * time.Second):
			t.Fatal("a watch channel stayed open 5 s after its context was cancelled")
		}
	}
}
