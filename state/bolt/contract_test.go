package bolt_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/bolt"
	"github.com/calpresence/calpresence/state/storetest"
)

// TestContract runs the store contract (state/storetest) against the bbolt
// file; state/pg runs it against PostgreSQL.
func TestContract(t *testing.T) {
	path := storetest.PerTest(func(t *testing.T) string { return filepath.Join(t.TempDir(), "state.db") })
	storetest.Run(t, func(t *testing.T) state.Store {
		s, err := bolt.Open(path(t), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
