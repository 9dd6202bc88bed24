package pg

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/calpresence/calpresence/internal/pgtest"
	"github.com/calpresence/calpresence/state"
)

// Schema 2 stores the fixture as schema 1 does, beside a leader epoch
// some leaders have advanced.
func init() {
	seeds[2] = func(ctx context.Context, t *testing.T, pool *pgxpool.Pool) {
		seeds[1](ctx, t, pool)
		if _, err := pool.Exec(ctx, "UPDATE leader_epoch SET epoch = 7"); err != nil {
			t.Fatalf("seed schema 2: %v", err)
		}
	}
}

func lead(t *testing.T, s *Store) *Store {
	t.Helper()
	v, err := s.Lead(context.Background())
	if err != nil {
		t.Fatalf("Lead: %v", err)
	}
	return v
}

// TestStaleLeaderRefused: replica A leads (epoch 1) and records alice's
// session; B takes over (epoch 2) and records its own. A's late writes,
// every kind a leader makes, are refused with state.ErrFenced, and B's
// records stay as B wrote them. A standby's inbox write (the Store Open
// returns) still goes through.
func TestStaleLeaderRefused(t *testing.T) {
	dsn := pgtest.DB(t)
	replicaA, replicaB := open(t, dsn), open(t, dsn)
	a := lead(t, replicaA)
	alice := state.Session{UserID: "alice", Availability: "Busy", Activity: "InACall", Pending: state.PendingSet}
	if err := a.PutSession(t.Context(), alice); err != nil {
		t.Fatalf("A (epoch 1): PutSession: %v", err)
	}
	if err := a.PutFeed(t.Context(), state.Feed{Source: "zoom", Body: []byte("A's copy")}); err != nil {
		t.Fatalf("A (epoch 1): PutFeed: %v", err)
	}

	b := lead(t, replicaB)
	if a.Epoch() != 1 || b.Epoch() != 2 || replicaA.Epoch() != 0 {
		t.Errorf("epochs: A %d, B %d, A's store %d; want 1, 2, 0", a.Epoch(), b.Epoch(), replicaA.Epoch())
	}
	bAlice := alice
	bAlice.Pending, bAlice.SetAt = "", time.Date(2027, 3, 4, 15, 0, 0, 0, time.UTC)
	if err := b.PutSession(t.Context(), bAlice); err != nil {
		t.Fatalf("B (epoch 2): PutSession: %v", err)
	}
	select {
	case <-a.Fenced():
		t.Fatal("A's Fenced closed before A wrote anything after the take-over")
	default:
	}

	for name, write := range map[string]func() error{
		"DeleteSession": func() error { return a.DeleteSession(t.Context(), "alice") },
		"PutSession":    func() error { return a.PutSession(t.Context(), alice) },
		"PutSessions":   func() error { return a.PutSessions(t.Context(), []state.Session{alice, {UserID: "bob"}}) },
		"PutIdentities": func() error {
			return a.PutIdentities(t.Context(), []state.Identity{{Address: "alice@contoso.com", ID: "alice"}})
		},
		"DeleteIdentity":    func() error { return a.DeleteIdentity(t.Context(), "alice@contoso.com") },
		"DeleteIdentities":  func() error { return a.DeleteIdentities(t.Context(), []string{"alice@contoso.com"}) },
		"PutFeed":           func() error { return a.PutFeed(t.Context(), state.Feed{Source: "zoom", Body: []byte("late")}) },
		"PutFeeds":          func() error { return a.PutFeeds(t.Context(), []state.Feed{{Source: "webex", Body: []byte("late")}}) },
		"DeleteFeedsExcept": func() error { return a.DeleteFeedsExcept(t.Context(), nil) },
		"PutSignal": func() error {
			return a.PutSignal(t.Context(), state.Signal{ID: "sig", Expires: time.Now().Add(time.Hour)})
		},
		"DeleteSignal": func() error { return a.DeleteSignal(t.Context(), "sig") },
	} {
		err := write()
		if !errors.Is(err, state.ErrFenced) || !strings.Contains(err.Error(), "leader epoch 1 is over: epoch 2 leads now") {
			t.Errorf("A (epoch 1) after B's take-over: %s = %v; want state.ErrFenced naming both epochs", name, err)
		}
	}
	select {
	case <-a.Fenced():
	default:
		t.Error("A's Fenced not closed after a refused write")
	}
	select {
	case <-b.Fenced():
		t.Error("B's Fenced closed")
	default:
	}

	sessions, err := b.Sessions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]state.Session{"alice": bAlice}, sessions); diff != "" {
		t.Errorf("Sessions() after A's late writes mismatch (-want +got):\n%s", diff)
	}
	if f, ok, err := b.Feed(t.Context(), "zoom"); err != nil || !ok || string(f.Body) != "A's copy" {
		t.Errorf("Feed(zoom) = %q, %v, %v; want A's copy from before the take-over", f.Body, ok, err)
	}
	if _, ok, err := b.Feed(t.Context(), "webex"); err != nil || ok {
		t.Errorf("Feed(webex) = %v, %v; want none (A's late PutFeeds refused)", ok, err)
	}
	if ids, err := b.Identities(t.Context()); err != nil || len(ids) != 0 {
		t.Errorf("Identities() = %v, %v; want none", ids, err)
	}

	// Standbys queue webhooks with the Store Open returned: unchecked.
	if err := replicaA.PutSignal(t.Context(), state.Signal{ID: "inbox:sig", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Errorf("a standby's inbox PutSignal = %v; want nil", err)
	}
	if err := b.DeleteSignal(t.Context(), "inbox:sig"); err != nil {
		t.Errorf("B (epoch 2): DeleteSignal = %v; want nil", err)
	}
	// A view's Close leaves the pool to its Store.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.PutSession(t.Context(), bAlice); err != nil {
		t.Errorf("B's PutSession after the view's Close = %v; want nil", err)
	}
}

