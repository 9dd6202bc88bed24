package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/pgtest"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/leader"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state/pgstate"
	"github.com/calpresence/calpresence/sync/engine"
)

// Two replicas sharing one PostgreSQL database (docs/deploy.md): one leads and alone calls Graph; when it loses the lead the
// other takes over within 15 s from what the first recorded, so nothing is
// repeated or lost. The tests run in real time (a real PostgreSQL and the
// elector's real timings: a new leader acts Check+CheckTimeout = 3 s after
// it takes the lock).

const (
	aliceID = "00000000-0000-4000-8000-00000000a11c"
	bobID   = "00000000-0000-4000-8000-000000000b0b"
)

// graphCall is one presence call a replica sent.
type graphCall struct {
	At       time.Time
	Op, User string // set or clear; the user id
}

func (c graphCall) String() string {
	return fmt.Sprintf("%s %s at %s", c.Op, c.User, c.At.Format("15:04:05.000"))
}

// fakeGraph stands in for Graph for one replica: it records every call,
// and resolves the test's two addresses (testutil.Presence).
type fakeGraph struct {
	*testutil.Presence
	hold func(user string) // when set (before use), a set waits for it first: a call in flight
}

func (g *fakeGraph) SetPresence(ctx context.Context, id, availability, activity string, exp time.Duration) error {
	if g.hold != nil {
		g.hold(id)
	}
	return g.Presence.SetPresence(ctx, id, availability, activity, exp)
}

// epoch is what the calls' times count from.
var epoch = time.Now()

func newFakeGraph() *fakeGraph {
	known := map[string]presence.Person{
		"alice@contoso.com": {ID: aliceID, UPN: "alice@contoso.com"},
		"bob@contoso.com":   {ID: bobID, UPN: "bob@contoso.com"},
	}
	return &fakeGraph{Presence: &testutil.Presence{Begin: epoch, People: known, ResolveErr: func(a string) error {
		if _, ok := known[a]; !ok {
			return &presence.Error{Kind: presence.NotFound, Err: fmt.Errorf("no user %s", a)}
		}
		return nil
	}}}
}

// Calls returns the calls so far, with their wall-clock times.
func (g *fakeGraph) Calls() []graphCall {
	var out []graphCall
	for _, c := range g.Presence.Calls() {
		out = append(out, graphCall{epoch.Add(c.At), c.Op, c.User})
	}
	return out
}

// count is how many calls of op for user there were.
func count(calls []graphCall, op, user string) int {
	n := 0
	for _, c := range calls {
		if c.Op == op && c.User == user {
			n++
		}
	}
	return n
}

// twoFeeds serves the feeds of replicaConfig's sources, alice and bob.
func twoFeeds(alice, bob []byte) *testutil.Feeds {
	f := &testutil.Feeds{}
	f.Set("alice", alice)
	f.Set("bob", bob)
	return f
}

// meeting is a feed of one event from start to end (whole seconds).
func meeting(uid string, start, end time.Time) []byte {
	return fmt.Appendf(nil, "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//app replicas test//EN\r\n"+
		"BEGIN:VEVENT\r\nUID:%s\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:%s\r\nDTEND:%s\r\nSUMMARY:%s\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
		uid, start.UTC().Format("20060102T150405Z"), end.UTC().Format("20060102T150405Z"), uid)
}

