package mem_test

import (
	"testing"

	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/mem"
	"github.com/calpresence/calpresence/state/storetest"
)

// TestContract runs the store contract (state/storetest) against the
// in-memory store, as state/bolt and state/pg run it: a dry run must
// behave as a real run does. "Reopening" hands back the same Store.
func TestContract(t *testing.T) {
	store := storetest.PerTest(func(t *testing.T) *mem.Store { return mem.New() })
	storetest.Run(t, func(t *testing.T) state.Store { return store(t) })
}
