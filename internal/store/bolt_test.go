package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

type rec struct {
	Name string
	N    int
}

func TestBoltRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx Tx) error {
		if err := tx.Create("t", "a", rec{"a", 1}); err != nil {
			return err
		}
		return tx.Create("t", "b", rec{"b", 2})
	}); err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx Tx) error { return tx.Create("t", "a", rec{"x", 9}) })
	if !errors.Is(err, ErrExists) {
		t.Fatalf("Create of a taken key: got %v, want ErrExists", err)
	}

	// A failing transaction leaves nothing behind.
	boom := errors.New("boom")
	err = s.Update(func(tx Tx) error {
		if err := tx.Put("t", "c", rec{"c", 3}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopen: durable records are there, the rolled-back one is not.
	s, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []rec
	err = s.View(func(tx Tx) error {
		var r rec
		if err := tx.Get("t", "c", &r); !errors.Is(err, ErrNotFound) {
			t.Errorf("rolled-back record: got %v, want ErrNotFound", err)
		}
		return tx.ForEach("t", func(k string, raw []byte) error {
			var r rec
			if err := json.Unmarshal(raw, &r); err != nil {
				return err
			}
			got = append(got, r)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != (rec{"a", 1}) || got[1] != (rec{"b", 2}) {
		t.Fatalf("records after reopen: %+v", got)
	}
	var all []rec
	if err := s.View(func(tx Tx) error { var err error; all, err = All[rec](tx, "t"); return err }); err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0] != got[0] || all[1] != got[1] {
		t.Fatalf("All: %+v, want %+v", all, got)
	}
	if err := s.Update(func(tx Tx) error { return tx.Delete("t", "a") }); err != nil {
		t.Fatal(err)
	}
	if err := s.View(func(tx Tx) error { return tx.Get("t", "a", &rec{}) }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted record: got %v", err)
	}
}

func TestBoltSecondOpenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// bbolt's flock is per open file description, so a second open in the
	// same process contends exactly like a second azoted would.
	if s2, err := OpenBolt(path); err == nil {
		s2.Close()
		t.Fatal("second open of a held database succeeded")
	}
}

// A watcher that stops reading never holds up a commit: past its backlog
// its pending changes become one Resync. Close ends every watch.
func TestBoltWatchOverflowAndClose(t *testing.T) {
	s, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(context.Background(), "t")
	for i := range watchBacklog + 10 {
		if err := s.Update(func(tx Tx) error { return tx.Put("t", "k", rec{"k", i}) }); err != nil {
			t.Fatal(err)
		}
	}
	// What the watch already had in hand comes first, in order, then the
	// Resync that stands for the rest.
	for n := 0; ; n++ {
		c := <-ch
		if c.Resync {
			if c.Table != "t" || n > watchBacklog {
				t.Fatalf("Resync %+v after %d changes", c, n)
			}
			break
		}
		if want := fmt.Sprintf(`{"Name":"k","N":%d}`, n); string(c.Value) != want {
			t.Fatalf("change %d before the Resync: %s, want %s", n, c.Value, want)
		}
	}
	if err := s.Update(func(tx Tx) error { return tx.Put("t", "k", rec{"k", -1}) }); err != nil {
		t.Fatal(err)
	}
	if c := <-ch; c.Resync || c.Key != "k" || string(c.Value) != `{"Name":"k","N":-1}` {
		t.Fatalf("change after the resync: %+v", c)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("a change arrived after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch stayed open after Close")
	}
	if _, ok := <-s.Watch(context.Background(), "t"); ok {
		t.Fatal("Watch on a closed store gave an open channel")
	}
}
