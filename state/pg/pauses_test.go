package pg

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/calpresence/calpresence/state"
)

var seedPause = state.Pause{ID: seedSession.UserID, Since: seedT0, Until: seedT0.Add(2 * time.Hour)}

// pausesVersion is the schema that added the pauses table.
func pausesVersion() int { return migrationVersion("_pauses.sql") }

// The schema with pauses stores the fixture as the one before it did, and
// a pause of the seeded person beside it.
func init() {
	if v := pausesVersion(); v > 0 {
		seeds[v] = func(ctx context.Context, t *testing.T, pool *pgxpool.Pool) {
			seeds[v-1](ctx, t, pool)
			rec, err := json.Marshal(seedPause)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pool.Exec(ctx, "INSERT INTO pauses (key, record) VALUES ($1, $2)", []byte(seedPause.ID), rec); err != nil {
				t.Fatalf("seed schema %d: %v", v, err)
			}
		}
	}
}

// TestPausesAcrossTheMigration: a database from before the pauses table
// opens with none; one written with it keeps its pause through Open.
func TestPausesAcrossTheMigration(t *testing.T) {
	version := pausesVersion()
	if version == 0 {
		t.Fatal("no migrations/NNNN_pauses.sql")
	}
	for _, from := range []int{version - 1, version} {
		ctx := context.Background()
		s := openSeeded(t, from)
		got, err := s.Pauses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p, ok := got[seedPause.ID]
		switch {
		case from < version && len(got) != 0:
			t.Errorf("from schema %d: Pauses() = %v; want none", from, got)
		case from == version && (!ok || len(got) != 1 || !p.Since.Equal(seedPause.Since) || !p.Until.Equal(seedPause.Until)):
			t.Errorf("from schema %d: Pauses() = %v; want the seeded pause %+v", from, got, seedPause)
		}
	}
}

// ownCallsVersion is the schema that added the own_calls table.
func ownCallsVersion() int { return migrationVersion("_own_calls.sql") }

// The schema with own_calls stores the fixture as the one before it did.
func init() {
	if v := ownCallsVersion(); v > 0 {
		seeds[v] = func(ctx context.Context, t *testing.T, pool *pgxpool.Pool) { seeds[v-1](ctx, t, pool) }
	}
}

// ownFeedsVersion is the schema that added the own_feeds table.
func ownFeedsVersion() int { return migrationVersion("_own_feeds.sql") }

// The schema with own_feeds stores the fixture as the one before it did.
func init() {
	if v := ownFeedsVersion(); v > 0 {
		seeds[v] = func(ctx context.Context, t *testing.T, pool *pgxpool.Pool) { seeds[v-1](ctx, t, pool) }
	}
}
