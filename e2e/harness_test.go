package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/app"
	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph"
	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/engine"
)

// source is the name of the one feed every test configures.
const source = "zoom"

// event is one VEVENT of a generated feed.
type event struct {
	UID        string
	Start, End time.Time
}

// ics builds a feed of events. ICS times have whole seconds: callers pass
// truncated times.
func ics(events ...event) string {
	var b strings.Builder
	b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//calpresence e2e//EN\r\n")
	for _, e := range events {
		fmt.Fprintf(&b, "BEGIN:VEVENT\r\nUID:%s\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:%s\r\nDTEND:%s\r\nSUMMARY:Zoom %s\r\nEND:VEVENT\r\n",
			e.UID, e.Start.UTC().Format("20060102T150405Z"), e.End.UTC().Format("20060102T150405Z"), e.UID)
	}
	b.WriteString("END:VCALENDAR\r\n")
	return b.String()
}

// soon is a whole second at least d from now: a boundary the engine has
// time to schedule.
func soon(d time.Duration) time.Time {
	return time.Now().Add(d + time.Second).Truncate(time.Second)
}

// userID is the object id (a GUID, which the engine's directory takes as
// is, without a lookup) of the i-th generated user.
func userID(i int) string {
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
}

// userIDs returns the object ids of n generated users.
func userIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = userID(i + 1)
	}
	return ids
}

// directory returns graphtest users for ids, with UPNs user<i>@contoso.com.
func directory(ids ...string) []graphtest.User {
	out := make([]graphtest.User, len(ids))
	for i, id := range ids {
		upn := fmt.Sprintf("user%d@contoso.com", i+1)
		out[i] = graphtest.User{ID: id, UserPrincipalName: upn, Mail: upn}
	}
	return out
}

// options shape an env.
type options struct {
	users       []string // the source's fixed users
	more        []extraSource
	concurrency int // graph.max_concurrency (default 4)
	timeout     time.Duration
	rateLimit   int
	rateWindow  time.Duration
	bolt        bool           // state on bbolt (bolt.Open) instead of engine.Store
	graphOpts   []graph.Option // e.g. graph.WithRetry
	edit        func(*config.Config)
	quiet       bool // log at warn level (benchmarks)
}

// extraSource is a further source with its own fixed users and feed.
type extraSource struct {
	name  string
	users []string
	body  string
}

// env is a running daemon (app) wired to a graphtest server.
type env struct {
	tb     testing.TB
	g      *graphtest.Server
	cfg    *config.Config
	client *graph.Client
	store  engine.Store
	feeds  *testutil.Feeds
	logs   *testutil.LogBuffer
	app    *app.App
	eng    *engine.Engine

	cancel context.CancelFunc
	done   chan error
}

// newConfig is a valid configuration for g: one source with the given
// fixed users, polled every second.
func newConfig(tb testing.TB, g *graphtest.Server, o options) *config.Config {
	tb.Helper()
	cfg := config.Default()
	gc := g.Config()
	cfg.Graph.TenantID, cfg.Graph.ClientID, cfg.Graph.ClientSecret = gc.TenantID, gc.ClientID, gc.ClientSecret
	cfg.Graph.Endpoint, cfg.Graph.AuthorityHost, cfg.Graph.CAFile = gc.Endpoint, gc.AuthorityHost, gc.CAFile
	cfg.Graph.Timeout = 5 * time.Second
	if o.timeout > 0 {
		cfg.Graph.Timeout = o.timeout
	}
	if o.concurrency > 0 {
		cfg.Graph.MaxConcurrency = o.concurrency
	}
	if o.rateLimit > 0 {
		cfg.Graph.RateLimit, cfg.Graph.RateWindow = o.rateLimit, o.rateWindow
	}
	cfg.Schedule.PollInterval = time.Second
	cfg.State.Path = filepath.Join(tb.TempDir(), "state.db")
	cfg.Server.Listen = ""
	cfg.Sources = []config.Source{{Name: source, URL: "https://feeds.example.test/zoom.ics?token=t", Users: o.users, PollInterval: time.Second}}
	for _, x := range o.more {
		cfg.Sources = append(cfg.Sources, config.Source{Name: x.name, URL: "https://feeds.example.test/" + x.name + ".ics", Users: x.users, PollInterval: time.Second})
	}
	if o.edit != nil {
		o.edit(cfg)
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("config: %v", err)
	}
	return cfg
}

