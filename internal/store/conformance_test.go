package store_test

import (
	"path/filepath"
	"testing"

	"github.com/azote/azote/internal/store"
	"github.com/azote/azote/internal/store/storetest"
)

func TestBoltConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func() store.Store {
		s, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		// One process holds the file: every "client" is the same store.
		return func() store.Store { return s }
	})
}
