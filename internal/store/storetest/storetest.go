// Package storetest is the conformance suite of store.Store: every
// implementation (bbolt, etcd) runs it, so callers can rely on one
// behaviour whichever store azoted was configured with. It checks each
// Store and Tx method, rollback, Create conflicts, ForEach order, reads
// of a transaction's own writes, consistent snapshots, lost updates and
// phantoms under concurrency, and, for a store.Watcher, watch delivery.
// It contains no code that ships.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/azote/azote/internal/store"
)

// Fresh makes a new, empty store for one test and returns a function that
// opens a client of it. Each call of that function gives another client
// of the same records (an embedded store may return the same client each
// time). Fresh registers the cleanup of everything it opens with t.
type Fresh func(t *testing.T) (open func() store.Store)

// Run runs the whole suite against the stores fresh makes.
func Run(t *testing.T, fresh Fresh) {
	tests := []struct {
		name string
		fn   func(*testing.T, func() store.Store)
	}{
		{"GetPutCreateDelete", testCRUD},
		{"Rollback", testRollback},
		{"ReadOwnWrites", testReadOwnWrites},
		{"ForEachOrder", testForEachOrder},
		{"TablesAreSeparate", testTablesAreSeparate},
		{"ViewIsReadOnly", testViewIsReadOnly},
		{"All", testAll},
		{"ConsistentSnapshot", testSnapshot},
		{"ConcurrentIncrements", testIncrements},
		{"LowestFreeNumber", testLowestFree},
		{"Watch", testWatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, fresh(t)) })
	}
}

type rec struct {
	Name string
	N    int
}

func update(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.Update(fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func get(t *testing.T, s store.Store, table, key string) (rec, error) {
	t.Helper()
	var r rec
	err := s.View(func(tx store.Tx) error { return tx.Get(table, key, &r) })
	return r, err
}

func keys(t *testing.T, s store.Store, table string) []string {
	t.Helper()
	var ks []string
	if err := s.View(func(tx store.Tx) error {
		return tx.ForEach(table, func(k string, _ []byte) error { ks = append(ks, k); return nil })
	}); err != nil {
		t.Fatalf("ForEach %s: %v", table, err)
	}
	return ks
}

func testCRUD(t *testing.T, open func() store.Store) {
	s := open()
	if _, err := get(t, s, "nosuchtable", "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get from a missing table: got %v, want ErrNotFound", err)
	}
	update(t, s, func(tx store.Tx) error { return tx.Create("t", "a", rec{"a", 1}) })
	if _, err := get(t, s, "t", "b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of a missing key: got %v, want ErrNotFound", err)
	}
	if r, err := get(t, s, "t", "a"); err != nil || r != (rec{"a", 1}) {
		t.Fatalf("Get after Create: %+v, %v", r, err)
	}
	err := s.Update(func(tx store.Tx) error { return tx.Create("t", "a", rec{"x", 9}) })
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("Create of a taken key: got %v, want ErrExists", err)
	}
	if r, _ := get(t, s, "t", "a"); r != (rec{"a", 1}) {
		t.Fatalf("a failed Create changed the record: %+v", r)
	}
	update(t, s, func(tx store.Tx) error { return tx.Put("t", "a", rec{"a", 2}) })
	if r, _ := get(t, s, "t", "a"); r != (rec{"a", 2}) {
		t.Fatalf("Put did not replace the record: %+v", r)
	}
	update(t, s, func(tx store.Tx) error { return tx.Delete("t", "a") })
	if _, err := get(t, s, "t", "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after Delete: got %v, want ErrNotFound", err)
	}
	update(t, s, func(tx store.Tx) error { return tx.Delete("t", "a") })
	update(t, s, func(tx store.Tx) error { return tx.Delete("nosuchtable", "a") })
	// A deleted key can be created again.
	update(t, s, func(tx store.Tx) error { return tx.Create("t", "a", rec{"again", 3}) })
	if r, _ := get(t, s, "t", "a"); r != (rec{"again", 3}) {
		t.Fatalf("Create after Delete: %+v", r)
	}
	// A record another client wrote is there for this one.
	if r, err := get(t, open(), "t", "a"); err != nil || r != (rec{"again", 3}) {
		t.Fatalf("Get from a second client: %+v, %v", r, err)
	}
	// A value that does not decode into the target is an error, not a
	// zero record.
	var wrong []string
	err = s.View(func(tx store.Tx) error { return tx.Get("t", "a", &wrong) })
	if err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get into a mismatched type: got %v, want a decode error", err)
	}
}