// newClient builds the real Graph client for cfg, paced as the daemon's is.
func newClient(tb testing.TB, cfg *config.Config, logger *slog.Logger, opts ...graph.Option) *graph.Client {
	tb.Helper()
	opts = append([]graph.Option{graph.WithPacer(policy.NewPacer(policy.WriteRate(cfg.Graph)))}, opts...)
	c, err := graph.New(context.Background(), cfg.Graph, logger, opts...)
	if err != nil {
		tb.Fatalf("graph.New: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// start runs an engine for g with the feed body. client may be nil (a new
// one is built); benchmarks pass a warm one.
func start(tb testing.TB, g *graphtest.Server, body string, client *graph.Client, o options) *env {
	tb.Helper()
	e := &env{tb: tb, g: g, feeds: &testutil.Feeds{}, logs: &testutil.LogBuffer{}}
	e.cfg = newConfig(tb, g, o)
	level := slog.LevelDebug
	if o.quiet {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: level}))
	if client == nil {
		client = newClient(tb, e.cfg, logger, o.graphOpts...)
	}
	e.client = client
	e.feeds.Set(source, []byte(body))
	for _, x := range o.more {
		e.feeds.Set(x.name, []byte(x.body))
	}
	// The daemon as `calpresence run` builds it, with the feeds and the
	// Graph client injected; without server.listen it serves nothing.
	opts := []app.Option{app.WithLogger(logger), app.WithGraph(client), app.WithFetcher(e.feeds), app.WithRegistry(prometheus.NewRegistry())}
	if !o.bolt {
		opts = append(opts, app.WithMemoryState())
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, e.cfg, opts...)
	if err != nil {
		cancel()
		tb.Fatalf("app.New: %v", err)
	}
	tb.Cleanup(func() { a.Close() })
	if err := a.Start(ctx); err != nil {
		cancel()
		tb.Fatalf("Start: %v", err)
	}
	e.app, e.eng, e.store = a, a.Engine(), a.Store()
	e.cancel, e.done = cancel, make(chan error, 1)
	go func() { e.done <- a.Wait() }()
	tb.Cleanup(func() {
		e.stop()
		if (tb.Failed() || os.Getenv("E2E_LOGS") != "") && !o.quiet {
			tb.Logf("engine logs:\n%s", e.logs.String())
		}
	})
	return e
}

// stop ends Run and waits for it.
func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		if err != nil {
			e.tb.Errorf("Run = %v; want nil", err)
		}
	case <-time.After(30 * time.Second):
		e.tb.Errorf("Run did not return within 30s of cancel")
	}
}

// waitFor waits until the fake has recorded a call matching pred.
func (e *env) waitFor(what string, within time.Duration, pred func(graphtest.Call) bool) graphtest.Call {
	e.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	c, err := e.g.WaitFor(ctx, pred)
	if err != nil {
		e.tb.Fatalf("waiting %v for %s: %v; calls:\n%s", within, what, err, callList(e.g.Calls()))
	}
	return c
}

// eventually polls cond until it holds or within has passed. Conditions
// that read the fake (Calls, CallsFor) must use it, not WaitFor, whose
// predicate runs under the fake's lock.
func (e *env) eventually(what string, within time.Duration, cond func() bool) {
	e.tb.Helper()
	if !testutil.WaitUntil(within, cond) {
		e.tb.Fatalf("waited %v for %s; calls:\n%s", within, what, callList(e.g.Calls()))
	}
}

