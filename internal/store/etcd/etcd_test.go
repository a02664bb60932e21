package etcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azote/azote/internal/store"
	"github.com/azote/azote/internal/store/etcd/etcdtest"
	"github.com/azote/azote/internal/store/storetest"
	"github.com/azote/azote/internal/store/watchq"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The tests that do not break their cluster share one three-member
// cluster, each under its own prefix.
var (
	sharedCluster *etcdtest.Cluster
	sharedErr     error
	prefixes      atomic.Int64
)

func TestMain(m *testing.M) {
	sharedCluster, sharedErr = etcdtest.New(etcdtest.Options{})
	code := m.Run()
	if sharedCluster != nil {
		sharedCluster.Close()
	}
	os.Exit(code)
}

// cluster returns the shared cluster, or skips (fails in CI) without etcd.
func cluster(t *testing.T) *etcdtest.Cluster {
	t.Helper()
	etcdtest.Require(t)
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedCluster
}

// open opens a client of the shared cluster under prefix, closed at the
// end of the test.
func open(t *testing.T, c *etcdtest.Cluster, prefix string, mod ...func(*Config)) *Store {
	t.Helper()
	cfg := Config{Endpoints: c.Endpoints(), Prefix: prefix}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func freshPrefix() string { return fmt.Sprintf("/test/%d", prefixes.Add(1)) }

func TestConformance(t *testing.T) {
	c := cluster(t)
	storetest.Run(t, func(t *testing.T) func() store.Store {
		prefix := freshPrefix()
		return func() store.Store { return open(t, c, prefix) }
	})
}

type rec struct {
	Name string
	N    int
}

// The keys and values in etcd are the documented layout, and a record's
// value is the JSON bbolt stores.
func TestLayout(t *testing.T) {
	c := cluster(t)
	prefix := freshPrefix()
	s := open(t, c, prefix)
	if err := s.Update(func(tx store.Tx) error {
		return errors.Join(tx.Put("vpcs", "vpc-1", rec{"a", 1}), tx.Put("vpcs", "a/b", rec{"b", 2}))
	}); err != nil {
		t.Fatal(err)
	}
	raw := rawClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := raw.Get(ctx, prefix+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	// The version key holds the id of the last transaction that wrote
	// the table: 32 hex digits.
	if id := got[prefix+"/vpcs"]; len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Errorf("version key %s/vpcs holds %q, want a transaction id", prefix, id)
	}
	delete(got, prefix+"/vpcs")
	want := map[string]string{
		prefix + "/vpcs/vpc-1": `{"Name":"a","N":1}`,
		prefix + "/vpcs/a/b":   `{"Name":"b","N":2}`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("keys under %s:\n got %v\nwant %v", prefix, got, want)
	}
	for _, bad := range []string{"", "a/b", "_fence"} {
		if err := s.Update(func(tx store.Tx) error { return tx.Put(bad, "k", rec{}) }); err == nil {
			t.Errorf("Put into table %q succeeded", bad)
		}
	}
	if err := s.Update(func(tx store.Tx) error { return tx.Put("t", "", rec{}) }); err == nil {
		t.Error("Put of an empty key succeeded")
	}
}

func rawClient(t *testing.T, c *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// A record another client changes between a transaction's read and its
// commit makes the transaction run again on the new value.
func TestConflictRunsAgain(t *testing.T) {
	c := cluster(t)
	prefix := freshPrefix()
	a, b := open(t, c, prefix), open(t, c, prefix)
	put := func(s store.Store, n int) {
		t.Helper()
		if err := s.Update(func(tx store.Tx) error { return tx.Put("t", "n", rec{"n", n}) }); err != nil {
			t.Fatal(err)
		}
	}
	put(a, 1)
	runs := 0
	err := a.Update(func(tx store.Tx) error {
		runs++
		var r rec
		if err := tx.Get("t", "n", &r); err != nil {
			return err
		}
		if runs == 1 {
			put(b, 10) // lands between this read and the commit
		}
		r.N++
		return tx.Put("t", "n", r)
	})
	if err != nil {
		t.Fatal(err)
	}
	var r rec
	if err := b.View(func(tx store.Tx) error { return tx.Get("t", "n", &r) }); err != nil {
		t.Fatal(err)
	}
	if runs != 2 || r.N != 11 {
		t.Fatalf("after a conflicting write: %d runs, n=%d; want 2 runs, n=11", runs, r.N)
	}
	// Create of a key another client creates first fails on the re-run.
	runs = 0
	err = a.Update(func(tx store.Tx) error {
		runs++
		if err := tx.Get("t", "n", &rec{}); err != nil { // fixes the snapshot
			return err
		}
		if runs == 1 {
			if err := b.Update(func(tx store.Tx) error { return tx.Create("t", "c", rec{"b", 0}) }); err != nil {
				t.Fatal(err)
			}
		}
		return tx.Create("t", "c", rec{"a", 0})
	})
	if !errors.Is(err, store.ErrExists) || runs != 2 {
		t.Fatalf("Create that lost the race: %v after %d runs; want ErrExists after 2", err, runs)
	}
}

// A scan is invalidated by a record another client adds to the table,
// even under a key the transaction never read.
func TestPhantomRunsAgain(t *testing.T) {
	c := cluster(t)
	prefix := freshPrefix()
	a, b := open(t, c, prefix), open(t, c, prefix)
	runs := 0
	var seen []int
	err := a.Update(func(tx store.Tx) error {
		runs++
		all, err := store.All[rec](tx, "alloc")
		if err != nil {
			return err
		}
		seen = append(seen, len(all))
		if runs == 1 {
			if err := b.Update(func(tx store.Tx) error { return tx.Create("alloc", "b", rec{"b", 0}) }); err != nil {
				t.Fatal(err)
			}
		}
		return tx.Create("alloc", "a", rec{"a", len(all)})
	})
	if err != nil {
		t.Fatal(err)
	}
	if runs != 2 || seen[0] != 0 || seen[1] != 1 {
		t.Fatalf("scan with a concurrent insert: %d runs seeing %v records; want 2 runs seeing [0 1]", runs, seen)
	}
	// A write to another table does not invalidate the scan.
	runs = 0
	err = a.Update(func(tx store.Tx) error {
		runs++
		if _, err := store.All[rec](tx, "alloc"); err != nil {
			return err
		}
		if runs == 1 {
			if err := b.Update(func(tx store.Tx) error { return tx.Put("other", "x", rec{}) }); err != nil {
				t.Fatal(err)
			}
		}
		return tx.Put("alloc", "z", rec{})
	})
	if err != nil || runs != 1 {
		t.Fatalf("scan with a write to another table: %v after %d runs; want 1 run", err, runs)
	}
}

// Update gives up with ErrConflict after MaxAttempts, and applies nothing.
func TestGivesUpAfterMaxAttempts(t *testing.T) {
	c := cluster(t)
	prefix := freshPrefix()
	a := open(t, c, prefix, func(cfg *Config) { cfg.MaxAttempts = 3 })
	b := open(t, c, prefix)
	runs := 0
	err := a.Update(func(tx store.Tx) error {
		runs++
		var r rec
		if err := tx.Get("t", "n", &r); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := b.Update(func(tx store.Tx) error { return tx.Put("t", "n", rec{"b", runs}) }); err != nil {
			t.Fatal(err)
		}
		return tx.Put("t", "mine", rec{"a", 0})
	})
	if !errors.Is(err, store.ErrConflict) || runs != 3 {
		t.Fatalf("always conflicting: %v after %d runs; want ErrConflict after 3", err, runs)
	}
	if err := b.View(func(tx store.Tx) error { return tx.Get("t", "mine", &rec{}) }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("write of the transaction that gave up: %v, want ErrNotFound", err)
	}
}

// Transactions larger than etcd allows fail before they are sent; one
// that reads more keys than etcd allows compares commits all the same.
func TestTransactionLimits(t *testing.T) {
	c := cluster(t)
	prefix := freshPrefix()
	s := open(t, c, prefix)
	err := s.Update(func(tx store.Tx) error {
		for i := range DefaultMaxTxnOps {
			if err := tx.Put("t", fmt.Sprint(i), rec{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		t.Fatalf("a transaction of %d writes (and a version key) succeeded", DefaultMaxTxnOps)
	}
	if n := count(t, s, "t"); n != 0 {
		t.Fatalf("the refused transaction left %d records", n)
	}
	if err := s.Update(func(tx store.Tx) error {
		for i := range DefaultMaxTxnOps - 1 {
			if err := tx.Put("t", fmt.Sprint(i), rec{"r", i}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("a transaction of %d writes: %v", DefaultMaxTxnOps-1, err)
	}
	// Read every record by key, then write: more compares than etcd
	// allows, so the commit guards the table by its version key.
	other := open(t, c, prefix)
	runs := 0
	if err := s.Update(func(tx store.Tx) error {
		runs++
		sum := 0
		for i := range DefaultMaxTxnOps - 1 {
			var r rec
			if err := tx.Get("t", fmt.Sprint(i), &r); err != nil {
				return err
			}
			sum += r.N
		}
		if runs == 1 {
			if err := other.Update(func(tx store.Tx) error { return tx.Put("t", "0", rec{"r", 1000}) }); err != nil {
				t.Fatal(err)
			}
		}
		return tx.Put("sums", "t", rec{"sum", sum})
	}); err != nil {
		t.Fatalf("a transaction reading %d keys: %v", DefaultMaxTxnOps-1, err)
	}
	var sum rec
	if err := s.View(func(tx store.Tx) error { return tx.Get("sums", "t", &sum) }); err != nil {
		t.Fatal(err)
	}
	want := 1000
	for i := 1; i < DefaultMaxTxnOps-1; i++ {
		want += i
	}
	if runs != 2 || sum.N != want {
		t.Fatalf("sum over %d keys with a concurrent write: %d after %d runs, want %d after 2", DefaultMaxTxnOps-1, sum.N, runs, want)
	}
}

func count(t *testing.T, s store.Store, table string) int {
	t.Helper()
	n := 0
	if err := s.View(func(tx store.Tx) error {
		return tx.ForEach(table, func(string, []byte) error { n++; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// A watch that must start again after its history was compacted tells
// its receiver to re-read the table.
func TestWatchResyncsAfterCompaction(t *testing.T) {
	c := cluster(t)
	prefix := freshPrefix()
	s := open(t, c, prefix)
	rev, err := s.currentRevision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.Update(func(tx store.Tx) error { return tx.Put("w", "a", rec{"a", i}) }); err != nil {
			t.Fatal(err)
		}
	}
	now, err := s.currentRevision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := rawClient(t, c).Compact(ctx, now); err != nil {
		t.Fatal(err)
	}
	// Resume as after a reconnect, from a revision now compacted away.
	q := watchq.New[store.Change](watchBacklog)
	out := make(chan store.Change)
	go q.Run(ctx, out, store.Change{Table: "w", Resync: true})
	done := make(chan struct{})
	go func() { s.watch(ctx, "w", rev, q); close(done) }()
	if ch := <-out; !ch.Resync {
		t.Fatalf("first change after a compacted resume: %+v, want Resync", ch)
	}
	if err := s.Update(func(tx store.Tx) error { return tx.Put("w", "b", rec{"b", 0}) }); err != nil {
		t.Fatal(err)
	}
	if ch := <-out; ch.Key != "b" {
		t.Fatalf("change after the resync: %+v, want w/b", ch)
	}
	cancel()
	<-done
}

// Open fails fast, with ErrUnavailable, when nothing answers.
func TestOpenUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	start := time.Now()
	s, err := Open(Config{Endpoints: []string{"http://" + addr}, Timeout: time.Second})
	if err == nil {
		s.Close()
		t.Fatal("Open of an address nothing listens on succeeded")
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Open took %v with a 1 s timeout", d)
	}
	if _, err := Open(Config{}); err == nil {
		t.Fatal("Open without endpoints succeeded")
	}
	if _, err := Open(Config{Endpoints: []string{"http://" + addr}, Prefix: "/x/"}); err == nil {
		t.Fatal("Open with a prefix ending in '/' succeeded")
	}
}

// Close ends every watch (and waits for their goroutines); a closed store
// answers ErrUnavailable and gives closed watch channels.
func TestCloseEndsWatches(t *testing.T) {
	c := cluster(t)
	s, err := Open(Config{Endpoints: c.Endpoints(), Prefix: freshPrefix()})
	if err != nil {
		t.Fatal(err)
	}
	chs := []<-chan store.Change{s.Watch(context.Background(), "a"), s.Watch(context.Background(), "b")}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, ch := range chs {
		select {
		case _, ok := <-ch:
			if ok {
				t.Fatal("a change arrived after Close")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a watch stayed open after Close")
		}
	}
	if err := s.View(func(tx store.Tx) error { return tx.Get("a", "k", &rec{}) }); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("View after Close: %v, want ErrUnavailable", err)
	}
	if _, ok := <-s.Watch(context.Background(), "a"); ok {
		t.Fatal("Watch after Close gave an open channel")
	}
	if _, ok := <-s.Watch(context.Background(), "a/b"); ok {
		t.Fatal("Watch of an invalid table gave an open channel")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// After a commit whose outcome is unknown, resolve fences it off and
// finds out whether it applied, even when later transactions wrote the
// table since.
func TestResolveUnknownCommit(t *testing.T) {
	c := cluster(t)
	prefix := freshPrefix()
	s := open(t, c, prefix)
	if err := s.Update(func(tx store.Tx) error { return tx.Put("t", "k", rec{}) }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snapshot := func() *tx {
		t.Helper()
		x := newTx(ctx, s, true)
		if err := x.Get("t", "k", &rec{}); err != nil {
			t.Fatal(err)
		}
		return x
	}
	raw := rawClient(t, c)
	vkey := s.versionKey("t")
	stamp := func(id string) {
		t.Helper()
		if _, err := raw.Put(ctx, vkey, id); err != nil {
			t.Fatal(err)
		}
	}

	// Applied, then overwritten twice by later transactions.
	x := snapshot()
	stamp("applied")
	stamp("later1")
	stamp("later2")
	if ok, err := x.resolve("applied", s.fenceKey("applied"), vkey); err != nil || !ok {
		t.Fatalf("resolve of an applied commit: %v, %v; want true", ok, err)
	}

	// Not applied while others wrote: fenced off, so it cannot apply late.
	x = snapshot()
	stamp("other")
	fence := s.fenceKey("lost")
	if ok, err := x.resolve("lost", fence, vkey); err != nil || ok {
		t.Fatalf("resolve of a lost commit: %v, %v; want false", ok, err)
	}
	late, err := raw.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(fence), "=", 0)).Then(clientv3.OpPut(vkey, "lost")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if late.Succeeded {
		t.Fatal("a fenced-off commit applied after resolve said it had not")
	}
	lease, err := raw.Get(ctx, fence)
	if err != nil || len(lease.Kvs) != 1 || lease.Kvs[0].Lease == 0 {
		t.Fatalf("fence key: %+v, %v; want one key on a lease", lease, err)
	}

	// Not applied and nothing written since the snapshot.
	x = snapshot()
	if ok, err := x.resolve("quiet", s.fenceKey("quiet"), vkey); err != nil || ok {
		t.Fatalf("resolve with no write since the snapshot: %v, %v; want false", ok, err)
	}
}