// replicaConfig is the configuration every replica of a test shares: two
// sources, one person each, the state in the database at dsn.
func replicaConfig(t *testing.T, dsn string) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Graph.TenantID, cfg.Graph.ClientID, cfg.Graph.ClientSecret = "contoso", "calpresence-app", "s3cr3t"
	cfg.State = config.State{Driver: config.DriverPostgres, DSN: config.DSN(dsn)}
	cfg.Server.Listen = ""
	cfg.Server.ShutdownTimeout = 5 * time.Second
	cfg.Schedule.PollInterval = time.Second
	// Each replica has a fake Graph of its own: a new leader's read-back
	// would not see the sessions the old leader set, and set them again.
	cfg.Graph.ReadbackInterval = 0
	cfg.Sources = []config.Source{
		{Name: "alice", URL: "https://feeds.example.test/alice.ics", Users: []string{"alice@contoso.com"}, PollInterval: time.Second},
		{Name: "bob", URL: "https://feeds.example.test/bob.ics", Users: []string{"bob@contoso.com"}, PollInterval: time.Second},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// replica is one App of a test, with its own Graph and logs.
type replica struct {
	id     string
	app    *App
	addr   string
	graph  *fakeGraph
	logs   *testutil.LogBuffer
	cancel context.CancelFunc
	done   chan error // Wait's result
}

// startReplica starts an App called id on cfg, calling g instead of Graph
// (nil: the Graph client cfg names).
func startReplica(t *testing.T, cfg *config.Config, id string, feeds engine.Fetcher, g *fakeGraph) *replica {
	t.Helper()
	r := &replica{id: id, graph: g, logs: &testutil.LogBuffer{}, done: make(chan error, 1)}
	bound := make(chan net.Addr, 1)
	opts := []Option{
		WithLogger(slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		WithRegistry(prometheus.NewRegistry()),
		WithFetcher(feeds),
		WithListen("127.0.0.1:0", func(a net.Addr) { bound <- a }),
		// Two replicas in one process: the default ID (hostname-pid)
		// would be the same for both.
		WithElectorOptions(leader.Options{ID: id}),
	}
	if g != nil {
		opts = append(opts, WithPresence(g))
	}
	a, err := New(context.Background(), cfg, opts...)
	if err != nil {
		t.Fatalf("%s: New: %v", id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := a.Start(ctx); err != nil {
		cancel()
		a.Close()
		t.Fatalf("%s: Start: %v", id, err)
	}
	r.app, r.addr, r.cancel = a, (<-bound).String(), cancel
	go func() { r.done <- a.Wait() }()
	t.Cleanup(func() {
		r.stop(t)
		a.Close()
		if t.Failed() && g != nil {
			t.Logf("%s's calls: %v", id, g.Calls())
		}
		if t.Failed() {
			t.Logf("%s's logs:\n%s", id, r.logs.String())
		}
	})
	return r
}

// stop ends the replica's context and waits for Wait (once).
func (r *replica) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("%s: Wait = %v; want nil", r.id, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s: Wait has not returned 30s after its context ended", r.id)
	}
}

// readyz asks the replica's /readyz; code 0 when it does not answer.
func (r *replica) readyz(t *testing.T) (int, engine.Readiness) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.addr+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, engine.Readiness{}
	}
	defer resp.Body.Close()
	var rd engine.Readiness
	if err := json.NewDecoder(resp.Body).Decode(&rd); err != nil {
		t.Errorf("%s: /readyz: %v", r.id, err)
	}
	return resp.StatusCode, rd
}

// role is the replica's role as its /readyz says it ("" when it does not
// answer).
func (r *replica) role(t *testing.T) string {
	t.Helper()
	_, rd := r.readyz(t)
	return rd.Role
}

// logTime is the time of the first log line with msg ("msg":"..."); zero
// when there is none.
func (r *replica) logTime(t *testing.T, msg string) time.Time {
	t.Helper()
	lines := r.logs.Lines(`"msg":"` + msg + `"`)
	if len(lines) == 0 {
		return time.Time{}
	}
	var rec struct{ Time time.Time }
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("%s: log line %s: %v", r.id, lines[0], err)
	}
	return rec.Time
}

