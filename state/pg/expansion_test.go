package pg

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/calpresence/calpresence/state"
)

var seedExpansion = state.Expansion{Key: "k", At: seedT0.UTC(), Occurrences: []byte{1, 0, 0, 0, 0}}

// expansionsVersion is the schema that added feeds.expansion.
func expansionsVersion() int { return migrationVersion("_feed_expansions.sql") }

// The schema with feeds.expansion stores the fixture as the one before it
// did, with the copy's expansion beside it.
func init() {
	if v := expansionsVersion(); v > 0 {
		seeds[v] = func(ctx context.Context, t *testing.T, pool *pgxpool.Pool) {
			seeds[v-1](ctx, t, pool)
			if _, err := pool.Exec(ctx, "UPDATE feeds SET expansion = $1", state.EncodeExpansion(seedExpansion)); err != nil {
				t.Fatalf("seed schema %d: %v", v, err)
			}
		}
	}
}

// TestFeedHeadsAcrossTheMigration: copies stored before feeds.expansion
// existed read back with none (they are parsed at start, as before); those
// stored after, with theirs.
func TestFeedHeadsAcrossTheMigration(t *testing.T) {
	version := expansionsVersion()
	if version == 0 {
		t.Fatal("no migrations/NNNN_feed_expansions.sql")
	}
	for _, from := range []int{version - 1, version} {
		ctx := context.Background()
		s := openSeeded(t, from)
		heads, err := s.FeedHeads(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := state.Expansion{}
		if from == version {
			want = seedExpansion
		}
		if len(heads) != 1 {
			t.Fatalf("from schema %d: FeedHeads() = %+v; want %q alone", from, heads, seedFeed.Source)
		}
		h := heads[0]
		if h.Source != seedFeed.Source || !cmp.Equal(h.Expansion, want) || h.Body != nil || !h.FetchedAt.Equal(seedFeed.FetchedAt) {
			t.Errorf("from schema %d: FeedHeads() = %+v; want %q fetched at %v without a body, expansion %+v", from, h, seedFeed.Source, seedFeed.FetchedAt, want)
		}
	}
}
