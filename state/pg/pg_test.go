package pg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/calpresence/calpresence/internal/pgtest"
	"github.com/calpresence/calpresence/state"
)

func open(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// connect opens a pool on dsn without migrating, for setting a database up
// as an older release left it.
func connect(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func versions(t *testing.T, pool *pgxpool.Pool) []int {
	t.Helper()
	rows, _ := pool.Query(context.Background(), "SELECT version FROM "+versionTable+" ORDER BY version")
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func allVersions() []int {
	var vs []int
	for _, m := range migrations {
		vs = append(vs, m.version)
	}
	return vs
}

func TestMigrations(t *testing.T) {
	if migrationsErr != nil {
		t.Fatalf("the binary's migrations: %v", migrationsErr)
	}
	if len(migrations) == 0 || SchemaVersion() != len(migrations) {
		t.Fatalf("SchemaVersion() = %d with %d migrations", SchemaVersion(), len(migrations))
	}
	for _, tt := range []struct {
		files fstest.MapFS
		want  string
	}{
		{fstest.MapFS{"m/0001_a.sql": {}, "m/0003_c.sql": {}}, "migration 0003_c.sql: want number 0002 next"},
		{fstest.MapFS{"m/0002_b.sql": {}}, "migration 0002_b.sql: want number 0001 next"},
		{fstest.MapFS{"m/0001_a.sql": {}, "m/0001_b.sql": {}}, "migration 0001_b.sql: want number 0002 next"},
		{fstest.MapFS{"m/1_a.sql": {}}, "migration 1_a.sql: want a name like 0002_what_it_does.sql"},
		{fstest.MapFS{"m/0001_a.txt": {}}, "migration 0001_a.txt: want a name like 0002_what_it_does.sql"},
	} {
		if _, err := loadMigrations(tt.files, "m"); err == nil || err.Error() != tt.want {
			t.Errorf("loadMigrations(%v) = %v; want %q", tt.files, err, tt.want)
		}
	}
}

func TestMigrateFromEmpty(t *testing.T) {
	dsn := pgtest.DB(t)
	s := open(t, dsn)
	if got, want := versions(t, s.pool), allVersions(); !cmp.Equal(got, want) {
		t.Errorf("versions recorded = %v; want %v", got, want)
	}
	// Opening again applies nothing more.
	s.Close()
	s = open(t, dsn)
	if got, want := versions(t, s.pool), allVersions(); !cmp.Equal(got, want) {
		t.Errorf("versions recorded after a second Open = %v; want %v", got, want)
	}
}

// fixture is what every seed writes, each in its schema's layout, and what
// Open must keep through the migrations after it.
var (
	seedT0      = time.Date(2027, 3, 4, 15, 0, 0, 0, time.FixedZone("CET", 3600))
	seedSession = state.Session{
		UserID: "0f1e2d3c-aaaa-bbbb-cccc-000000000001", UPN: "alice@contoso.com",
		Availability: "Busy", Activity: "InAConferenceCall",
		SpanStart: seedT0, SpanEnd: seedT0.Add(time.Hour), Expires: seedT0.Add(time.Hour), SetAt: seedT0,
		Pending: state.PendingSet, // an intent: the next leader reconciles from it
		Events:  []state.EventRef{{Source: "zoom", UID: "u1", Start: seedT0, End: seedT0.Add(time.Hour)}},
	}
	seedIdentity = state.Identity{Address: "alice@contoso.com", ID: "0f1e2d3c-aaaa-bbbb-cccc-000000000001", CheckedAt: seedT0}
	seedFeed     = state.Feed{Source: "zoom", URLHash: state.URLHash("https://example.zoom.us/x.ics"), Body: []byte("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"), FetchedAt: seedT0}
	seedSignal   = state.Signal{ID: "zoom|ended|zoom:1||2027-03-04T14:00:00Z", Vendor: "zoom", Event: state.SignalEnded, Meeting: "zoom:1", At: seedT0, Received: seedT0, Expires: seedT0.Add(time.Hour)}
)

// seeds write the fixture into a database at schema version N, as that
// version stores it. A new migration adds the seed for its version.
var seeds = map[int]func(ctx context.Context, t *testing.T, pool *pgxpool.Pool){
	1: func(ctx context.Context, t *testing.T, pool *pgxpool.Pool) {
		rec := func(v any) []byte {
			data, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			return data
		}
		feedRec, feedBody, err := state.EncodeFeed(seedFeed)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{"INSERT INTO sessions (key, record) VALUES ($1, $2)", []any{[]byte(seedSession.Key()), rec(seedSession)}},
			{"INSERT INTO identities (key, record) VALUES ($1, $2)", []any{[]byte(seedIdentity.Address), rec(seedIdentity)}},
			{"INSERT INTO feeds (source, record, body) VALUES ($1, $2, $3)", []any{[]byte(seedFeed.Source), feedRec, feedBody}},
			{"INSERT INTO signals (key, record) VALUES ($1, $2)", []any{[]byte(seedSignal.ID), rec(seedSignal)}},
		} {
			if _, err := pool.Exec(ctx, q.sql, q.args...); err != nil {
				t.Fatalf("seed schema 1: %s: %v", q.sql, err)
			}
		}
	},
}

// TestMigrateKeepsData starts from a database at every version an earlier
// release may have left (the current one included), with records written
// as that version stores them, and checks that Open migrates it to the
// binary's version with every record kept.
func TestMigrateKeepsData(t *testing.T) {
	for from := 1; from <= len(migrations); from++ {
		t.Run(fmt.Sprintf("from-%d", from), func(t *testing.T) {
			ctx := context.Background()
			dsn := pgtest.DB(t)
			pool := connect(t, dsn)
			if err := migrate(ctx, pool, migrations[:from]); err != nil {
				t.Fatalf("migrate to %d: %v", from, err)
			}
			seed, ok := seeds[from]
			if !ok {
				t.Fatalf("no seed for schema %d: add one to seeds that writes the fixture as schema %d stores it", from, from)
			}
			seed(ctx, t, pool)
			// The leader epoch the seed left (schema 2 brought it; 0
			// before), kept by the migrations after it.
			var epoch int64
			if from >= 2 {
				if err := pool.QueryRow(ctx, "SELECT epoch FROM leader_epoch").Scan(&epoch); err != nil {
					t.Fatal(err)
				}
			}
			pool.Close()

			s := open(t, dsn)
			if got, want := versions(t, s.pool), allVersions(); !cmp.Equal(got, want) {
				t.Errorf("versions recorded = %v; want %v", got, want)
			}
			sessions, err := s.Sessions(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(map[string]state.Session{seedSession.Key(): seedSession}, sessions); diff != "" {
				t.Errorf("Sessions() mismatch (-want +got):\n%s", diff)
			}
			ids, err := s.Identities(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(map[string]state.Identity{seedIdentity.Address: seedIdentity}, ids); diff != "" {
				t.Errorf("Identities() mismatch (-want +got):\n%s", diff)
			}
			f, ok, err := s.Feed(ctx, seedFeed.Source)
			if err != nil || !ok || string(f.Body) != string(seedFeed.Body) || f.URLHash != seedFeed.URLHash {
				t.Errorf("Feed(%q) = %+v, %v, %v; want the seeded copy", seedFeed.Source, f, ok, err)
			}
			signals, err := s.Signals(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(map[string]state.Signal{seedSignal.ID: seedSignal}, signals); diff != "" {
				t.Errorf("Signals() mismatch (-want +got):\n%s", diff)
			}
			if v := lead(t, s); v.Epoch() != epoch+1 {
				t.Errorf("Lead after the migration took epoch %d; want %d (the seed's %d, kept, and one more)", v.Epoch(), epoch+1, epoch)
			}
		})
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	dsn := pgtest.DB(t)
	s := open(t, dsn)
	newer := SchemaVersion() + 1
	if _, err := s.pool.Exec(context.Background(), "INSERT INTO "+versionTable+" (version, name) VALUES ($1, 'from_the_future.sql')", newer); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s2, err := Open(context.Background(), dsn, Options{})
	if err == nil {
		s2.Close()
		t.Fatal("Open(a database at a newer schema) = nil error; want it refused")
	}
	var ne *NewerSchemaError
	if !errors.As(err, &ne) || ne.Database != newer || ne.Binary != SchemaVersion() {
		t.Errorf("Open error = %#v; want a *NewerSchemaError{%d, %d}", err, newer, SchemaVersion())
	}
	for _, want := range []string{
		fmt.Sprintf("schema version %d, newer than this binary's %d", newer, SchemaVersion()),
		"upgrade calpresence",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open error = %q; want it to say %q", err, want)
		}
	}
}

// TestOpenConcurrently: replicas starting together on an empty database
// all open it, and each migration is applied once.
func TestOpenConcurrently(t *testing.T) {
	dsn := pgtest.DB(t)
	const replicas = 4
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, replicas)
	)
	for i := range replicas {
		wg.Go(func() {
			<-start
			s, err := Open(context.Background(), dsn, Options{})
			if err == nil {
				err = s.PutSession(t.Context(), state.Session{UserID: fmt.Sprint("replica-", i)})
				s.Close()
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: Open: %v", i, err)
		}
	}
	s := open(t, dsn)
	if got, want := versions(t, s.pool), allVersions(); !cmp.Equal(got, want) {
		t.Errorf("versions recorded = %v; want %v", got, want)
	}
	if got, err := s.Sessions(t.Context()); err != nil || len(got) != replicas {
		t.Errorf("Sessions() = %d records, %v; want one per replica", len(got), err)
	}
}

// TestMigrationRollsBack: a migration that fails leaves nothing of itself
// and the version where it was.
func TestMigrationRollsBack(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	pool := connect(t, dsn)
	bad := append(migrations[:len(migrations):len(migrations)], migration{
		version: len(migrations) + 1,
		name:    fmt.Sprintf("%04d_broken.sql", len(migrations)+1),
		sql:     "CREATE TABLE half_done (x integer); SELECT no_such_function();",
	})
	err := migrate(ctx, pool, bad)
	if err == nil || !strings.Contains(err.Error(), bad[len(bad)-1].name) {
		t.Fatalf("migrate(a broken migration) = %v; want an error naming it", err)
	}
	if got, want := versions(t, pool), allVersions(); !cmp.Equal(got, want) {
		t.Errorf("versions recorded = %v; want %v (the good ones)", got, want)
	}
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('half_done') IS NOT NULL").Scan(&exists); err != nil || exists {
		t.Errorf("table of the failed migration exists = %v, %v; want it rolled back", exists, err)
	}
}

// TestBadRecords: a row that does not decode costs that record only, and
// is named, as in the bbolt file.
func TestBadRecords(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.DB(t))
	good := state.Session{UserID: "good", Activity: "InACall"}
	if err := s.PutSession(ctx, good); err != nil {
		t.Fatal(err)
	}
	if err := s.PutFeed(ctx, state.Feed{Source: "zoom", Body: []byte("BEGIN:VCALENDAR")}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO sessions (key, record) VALUES ('\x626164'::bytea, '{not json')`,                // "bad"
		`INSERT INTO sessions (key, record) VALUES ('\x776f6e67'::bytea, '{"span_end": 42}')`,       // "wong"
		`INSERT INTO identities (key, record) VALUES ('\x616c696365'::bytea, '\xff00'::bytea)`,      // "alice"
		`INSERT INTO signals (key, record) VALUES ('\x736967'::bytea, '[]')`,                        // "sig"
		`UPDATE feeds SET body = convert_to('BEGIN:VCALENDAR', 'UTF8') WHERE source = '\x7a6f6f6d'`, // not gzip
	} {
		if _, err := s.pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	sessions, err := s.Sessions(ctx)
	var bad *state.BadRecordsError
	if !errors.As(err, &bad) || !cmp.Equal(bad.Keys(), []string{"bad", "wong"}) && !cmp.Equal(bad.Keys(), []string{"wong", "bad"}) {
		t.Errorf("Sessions() error = %v; want a *state.BadRecordsError naming bad and wong", err)
	}
	if diff := cmp.Diff(map[string]state.Session{"good": good}, sessions); diff != "" {
		t.Errorf("Sessions() with bad records mismatch (-want +got):\n%s", diff)
	}
	for name, read := range map[string]func() error{
		`corrupt record identities "alice"`: func() error { _, err := s.Identities(ctx); return err },
		`corrupt record signals "sig"`:      func() error { _, err := s.Signals(ctx); return err },
		`corrupt record feed_bodies "zoom"`: func() error { _, _, err := s.Feed(ctx, "zoom"); return err },
	} {
		err := read()
		if !errors.As(err, &bad) || !strings.Contains(err.Error(), name) {
			t.Errorf("read error = %v; want a *state.BadRecordsError containing %q", err, name)
		}
	}
}

// TestSessionSettings: the pool's size, and commits that wait for the WAL
// flush even where the database's default is not to.
func TestSessionSettings(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	u, _ := url.Parse(dsn)
	db := strings.TrimPrefix(u.Path, "/")
	admin := connect(t, dsn)
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" SET synchronous_commit = off"); err != nil {
		t.Fatal(err)
	}
	admin.Close()

	s := open(t, dsn)
	var sc, app string
	if err := s.pool.QueryRow(ctx, "SELECT current_setting('synchronous_commit'), current_setting('application_name')").Scan(&sc, &app); err != nil {
		t.Fatal(err)
	}
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	if got, want := s.Where(), fmt.Sprintf("database %q on %s:%s", db, u.Hostname(), port); got != want {
		t.Errorf("Where() = %q; want %q", got, want)
	}
	if sc != "on" || app != "calpresence" {
		t.Errorf("synchronous_commit %q, application_name %q; want on, calpresence", sc, app)
	}
	if got := s.pool.Config().MaxConns; got != DefaultMaxConns {
		t.Errorf("MaxConns = %d; want %d", got, DefaultMaxConns)
	}

	q := u.Query()
	q.Set("pool_max_conns", "7")
	u.RawQuery = q.Encode()
	s7 := open(t, u.String())
	if got := s7.pool.Config().MaxConns; got != 7 {
		t.Errorf("MaxConns with pool_max_conns=7 = %d; want 7", got)
	}
	s2, err := Open(ctx, u.String(), Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := s2.pool.Config().MaxConns; got != 2 {
		t.Errorf("MaxConns with Options.MaxConns 2 = %d; want 2", got)
	}
}

// TestOpenErrorsHidePassword: whatever goes wrong, the password is not in
// the error.
func TestOpenErrorsHidePassword(t *testing.T) {
	const secret = "pw-0xDEADBEEF"
	server, _ := url.Parse(pgtest.ServerDSN(t))
	wrong := *server
	wrong.User = url.UserPassword(server.User.Username(), secret)
	for name, dsn := range map[string]string{
		"wrong password": wrong.String(),
		"does not parse": "postgres://user:" + secret + "@host:notaport/db",
		"keyword/value":  "host=127.0.0.1 port=1 user=x password=" + secret + " connect_timeout=1",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := Open(ctx, dsn, Options{})
		cancel()
		if err == nil {
			s.Close()
			t.Errorf("%s: Open = nil error; want one", name)
			continue
		}
		t.Logf("%s: %v", name, err)
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: Open error shows the password: %v", name, err)
		}
	}
}

// TestMethodsWorkUnderCallersCtx: every method works under the caller's
// ctx (no context.Background of its own): one that has ended stops it
// with ctx's error, reads and writes alike.
func TestMethodsWorkUnderCallersCtx(t *testing.T) {
	s := open(t, pgtest.DB(t))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]func() error{
		"Ping":              func() error { return s.Ping(ctx) },
		"Sessions":          func() error { _, err := s.Sessions(ctx); return err },
		"PutSession":        func() error { return s.PutSession(ctx, state.Session{UserID: "a"}) },
		"PutSessions":       func() error { return s.PutSessions(ctx, []state.Session{{UserID: "a"}}) },
		"DeleteSession":     func() error { return s.DeleteSession(ctx, "a") },
		"Identities":        func() error { _, err := s.Identities(ctx); return err },
		"PutIdentities":     func() error { return s.PutIdentities(ctx, []state.Identity{{Address: "a@contoso.com"}}) },
		"DeleteIdentity":    func() error { return s.DeleteIdentity(ctx, "a@contoso.com") },
		"DeleteIdentities":  func() error { return s.DeleteIdentities(ctx, []string{"a@contoso.com"}) },
		"Feed":              func() error { _, _, err := s.Feed(ctx, "zoom"); return err },
		"PutFeed":           func() error { return s.PutFeed(ctx, state.Feed{Source: "zoom"}) },
		"PutFeeds":          func() error { return s.PutFeeds(ctx, []state.Feed{{Source: "zoom"}}) },
		"DeleteFeedsExcept": func() error { return s.DeleteFeedsExcept(ctx, nil) },
		"Signals":           func() error { _, err := s.Signals(ctx); return err },
		"QueuedSignals":     func() error { _, err := s.QueuedSignals(ctx); return err },
		"Signal":            func() error { _, _, err := s.Signal(ctx, "x"); return err },
		"PutSignal":         func() error { return s.PutSignal(ctx, state.Signal{ID: "x"}) },
		"DeleteSignal":      func() error { return s.DeleteSignal(ctx, "x") },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s(an ended ctx) = %v; want context.Canceled", name, err)
		}
	}
}

// migrationVersion is the version of the migration whose file name ends
// in suffix ("_pauses.sql"); 0 when there is none.
func migrationVersion(suffix string) int {
	for _, m := range migrations {
		if strings.HasSuffix(m.name, suffix) {
			return m.version
		}
	}
	return 0
}

// openSeeded opens a Store on a database migrated to schema from and
// seeded as that schema stores the fixture (seeds), migrating it to the
// binary's version.
func openSeeded(t *testing.T, from int) *Store {
	t.Helper()
	ctx := context.Background()
	dsn := pgtest.DB(t)
	pool := connect(t, dsn)
	if err := migrate(ctx, pool, migrations[:from]); err != nil {
		t.Fatalf("migrate to %d: %v", from, err)
	}
	seeds[from](ctx, t, pool)
	pool.Close()
	return open(t, dsn)
}