// testTakeOver runs two replicas on one database: alice is in a meeting
// ending in ~40 s, bob's starts in ~25 s. Once the leader has set alice
// (and recorded it), lose makes it lose the lead and returns when it was
// fenced; the other must then lead within 15 s, set bob once at his start
// and clear alice at her end, without setting her again. The old leader
// sends nothing after the fence (nor anything but alice's set at all).
// lose returns whether the old leader's App is still running.
func testTakeOver(t *testing.T, lose func(t *testing.T, old, standby *replica) (fenced time.Time, running bool)) {
	dsn := pgtest.DB(t)
	cfg := replicaConfig(t, dsn)
	base := time.Now().Truncate(time.Second)
	aliceEnd, bobStart := base.Add(40*time.Second), base.Add(25*time.Second)
	feeds := twoFeeds(
		meeting("alice-1", base.Add(-10*time.Minute), aliceEnd),
		meeting("bob-1", bobStart, base.Add(10*time.Minute)),
	)

	// Both start at once: exactly one leads.
	var r1, r2 *replica
	var wg sync.WaitGroup
	wg.Go(func() { r1 = startReplica(t, cfg, "r1", feeds, newFakeGraph()) })
	wg.Go(func() { r2 = startReplica(t, cfg, "r2", feeds, newFakeGraph()) })
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var old, standby *replica
	if !testutil.WaitUntil(15*time.Second, func() bool {
		switch {
		case r1.role(t) == "leader":
			old, standby = r1, r2
		case r2.role(t) == "leader":
			old, standby = r2, r1
		}
		return old != nil
	}) {
		t.Fatalf("no replica leads 15s after both started: r1 %q, r2 %q", r1.role(t), r2.role(t))
	}
	t.Logf("%s leads %v after the start", old.id, time.Since(base).Round(time.Millisecond))

	// The leader sets alice, and records it (logged after the write).
	if !testutil.WaitUntil(20*time.Second, func() bool { return count(old.graph.Calls(), "set", aliceID) > 0 }) {
		t.Fatalf("%s leads but did not set alice within 20s: %v", old.id, old.graph.Calls())
	}
	if !testutil.WaitUntil(10*time.Second, func() bool { return len(old.logs.Lines(`"msg":"presence set"`)) > 0 }) {
		t.Fatalf("%s: no presence set logged", old.id)
	}
	for _, r := range []*replica{old, standby} {
		want := map[*replica]string{old: "leader", standby: "standby"}[r]
		var code int
		var rd engine.Readiness
		if !testutil.WaitUntil(10*time.Second, func() bool { code, rd = r.readyz(t); return code == 200 }) ||
			rd.Role != want || rd.Replica == nil || rd.Replica.ID != r.id || rd.Replica.Role != want || rd.Replica.Leader != old.id {
			t.Errorf("%s: /readyz = %d, role %q, replica %+v; want 200, %s, led by %s", r.id, code, rd.Role, rd.Replica, want, old.id)
		}
	}
	if got := standby.graph.Calls(); len(got) != 0 {
		t.Errorf("%s stands by but called Graph: %v", standby.id, got)
	}
	if time.Until(bobStart) < 12*time.Second {
		t.Fatalf("the leader took %v to set alice: too late for the rest of the test (bob starts in %v)",
			time.Since(base).Round(time.Millisecond), time.Until(bobStart).Round(time.Millisecond))
	}

	fenced, running := lose(t, old, standby)
	t.Logf("%s fenced %v after the start", old.id, fenced.Sub(base).Round(time.Millisecond))
	if !testutil.WaitUntil(15*time.Second-time.Since(fenced), func() bool { return standby.app.elector.Leading() }) {
		t.Fatalf("%s does not lead 15s after %s was fenced", standby.id, old.id)
	}
	took := time.Since(fenced)
	t.Logf("%s leads %v after %s was fenced", standby.id, took.Round(time.Millisecond), old.id)
	if code, rd := standby.readyz(t); rd.Role != "leader" || rd.Replica == nil || rd.Replica.Leader != standby.id {
		t.Errorf("%s: /readyz after the take-over = %d, role %q, replica %+v; want leader", standby.id, code, rd.Role, rd.Replica)
	}
	if running {
		// The old one stands by now, and says who leads.
		var code int
		var rd engine.Readiness
		if !testutil.WaitUntil(15*time.Second, func() bool {
			code, rd = old.readyz(t)
			return code == 200 && rd.Role == "standby" && rd.Replica != nil && rd.Replica.Leader == standby.id
		}) {
			t.Errorf("%s: /readyz after it lost the lead = %d, role %q, replica %+v; want 200, standby, led by %s",
				old.id, code, rd.Role, rd.Replica, standby.id)
		}
	}

	// The new leader sets bob at his start and clears alice at her end.
	if !testutil.WaitUntil(time.Until(aliceEnd)+15*time.Second, func() bool {
		c := standby.graph.Calls()
		return count(c, "set", bobID) > 0 && count(c, "clear", aliceID) > 0
	}) {
		t.Fatalf("%s: calls %v by 15s after alice's end; want bob set and alice cleared", standby.id, standby.graph.Calls())
	}
	time.Sleep(3 * time.Second) // a repeat would come within a poll or two

	oldCalls, newCalls := old.graph.Calls(), standby.graph.Calls()
	if len(oldCalls) != 1 || count(oldCalls, "set", aliceID) != 1 {
		t.Errorf("%s (the old leader) calls = %v; want alice's set only", old.id, oldCalls)
	}
	for _, c := range oldCalls {
		if !c.At.Before(fenced) {
			t.Errorf("%s called Graph after it was fenced at %s: %s", old.id, fenced.Format("15:04:05.000"), c)
		}
	}
	if len(newCalls) != 2 || count(newCalls, "set", bobID) != 1 || count(newCalls, "clear", aliceID) != 1 {
		t.Errorf("%s (the new leader) calls = %v; want bob's set and alice's clear, once each, and no set of alice", standby.id, newCalls)
	}
	for _, c := range newCalls {
		switch {
		case c.Op == "set" && c.User == bobID && c.At.Before(bobStart):
			t.Errorf("%s set bob at %s, before his start %s", standby.id, c.At.Format("15:04:05.000"), bobStart.Format("15:04:05"))
		case c.Op == "clear" && c.User == aliceID && c.At.Before(aliceEnd):
			t.Errorf("%s cleared alice at %s, before her end %s", standby.id, c.At.Format("15:04:05.000"), aliceEnd.Format("15:04:05"))
		}
	}
	if running && old.app.elector.Leading() {
		t.Errorf("%s leads again", old.id)
	}
}