// TestTakeOverWaitsForCheckedWrite: a take-over (Lead) waits for a write
// of the previous term that passed its check, so the new leader reads it;
// a write checked after the take-over is refused.
func TestTakeOverWaitsForCheckedWrite(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	s := open(t, dsn)
	a := lead(t, s)
	// A's write, held open between its check and its commit.
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT calpresence_fence($1)", a.Epoch()); err != nil {
		t.Fatalf("A's check: %v", err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO sessions (key, record) VALUES ('\\x616c696365'::bytea, '{\"user_id\":\"alice\"}')"); err != nil {
		t.Fatal(err)
	}
	led := make(chan *Store, 1)
	go func() {
		v, err := s.Lead(ctx)
		if err != nil {
			t.Errorf("Lead: %v", err)
		}
		led <- v
	}()
	select {
	case <-led:
		t.Fatal("Lead returned while a write of the previous term was between its check and its commit")
	case <-time.After(500 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	b := <-led
	if b == nil {
		t.FailNow()
	}
	if got, err := b.Sessions(ctx); err != nil || len(got) != 1 {
		t.Errorf("B's Sessions() = %v, %v; want alice's, written before the take-over", got, err)
	}
	if err := a.DeleteSession(ctx, "alice"); !errors.Is(err, state.ErrFenced) {
		t.Errorf("A's DeleteSession after the take-over = %v; want state.ErrFenced", err)
	}
	var epoch int64
	if err := s.pool.QueryRow(ctx, "SELECT epoch FROM leader_epoch").Scan(&epoch); err != nil || epoch != b.Epoch() {
		t.Errorf("leader_epoch = %d, %v; want %d", epoch, err, b.Epoch())
	}
	var n int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM leader_epoch").Scan(&n); err != nil || n != 1 {
		t.Errorf("leader_epoch has %d rows, %v; want 1", n, err)
	}
	if _, err := s.pool.Exec(ctx, "INSERT INTO leader_epoch (one, epoch) VALUES (false, 9)"); err == nil {
		t.Error("a second row in leader_epoch was accepted")
	}
}

// TestFenceSpansTheWrite: a view's write and its check are one transaction
// (one batch): a take-over waits for the whole write, not just the check.
func TestFenceSpansTheWrite(t *testing.T) {
	dsn := pgtest.DB(t)
	s := open(t, dsn)
	a := lead(t, s)
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		ctx, cancel := a.ctx(t.Context())
		defer cancel()
		if err := a.exec(ctx, "SELECT pg_sleep(1.5) /* A's slow write */"); err != nil {
			t.Errorf("A's slow write: %v", err)
		}
	}()
	// Wait until the server runs A's write (its check has passed then),
	// however slow this machine is to start the goroutine.
	ctx := context.Background()
	var started time.Time
	for deadline := time.Now().Add(10 * time.Second); started.IsZero(); {
		var at time.Time
		err := s.pool.QueryRow(ctx, `SELECT query_start FROM pg_stat_activity
			WHERE state = 'active' AND query LIKE '%A''s slow write%' AND pid <> pg_backend_pid()`).Scan(&at)
		switch {
		case err == nil:
			started = at
		case time.Now().After(deadline):
			t.Fatalf("A's write never showed up in pg_stat_activity: %v", err)
		default:
			time.Sleep(10 * time.Millisecond)
		}
	}
	// B's take-over must wait for A's write to commit. (Comparing the two
	// clients' clocks at the commit races: both learn of it at the same
	// instant; the server's own clock says when A's write began.)
	b := lead(t, s)
	var now time.Time
	if err := s.pool.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&now); err != nil {
		t.Fatal(err)
	}
	if ran := now.Sub(started); ran < 1500*time.Millisecond {
		t.Errorf("B took epoch %d %v after A's write of epoch %d began; want it to wait for the write's 1.5 s", b.Epoch(), ran, a.Epoch())
	}
	<-wrote
}
