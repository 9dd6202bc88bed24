package pg_test

import (
	"context"
	"testing"

	"github.com/calpresence/calpresence/internal/pgtest"
	"github.com/calpresence/calpresence/signals"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/pg"
	"github.com/calpresence/calpresence/state/storetest"
	"github.com/calpresence/calpresence/sync/engine"
)

// *pg.Store stands in for the bbolt store wherever sync takes one.
var (
	_ engine.Store     = (*pg.Store)(nil)
	_ engine.FeedCache = (*pg.Store)(nil)
	_ signals.Store    = (*pg.Store)(nil)
	_ state.Store      = (*pg.Store)(nil)
)

// TestContract runs the store contract (state/storetest) against
// PostgreSQL, a fresh database per check; state runs it against bbolt.
func TestContract(t *testing.T) {
	dsn := storetest.PerTest(func(t *testing.T) string { return pgtest.DB(t) })
	storetest.Run(t, func(t *testing.T) state.Store {
		s, err := pg.Open(context.Background(), dsn(t), pg.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestContractLeaderView runs it against the view a leader writes through
// (Lead): checked writes keep the same contract while the term lasts.
func TestContractLeaderView(t *testing.T) {
	dsn := storetest.PerTest(func(t *testing.T) string { return pgtest.DB(t) })
	storetest.Run(t, func(t *testing.T) state.Store {
		s, err := pg.Open(context.Background(), dsn(t), pg.Options{})
		if err != nil {
			t.Fatal(err)
		}
		v, err := s.Lead(context.Background())
		if err != nil {
			s.Close()
			t.Fatal(err)
		}
		return leaderView{v, s}
	})
}

// leaderView is a view that closes the Store it came from.
type leaderView struct {
	*pg.Store
	from *pg.Store
}

func (v leaderView) Close() error { return v.from.Close() }