// TestReplicasHandOverOnStop: the leader's context ends (SIGTERM, a
// rolling update): it releases the lock and the standby takes over.
func TestReplicasHandOverOnStop(t *testing.T) {
	testTakeOver(t, func(t *testing.T, old, standby *replica) (time.Time, bool) {
		stopped := time.Now()
		old.stop(t)
		return stopped, false
	})
}

// TestReplicasTakeOverFromFencedLeader: the leader's lock session is
// ended under it (pg_terminate_backend, as a database failover or an
// administrator would); its process keeps running. It stops acting at its
// next check (fenced), stands by, and the other replica takes over.
func TestReplicasTakeOverFromFencedLeader(t *testing.T) {
	testTakeOver(t, func(t *testing.T, old, standby *replica) (time.Time, bool) {
		return old.cutLock(t), true
	})
}

// cutLock ends the replica's lock session from another connection
// (pg_terminate_backend: a failover, an administrator) and returns when
// the replica logged that it stopped acting.
func (r *replica) cutLock(t *testing.T) (fenced time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm, err := pgx.Connect(ctx, string(r.app.Config().State.DSN))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close(context.Background())
	var n int
	// The lock session is "calpresence/<ID>"; Leader's is "<ID> (status)".
	if err := adm.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, "calpresence/"+r.id).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminate %s's lock session: %d terminated, %v; want 1", r.id, n, err)
	}
	if !testutil.WaitUntil(10*time.Second, func() bool {
		fenced = r.logTime(t, "lost the leader lock; stopped acting")
		return !fenced.IsZero()
	}) {
		t.Fatalf("%s not fenced 10s after its lock session was ended", r.id)
	}
	if r.app.elector.Leading() {
		t.Errorf("%s: Leading after it logged the fence", r.id)
	}
	return fenced
}

// throttledLeader runs one replica against a Graph that answers its first
// set 429 with Retry-After 5 s, and returns once that answer came: the
// Graph client is waiting to send the set again. Calls in flight may take
// 20 s after the engine's context ends, longer than the Retry-After.
func throttledLeader(t *testing.T) (*replica, *graphtest.Server, graphtest.Call) {
	t.Helper()
	dsn := pgtest.DB(t)
	g := graphtest.NewServer(t, graphtest.WithUsers(
		graphtest.User{ID: aliceID, UserPrincipalName: "alice@contoso.com", Mail: "alice@contoso.com"},
		graphtest.User{ID: bobID, UserPrincipalName: "bob@contoso.com", Mail: "bob@contoso.com"}))
	g.FailNext(graphtest.OpSetPresence, 1, http.StatusTooManyRequests, "5")
	cfg := replicaConfig(t, dsn)
	gc := g.Config()
	cfg.Graph.TenantID, cfg.Graph.ClientID, cfg.Graph.ClientSecret = gc.TenantID, gc.ClientID, gc.ClientSecret
	cfg.Graph.Endpoint, cfg.Graph.AuthorityHost, cfg.Graph.CAFile = gc.Endpoint, gc.AuthorityHost, gc.CAFile
	cfg.Server.ShutdownTimeout = 20 * time.Second // the grace of calls in flight outlasts the Retry-After
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	feeds := twoFeeds(
		meeting("alice-1", now.Add(-time.Minute), now.Add(10*time.Minute)),
		meeting("bob-1", now.Add(time.Hour), now.Add(2*time.Hour)),
	)
	r := startReplica(t, cfg, "r1", feeds, nil)
	var throttled graphtest.Call
	if !testutil.WaitUntil(20*time.Second, func() bool {
		calls := g.PresenceCalls()
		if len(calls) > 0 {
			throttled = calls[0]
		}
		return len(calls) > 0
	}) {
		t.Fatal("no setPresence within 20s")
	}
	if throttled.Op != graphtest.OpSetPresence || throttled.Status != http.StatusTooManyRequests {
		t.Fatalf("first call = %s %s %d; want setPresence answered 429", throttled.Op, throttled.User, throttled.Status)
	}
	return r, g, throttled
}