func testRollback(t *testing.T, open func() store.Store) {
	s := open()
	update(t, s, func(tx store.Tx) error { return tx.Put("t", "keep", rec{"keep", 1}) })
	boom := errors.New("boom")
	err := s.Update(func(tx store.Tx) error {
		if err := tx.Put("t", "new", rec{"new", 1}); err != nil {
			return err
		}
		if err := tx.Put("t", "keep", rec{"changed", 2}); err != nil {
			return err
		}
		if err := tx.Delete("t", "keep"); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", boom)
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want the function's error", err)
	}
	if _, err := get(t, s, "t", "new"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("record of a rolled-back transaction: got %v, want ErrNotFound", err)
	}
	if r, err := get(t, open(), "t", "keep"); err != nil || r != (rec{"keep", 1}) {
		t.Fatalf("record a rolled-back transaction changed: %+v, %v", r, err)
	}
}

func testReadOwnWrites(t *testing.T, open func() store.Store) {
	s := open()
	update(t, s, func(tx store.Tx) error {
		for _, k := range []string{"b", "d"} {
			if err := tx.Put("t", k, rec{k, 0}); err != nil {
				return err
			}
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		if err := tx.Put("t", "a", rec{"a", 1}); err != nil {
			return err
		}
		if err := tx.Put("t", "b", rec{"b", 2}); err != nil {
			return err
		}
		if err := tx.Delete("t", "d"); err != nil {
			return err
		}
		var r rec
		if err := tx.Get("t", "a", &r); err != nil || r != (rec{"a", 1}) {
			t.Errorf("Get of a record written in the same transaction: %+v, %v", r, err)
		}
		if err := tx.Get("t", "b", &r); err != nil || r != (rec{"b", 2}) {
			t.Errorf("Get of a record replaced in the same transaction: %+v, %v", r, err)
		}
		if err := tx.Get("t", "d", &r); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get of a record deleted in the same transaction: got %v, want ErrNotFound", err)
		}
		if err := tx.Create("t", "a", rec{}); !errors.Is(err, store.ErrExists) {
			t.Errorf("Create over a record written in the same transaction: got %v, want ErrExists", err)
		}
		if err := tx.Create("t", "d", rec{"d", 4}); err != nil {
			t.Errorf("Create of a record deleted in the same transaction: %v", err)
		}
		if err := tx.Delete("t", "d"); err != nil {
			return err
		}
		var seen []rec
		if err := tx.ForEach("t", func(_ string, raw []byte) error {
			var r rec
			if err := json.Unmarshal(raw, &r); err != nil {
				return err
			}
			seen = append(seen, r)
			return nil
		}); err != nil {
			return err
		}
		if want := []rec{{"a", 1}, {"b", 2}}; !slices.Equal(seen, want) {
			t.Errorf("ForEach inside the transaction: %+v, want %+v", seen, want)
		}
		return nil
	})
	if got, want := keys(t, open(), "t"), []string{"a", "b"}; !slices.Equal(got, want) {
		t.Fatalf("after commit: keys %q, want %q", got, want)
	}
}

func testForEachOrder(t *testing.T, open func() store.Store) {
	s := open()
	// Byte order, including keys that share prefixes, hold '/' and are
	// not ASCII.
	want := []string{"0", "10", "9", "A", "a", "a/b", "a/b/c", "a0", "b", "z", "é", "字"}
	shuffled := slices.Clone(want)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, k := range shuffled { // one transaction per record: order of commits is not order of keys
		update(t, s, func(tx store.Tx) error { return tx.Put("t", k, rec{k, len(k)}) })
	}
	if got := keys(t, open(), "t"); !slices.Equal(got, want) {
		t.Fatalf("ForEach order: %q, want %q", got, want)
	}
	// The raw value is the record's JSON.
	err := s.View(func(tx store.Tx) error {
		return tx.ForEach("t", func(k string, raw []byte) error {
			exp, _ := json.Marshal(rec{k, len(k)})
			if string(raw) != string(exp) {
				t.Errorf("raw value of %q: %s, want %s", k, raw, exp)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	// An error from fn stops the walk and comes back unchanged.
	stop := errors.New("stop")
	n := 0
	err = s.View(func(tx store.Tx) error {
		return tx.ForEach("t", func(string, []byte) error {
			if n++; n == 3 {
				return stop
			}
			return nil
		})
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Fatalf("ForEach after fn failed on the 3rd record: err %v after %d calls", err, n)
	}
	if got := keys(t, s, "nosuchtable"); len(got) != 0 {
		t.Fatalf("ForEach of a missing table: %q", got)
	}
}

// Tables whose names share a prefix, and keys that look like paths,
// never leak into one another.
func testTablesAreSeparate(t *testing.T, open func() store.Store) {
	s := open()
	update(t, s, func(tx store.Tx) error {
		for _, w := range [][2]string{{"a", "x"}, {"a", "y/z"}, {"ab", "x"}, {"b", "a"}, {"a_", "q"}} {
			if err := tx.Put(w[0], w[1], rec{w[0] + ":" + w[1], 0}); err != nil {
				return err
			}
		}
		return nil
	})
	for table, want := range map[string][]string{"a": {"x", "y/z"}, "ab": {"x"}, "b": {"a"}, "a_": {"q"}} {
		if got := keys(t, s, table); !slices.Equal(got, want) {
			t.Errorf("table %s: keys %q, want %q", table, got, want)
		}
	}
	if r, err := get(t, s, "ab", "x"); err != nil || r.Name != "ab:x" {
		t.Fatalf("ab/x: %+v, %v", r, err)
	}
	update(t, s, func(tx store.Tx) error { return tx.Delete("a", "x") })
	if r, err := get(t, s, "ab", "x"); err != nil || r.Name != "ab:x" {
		t.Fatalf("deleting a/x touched ab/x: %+v, %v", r, err)
	}
}

func testViewIsReadOnly(t *testing.T, open func() store.Store) {
	s := open()
	update(t, s, func(tx store.Tx) error { return tx.Put("t", "a", rec{"a", 1}) })
	for name, write := range map[string]func(store.Tx) error{
		"Put":    func(tx store.Tx) error { return tx.Put("t", "b", rec{"b", 1}) },
		"Create": func(tx store.Tx) error { return tx.Create("t", "c", rec{"c", 1}) },
		"Delete": func(tx store.Tx) error { return tx.Delete("t", "a") },
	} {
		var werr error
		err := s.View(func(tx store.Tx) error { werr = write(tx); return nil })
		if werr == nil {
			t.Errorf("%s in a View succeeded", name)
		}
		if err != nil {
			t.Errorf("View whose function returned nil: %v", err)
		}
	}
	if got := keys(t, open(), "t"); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after writes in Views: keys %q, want [a]", got)
	}
}

func testAll(t *testing.T, open func() store.Store) {
	s := open()
	update(t, s, func(tx store.Tx) error {
		for i := range 5 {
			if err := tx.Put("t", fmt.Sprint(4-i), rec{fmt.Sprint(4 - i), 4 - i}); err != nil {
				return err
			}
		}
		return nil
	})
	var all []rec
	if err := s.View(func(tx store.Tx) error {
		var err error
		all, err = store.All[rec](tx, "t")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for i, r := range all {
		if r != (rec{fmt.Sprint(i), i}) {
			t.Fatalf("All: %+v", all)
		}
	}
	if len(all) != 5 {
		t.Fatalf("All: %d records, want 5", len(all))
	}
}

// A View sees one state: two records that every transaction keeps equal
// are never seen different, by Get or by ForEach, while a second client
// keeps changing them.
func testSnapshot(t *testing.T, open func() store.Store) {
	w, r := open(), open()
	update(t, w, func(tx store.Tx) error {
		return errors.Join(tx.Put("s", "a", rec{"a", 0}), tx.Put("s", "b", rec{"b", 0}))
	})
	done := make(chan error, 1)
	go func() {
		for i := 1; i <= 30; i++ {
			if err := w.Update(func(tx store.Tx) error {
				return errors.Join(tx.Put("s", "a", rec{"a", i}), tx.Put("s", "b", rec{"b", i}))
			}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for reads := 0; ; reads++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("writer: %v", err)
			}
			if reads == 0 {
				t.Log("the writer finished before the first read")
			}
			return
		default:
		}
		err := r.View(func(tx store.Tx) error {
			var a, b rec
			if err := tx.Get("s", "a", &a); err != nil {
				return err
			}
			if err := tx.Get("s", "b", &b); err != nil {
				return err
			}
			if a.N != b.N {
				t.Errorf("one View read a=%d and b=%d", a.N, b.N)
			}
			all, err := store.All[rec](tx, "s")
			if err != nil {
				return err
			}
			if len(all) != 2 || all[0].N != a.N || all[1].N != a.N {
				t.Errorf("one View read a=%d by Get and %+v by ForEach", a.N, all)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("View: %v", err)
		}
	}
}

// Read-modify-write transactions from many goroutines over two clients
// lose no update.
func testIncrements(t *testing.T, open func() store.Store) {
	clients := []store.Store{open(), open()}
	const goroutines, each = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, len(clients)*goroutines)
	for _, c := range clients {
		for range goroutines {
			wg.Go(func() {
				for range each {
					err := c.Update(func(tx store.Tx) error {
						var r rec
						if err := tx.Get("c", "n", &r); err != nil && !errors.Is(err, store.ErrNotFound) {
							return err
						}
						r.N++
						return tx.Put("c", "n", r)
					})
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("increment: %v", err)
	}
	r, err := get(t, open(), "c", "n")
	if want := len(clients) * goroutines * each; err != nil || r.N != want {
		t.Fatalf("counter: %d (%v), want %d: updates were lost", r.N, err, want)
	}
}

// Many goroutines over two clients each take "the lowest free number" by
// scanning a table and creating a record under their own key, the way
// address allocation does. The records never collide on a key, so only a
// store that protects scans against phantoms keeps the numbers unique.
func testLowestFree(t *testing.T, open func() store.Store) {
	clients := []store.Store{open(), open()}
	const goroutines, each = 3, 5
	var wg sync.WaitGroup
	errs := make(chan error, len(clients)*goroutines)
	for ci, c := range clients {
		for g := range goroutines {
			wg.Go(func() {
				for i := range each {
					err := c.Update(func(tx store.Tx) error {
						taken := map[int]bool{}
						if err := tx.ForEach("alloc", func(_ string, raw []byte) error {
							var r rec
							if err := json.Unmarshal(raw, &r); err != nil {
								return err
							}
							taken[r.N] = true
							return nil
						}); err != nil {
							return err
						}
						n := 0
						for taken[n] {
							n++
						}
						key := fmt.Sprintf("c%d-g%d-%d", ci, g, i)
						return tx.Create("alloc", key, rec{key, n})
					})
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("allocation: %v", err)
	}
	var all []rec
	if err := open().View(func(tx store.Tx) error {
		var err error
		all, err = store.All[rec](tx, "alloc")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	total := len(clients) * goroutines * each
	owner := map[int]string{}
	for _, r := range all {
		if o, dup := owner[r.N]; dup {
			t.Errorf("number %d taken twice, by %s and %s", r.N, o, r.Name)
		}
		owner[r.N] = r.Name
	}
	for n := range total {
		if _, ok := owner[n]; !ok {
			t.Errorf("number %d was never taken (%d records)", n, len(all))
		}
	}
	if len(all) != total {
		t.Fatalf("%d records, want %d", len(all), total)
	}
}

// watchLatency is how late a watcher may learn of a commit: a card on one
// host learns of an interface added on another within a second.
const watchLatency = time.Second

func testWatch(t *testing.T, open func() store.Store) {
	s := open()
	w, ok := s.(store.Watcher)
	if !ok {
		t.Skipf("%T does not implement store.Watcher", s)
	}
	writer := open()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := w.Watch(ctx, "w")

	next := func(what string) store.Change {
		t.Helper()
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatalf("%s: watch closed", what)
			}
			if c.Resync {
				t.Fatalf("%s: unexpected Resync", what)
			}
			return c
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no change within 5 s", what)
		}
		return store.Change{}
	}

	for i := range 3 {
		start := time.Now()
		update(t, writer, func(tx store.Tx) error { return tx.Put("w", "a", rec{"a", i}) })
		c := next("put")
		if lat := time.Since(start); lat > watchLatency {
			t.Errorf("change %d reached the watcher after %v, want under %v", i, lat, watchLatency)
		}
		exp, _ := json.Marshal(rec{"a", i})
		if c.Table != "w" || c.Key != "a" || c.Deleted || string(c.Value) != string(exp) {
			t.Fatalf("change %d: %+v (value %s), want w/a = %s", i, c, c.Value, exp)
		}
	}
	// Other tables, a table sharing the prefix, a rolled-back transaction
	// and the deletion of a missing record report nothing; a deletion
	// does, and changes come in commit order.
	update(t, writer, func(tx store.Tx) error { return tx.Put("other", "a", rec{}) })
	update(t, writer, func(tx store.Tx) error { return tx.Put("wx", "a", rec{}) })
	_ = writer.Update(func(tx store.Tx) error {
		_ = tx.Put("w", "rolledback", rec{})
		return errors.New("roll back")
	})
	update(t, writer, func(tx store.Tx) error { return tx.Delete("w", "missing") })
	update(t, writer, func(tx store.Tx) error { return tx.Delete("w", "a") })
	update(t, writer, func(tx store.Tx) error { return tx.Put("w", "b", rec{"b", 1}) })
	update(t, writer, func(tx store.Tx) error { return tx.Put("w", "c", rec{"c", 1}) })
	if c := next("delete"); c.Key != "a" || !c.Deleted || c.Value != nil {
		t.Fatalf("after the deletion of w/a: %+v", c)
	}
	if c := next("put b"); c.Key != "b" || c.Deleted {
		t.Fatalf("after the put of w/b: %+v", c)
	}
	if c := next("put c"); c.Key != "c" {
		t.Fatalf("after the put of w/c: %+v", c)
	}

	cancel()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the watch channel stayed open 5 s after its context was cancelled")
		}
	}
}
