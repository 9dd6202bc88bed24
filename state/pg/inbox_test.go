package pg

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/calpresence/calpresence/internal/pgtest"
	"github.com/calpresence/calpresence/state"
)

// queuedMigration is the migration that added signals.queued. It is found
// by name: its number is whatever it has in the sequence.
func queuedMigration(t *testing.T) migration {
	t.Helper()
	for _, m := range migrations {
		if strings.HasSuffix(m.name, "_signals_queued.sql") {
			return m
		}
	}
	t.Fatal("no migrations/NNNN_signals_queued.sql")
	return migration{}
}

func init() {
	for _, m := range migrations {
		if strings.HasSuffix(m.name, "_signals_queued.sql") {
			// The schema with signals.queued stores the fixture as the one
			// before it did: the column is computed from the key.
			prev := m.version - 1
			seeds[m.version] = func(ctx context.Context, t *testing.T, pool *pgxpool.Pool) { seeds[prev](ctx, t, pool) }
		}
	}
}

// TestQueuedSignalsReadTheInboxAlone: the leader's read of the inbox,
// every 2 s, goes through the partial index on the queued rows, not over
// every signal in force.
func TestQueuedSignalsReadTheInboxAlone(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.DB(t))
	for i := range 2000 {
		sig := seedSignal
		sig.ID = fmt.Sprintf("zoom|left|zoom:1|guest-%04d@partner.example|2027-03-04T14:00:00Z", i)
		if i%1000 == 0 {
			sig.ID = state.QueuedPrefix + sig.ID
		}
		if err := s.PutSignal(ctx, sig); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.pool.Exec(ctx, "ANALYZE signals"); err != nil {
		t.Fatal(err)
	}
	queued, err := s.QueuedSignals(ctx)
	if err != nil || len(queued) != 2 {
		t.Fatalf("QueuedSignals() = %d signals, %v; want the 2 queued", len(queued), err)
	}
	var plan []byte
	if err := s.pool.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+queuedSignalsQuery).Scan(&plan); err != nil {
		t.Fatalf("EXPLAIN the inbox read: %v", err)
	}
	var nodes []struct{ Plan planNode }
	if err := json.Unmarshal(plan, &nodes); err != nil || len(nodes) != 1 {
		t.Fatalf("EXPLAIN output %s: %v", plan, err)
	}
	scans := nodes[0].Plan.scans()
	if !cmp.Equal(scans, []string{"signals_queued"}) {
		t.Errorf("the inbox read scans %v; want the index signals_queued alone, no sequential scan:\n%s", scans, plan)
	}
}

// planNode is a node of EXPLAIN (FORMAT JSON)'s plan.
type planNode struct {
	NodeType  string     `json:"Node Type"`
	Relation  string     `json:"Relation Name"`
	IndexName string     `json:"Index Name"`
	Plans     []planNode `json:"Plans"`
}

// scans names what the plan reads: an index by its name, a table read
// whole as "seq:" and its name.
func (n planNode) scans() []string {
	var out []string
	switch {
	case n.IndexName != "":
		out = append(out, n.IndexName)
	case n.NodeType == "Seq Scan":
		out = append(out, "seq:"+n.Relation)
	}
	for _, c := range n.Plans {
		out = append(out, c.scans()...)
	}
	return out
}

// TestMigrateQueuesTheInbox: the signals a standby queued before the
// migration are in the inbox after it, and only they.
func TestMigrateQueuesTheInbox(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	pool := connect(t, dsn)
	m := queuedMigration(t)
	if err := migrate(ctx, pool, migrations[:m.version-1]); err != nil {
		t.Fatal(err)
	}
	applied := seedSignal
	inbox := seedSignal
	inbox.ID = state.QueuedPrefix + seedSignal.ID
	for _, sig := range []state.Signal{applied, inbox} {
		rec, err := json.Marshal(sig)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, "INSERT INTO signals (key, record) VALUES ($1, $2)", []byte(sig.ID), rec); err != nil {
			t.Fatal(err)
		}
	}
	pool.Close()

	s := open(t, dsn)
	got, err := s.QueuedSignals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]state.Signal{inbox.ID: inbox}, got); diff != "" {
		t.Errorf("QueuedSignals() after %s (-want +got):\n%s", m.name, diff)
	}
}