// TestFencedLeaderSendsNoRetry: Graph throttles the leader's set
// (429, Retry-After 5 s) and the Graph client waits to send it again; the
// leader is fenced meanwhile. The retry must not go out: another replica
// may be leading by then, and a set arriving after its clear would leave
// the person busy for the whole lease.
func TestFencedLeaderSendsNoRetry(t *testing.T) {
	r, g, throttled := throttledLeader(t)
	fenced := r.cutLock(t)
	if d := fenced.Sub(throttled.Time); d > 4*time.Second {
		t.Fatalf("fenced %v after the 429: too late to tell (the retry is due 5s after it)", d)
	}
	time.Sleep(time.Until(throttled.Time.Add(8 * time.Second))) // the retry was due at +5s

	// This replica leads again later (nobody else does), and then rightly
	// repeats the uncertain set; until then nothing may go out.
	relead := time.Now()
	if l := r.logs.Lines(`"msg":"leading"`); len(l) > 1 {
		var rec struct{ Time time.Time }
		_ = json.Unmarshal([]byte(l[1]), &rec)
		relead = rec.Time
	}
	for _, c := range g.PresenceCalls()[1:] {
		if c.Time.After(fenced) && c.Time.Before(relead) {
			t.Errorf("%s %s sent at %s (status %d), after the fence at %s", c.Op, c.User, c.Time.Format("15:04:05.000"), c.Status, fenced.Format("15:04:05.000"))
		}
	}
}