// waitCleared waits until every user has been sent a successful
// clearPresence after a successful setPresence.
func (e *env) waitCleared(users []string, within time.Duration) {
	e.tb.Helper()
	for _, u := range users {
		e.waitFor("clearPresence 200 for "+u, within, func(c graphtest.Call) bool {
			return c.Op == graphtest.OpClearPresence && strings.EqualFold(c.User, u) && c.Status == 200
		})
	}
}

// countCalls counts the recorded calls of op (any when empty) for user
// (any when empty) with status (any when 0).
func countCalls(g *graphtest.Server, op, user string, status int) int {
	n := 0
	for _, c := range g.Calls() {
		if (op == "" || c.Op == op) && (user == "" || strings.EqualFold(c.User, user)) && (status == 0 || c.Status == status) {
			n++
		}
	}
	return n
}

// presenceOps is the user's presence calls as "op status" strings, oldest
// first, with faults marked: "setPresence 200", "clearPresence 429 status".
func presenceOps(g *graphtest.Server, user string) []string {
	var out []string
	for _, c := range g.CallsFor(user) {
		if c.Op != graphtest.OpSetPresence && c.Op != graphtest.OpClearPresence {
			continue
		}
		s := fmt.Sprintf("%s %d", c.Op, c.Status)
		if c.Fault != "" {
			s += " " + c.Fault
		}
		out = append(out, s)
	}
	return out
}

func callList(calls []graphtest.Call) string {
	var b strings.Builder
	for _, c := range calls {
		fmt.Fprintf(&b, "  %s %s %s %d %s %s\n", c.Time.Format("15:04:05.000"), c.Op, c.User, c.Status, c.Fault, c.ExpirationDuration)
	}
	return b.String()
}

// checkSetThenCleared checks, in the fake's record, that the user's
// successful presence calls come in order — set, then clear, as many times
// as there were spans (a set repeated after a timeout counts once) — and
// that the fake holds no session for the user at the end: nothing was
// dropped.
func checkSetThenCleared(t testing.TB, g *graphtest.Server, user string, spans int) {
	t.Helper()
	ops := presenceOps(g, user)
	var ok, tried []string
	for _, op := range ops {
		name, _, _ := strings.Cut(op, " ")
		if len(tried) == 0 || tried[len(tried)-1] != name {
			tried = append(tried, name)
		}
		if strings.HasSuffix(op, " 200") && (len(ok) == 0 || ok[len(ok)-1] != name) {
			ok = append(ok, name)
		}
	}
	var want []string
	for range spans {
		want = append(want, graphtest.OpSetPresence, graphtest.OpClearPresence)
	}
	if !slices.Equal(ok, want) {
		t.Errorf("%s: successful presence calls = %v; want %v (all calls: %v)", user, ok, want, ops)
	}
	if !slices.Equal(tried, want) {
		t.Errorf("%s: presence calls in the order %v; want %v (all calls: %v)", user, tried, want, ops)
	}
	if s, live := g.Session(user); live {
		t.Errorf("%s: fake still holds a session %+v; want it cleared", user, s)
	}
}

// attempts returns the times the fake received op for user.
func attempts(g *graphtest.Server, op, user string) []time.Time {
	var out []time.Time
	for _, c := range g.CallsFor(user) {
		if c.Op == op {
			out = append(out, c.Time)
		}
	}
	return out
}

// waitNoSessionsRecorded waits until the engine's store holds no session:
// nothing pending, nothing left to clear. Usually the record goes just
// after the clear is answered; a clear the fake answered too late for the
// client (a busy machine) is retried after its back-off first.
func waitNoSessionsRecorded(t testing.TB, e *env) {
	t.Helper()
	var (
		s   map[string]state.Session
		err error
	)
	if !testutil.WaitUntil(10*time.Second, func() bool {
		s, err = e.store.Sessions(t.Context())
		return err != nil || len(s) == 0
	}) {
		t.Errorf("recorded sessions at the end = %+v; want none", s)
	}
	if err != nil {
		t.Fatal(err)
	}
}