// TestHandingBackLeaderFencedSendsNoRetry: as TestFencedLeaderSendsNoRetry,
// but the leader is handing the lead back (SIGTERM) when its lock is lost:
// it lets calls in flight finish, and so keeps checking the lock until
// they have; lost meanwhile, the throttled set is cut, not sent at +5 s
// when another replica may lead.
func TestHandingBackLeaderFencedSendsNoRetry(t *testing.T) {
	r, g, throttled := throttledLeader(t)
	r.cancel() // SIGTERM: Wait returns once the call in flight has ended
	if !testutil.WaitUntil(5*time.Second, func() bool { return !r.app.elector.Leading() }) {
		t.Fatal("still Leading 5s after the hand-back began")
	}
	fenced := r.cutLock(t)
	if d := fenced.Sub(throttled.Time); d > 4*time.Second {
		t.Fatalf("fenced %v after the 429: too late to tell (the retry is due 5s after it)", d)
	}
	select {
	case err := <-r.done:
		r.cancel = nil // stopped: the cleanup has nothing to wait for
		if err != nil {
			t.Errorf("Wait = %v; want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the replica has not stopped 30s after the hand-back began")
	}
	if d := time.Until(throttled.Time.Add(6 * time.Second)); d > 0 {
		time.Sleep(d) // the retry was due at +5s
	}
	for _, c := range g.PresenceCalls()[1:] {
		t.Errorf("%s %s sent at %s (status %d) by a leader handing back, fenced at %s", c.Op, c.User, c.Time.Format("15:04:05.000"), c.Status, fenced.Format("15:04:05.000"))
	}
}

// TestStoreFenceStopsTheEngine: another lead begins (the database's
// leader epoch advances) while this replica's elector still holds the
// lock, as when a write reaches the database after the lock went. The next
// write its engine makes (the copy of a changed feed, or the intent before
// a set) is refused: the engine stops acting at once instead of retrying,
// and no Graph call goes out in that term. Nobody else leads here, so it leads again in a new epoch and
// makes the call then.
func TestStoreFenceStopsTheEngine(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DB(t)
	cfg := replicaConfig(t, dsn)
	now := time.Now().Truncate(time.Second)
	later := meeting("later", now.Add(2*time.Hour), now.Add(3*time.Hour))
	feeds := twoFeeds(later, later)
	g := newFakeGraph()
	r := startReplica(t, cfg, "r1", feeds, g)
	if !testutil.WaitUntil(20*time.Second, func() bool { code, rd := r.readyz(t); return code == 200 && rd.Role == "leader" }) {
		t.Fatal("r1 not a ready leader within 20s")
	}
	if l := r.logs.Lines("this replica leads: the engine starts", `"epoch":1`); len(l) != 1 {
		t.Errorf("r1's first lead logged %q; want epoch 1", l)
	}

	other, err := pgstate.Open(ctx, dsn, pgstate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Lead(ctx); err != nil {
		t.Fatal(err)
	}
	fenced := time.Now()
	feeds.Set("alice", meeting("alice-now", now.Add(-time.Minute), now.Add(time.Hour)))

	if !testutil.WaitUntil(15*time.Second, func() bool {
		return len(r.logs.Lines(`"msg":"lead failed; stepping down"`, "leader epoch 1", "fenced")) > 0
	}) {
		t.Fatalf("r1's lead did not end on the refused write within 15s; calls %v", g.Calls())
	}
	// It leads again (epoch 3) and sets alice.
	if !testutil.WaitUntil(20*time.Second, func() bool { return count(g.Calls(), "set", aliceID) > 0 }) {
		t.Fatalf("alice not set within 20s of the fence; calls %v", g.Calls())
	}
	l := r.logs.Lines("this replica leads: the engine starts")
	if len(l) != 2 || !strings.Contains(l[1], `"epoch":3`) {
		t.Fatalf("r1's leads: %q; want two, the second in epoch 3", l)
	}
	var rec struct{ Time time.Time }
	if err := json.Unmarshal([]byte(l[1]), &rec); err != nil {
		t.Fatal(err)
	}
	for _, c := range g.Calls() {
		if c.At.After(fenced) && c.At.Before(rec.Time) {
			t.Errorf("%s: sent in the term the database had fenced (epoch advanced at %s, new term at %s)", c, fenced.Format("15:04:05.000"), rec.Time.Format("15:04:05.000"))
		}
	}
	if n := count(g.Calls(), "set", aliceID); n != 1 {
		t.Errorf("alice set %d times; want once, in the new term", n)
	}
}

// TestStandbyNotReadyWithoutToken: a standby whose credentials Graph's
// authority refuses could not act if it took the lead, so it is not ready
// (a rollout must not replace a working leader with it), as a single
// replica is not; with good credentials it is.
func TestStandbyNotReadyWithoutToken(t *testing.T) {
	dsn := pgtest.DB(t)
	// Another replica leads all along.
	other, err := leader.New(dsn, leader.Options{ID: "other", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	running := make(chan struct{})
	go func() { defer close(running); _ = other.Run(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-running; other.Close() })
	if !testutil.WaitUntil(15*time.Second, other.Leading) {
		t.Fatal("the other replica does not lead after 15s")
	}
	g := graphtest.NewServer(t)
	for _, tc := range []struct {
		name, secret string
		code         int
		reason       string
	}{
		{"refused", "wrong-secret", 503, "Graph's authority has issued no token since start (check the credentials)"},
		{"good", g.ClientSecret(), 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := replicaConfig(t, dsn)
			gc := g.Config()
			cfg.Graph.TenantID, cfg.Graph.ClientID, cfg.Graph.ClientSecret = gc.TenantID, gc.ClientID, config.Secret(tc.secret)
			cfg.Graph.Endpoint, cfg.Graph.AuthorityHost, cfg.Graph.CAFile = gc.Endpoint, gc.AuthorityHost, gc.CAFile
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			r := startReplica(t, cfg, "standby-"+tc.name, &testutil.Feeds{}, nil)
			a, logs := r.app, r.logs
			// Long enough for the authority to answer (or refuse) the first
			// request of the authenticate loop.
			if !testutil.WaitUntil(15*time.Second, func() bool {
				return a.graph.Authenticated() || len(logs.Lines(`"msg":"no token from Graph's authority`)) > 0
			}) {
				t.Fatal("the authority neither issued a token nor refused one within 15s")
			}
			code, rd := r.readyz(t)
			if code != tc.code || rd.Role != "standby" || (tc.reason == "") != (len(rd.Reasons) == 0) ||
				(tc.reason != "" && !strings.Contains(strings.Join(rd.Reasons, "\n"), tc.reason)) {
				t.Errorf("/readyz = %d, role %q, reasons %q; want %d, standby, reason %q", code, rd.Role, rd.Reasons, tc.code, tc.reason)
			}
		})
	}
}

// TestStandbyPagesHost: a replica that stands by serves the status page,
// /readyz and /metrics under the same Host rule as the leader: loopback,
// IP literals and server.hostnames, any other name 421.
func TestStandbyPagesHost(t *testing.T) {
	dsn := pgtest.DB(t)
	other, err := leader.New(dsn, leader.Options{ID: "other", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	running := make(chan struct{})
	go func() { defer close(running); _ = other.Run(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-running; other.Close() })
	if !testutil.WaitUntil(15*time.Second, other.Leading) {
		t.Fatal("the other replica does not lead after 15s")
	}
	cfg := replicaConfig(t, dsn)
	cfg.Server.Hostnames = []string{"calpresence.ops.svc"}
	r := startReplica(t, cfg, "standby", &testutil.Feeds{}, newFakeGraph())
	if !testutil.WaitUntil(15*time.Second, func() bool { return r.role(t) == "standby" }) {
		t.Fatalf("/readyz role = %q; want standby", r.role(t))
	}
	for _, path := range []string{"/", "/readyz", "/metrics"} {
		for host, want := range map[string]int{"calpresence.ops.svc:8080": 200, "evil.example:8080": 421} {
			req, _ := http.NewRequest(http.MethodGet, "http://"+r.addr+path, nil)
			req.Host = host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("standby: GET %s as %s = %d; want %d", path, host, resp.StatusCode, want)
			}
		}
	}
}

// TestExclusiveOneOff: a one-off command (resync, clear with no daemon
// answering) on a database replicas share acts only while it holds the
// lead: alone, it runs and hands the lead back; beside a leader, it refuses
// and names it.
func TestExclusiveOneOff(t *testing.T) {
	dsn := pgtest.DB(t)
	cfg := replicaConfig(t, dsn)
	now := time.Now().Truncate(time.Second)
	feeds := twoFeeds(
		meeting("alice-1", now.Add(-time.Minute), now.Add(time.Hour)),
		meeting("bob-1", now.Add(2*time.Hour), now.Add(3*time.Hour)),
	)

	oneOff := func(g *fakeGraph) error {
		a, err := New(context.Background(), cfg, WithPresence(g), WithFetcher(feeds),
			WithElectorOptions(leader.Options{ID: "one-off"}))
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		return a.Exclusive(context.Background(), func(ctx context.Context, eng *engine.Engine) error {
			_, err := eng.Resync(ctx, engine.ResyncRequest{})
			return err
		})
	}

	alone := newFakeGraph()
	if err := oneOff(alone); err != nil {
		t.Fatalf("resync with no replica running: %v", err)
	}
	if n := count(alone.Calls(), "set", aliceID); n != 1 {
		t.Errorf("resync with no replica running set alice %d times (calls %v); want once", n, alone.Calls())
	}

	// The lead was handed back: a replica starting now leads.
	g := newFakeGraph()
	r := startReplica(t, cfg, "replica-a", feeds, g)
	if !testutil.WaitUntil(20*time.Second, func() bool { return r.role(t) == "leader" }) {
		t.Fatal("replica-a did not lead within 20 s")
	}
	beside := newFakeGraph()
	err := oneOff(beside)
	if err == nil || !strings.Contains(err.Error(), "replica-a leads") {
		t.Errorf("resync beside a leader: %v; want a refusal naming replica-a", err)
	}
	if calls := beside.Calls(); len(calls) != 0 {
		t.Errorf("the refused one-off called Graph: %v", calls)
	}
}
