package e2e

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph"
	"github.com/calpresence/calpresence/graph/graphtest"
)

// Graph faults, against a fault-injecting fake. Each test runs one short
// meeting (or two) in real time and checks the fake's sessions at the end.

// retryAfter is a Retry-After header.
func retryAfter(v string) http.Header { return http.Header{"Retry-After": {v}} }

// gapsAtLeast checks that consecutive times are at least d apart.
func gapsAtLeast(t *testing.T, what string, times []time.Time, d time.Duration) {
	t.Helper()
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < d {
			t.Errorf("%s: attempt %d came %v after attempt %d; want at least %v", what, i+1, gap, i, d)
		}
	}
}

// TestFault429RetryAfterSeconds: a throttled set and a throttled clear with
// Retry-After in seconds (within the client's retry policy) are retried by
// the client after exactly that wait, once each.
func TestFault429RetryAfterSeconds(t *testing.T) {
	t.Parallel()
	id := userID(1)
	g := graphtest.NewServer(t)
	g.FailNext(graphtest.OpSetPresence, 1, http.StatusTooManyRequests, "1")
	g.FailNext(graphtest.OpClearPresence, 1, http.StatusTooManyRequests, "1")
	begin := soon(2 * time.Second)
	end := begin.Add(3 * time.Second)
	e := start(t, g, ics(event{"m1", begin, end}), nil, options{users: []string{id}})

	e.waitCleared([]string{id}, time.Until(end)+5*time.Second)
	want := []string{"setPresence 429 status", "setPresence 200", "clearPresence 429 status", "clearPresence 200"}
	if got := presenceOps(g, id); !slices.Equal(got, want) {
		t.Errorf("presence calls = %v; want %v", got, want)
	}
	gapsAtLeast(t, "setPresence", attempts(g, graphtest.OpSetPresence, id), time.Second)
	gapsAtLeast(t, "clearPresence", attempts(g, graphtest.OpClearPresence, id), time.Second)
	checkSetThenCleared(t, g, id, 1)
	waitNoSessionsRecorded(t, e)
}

// TestFault429RetryAfterDate: Retry-After as an HTTP date (RFC 9110
// §10.2.3) is honoured: the retry is not sent before that date.
func TestFault429RetryAfterDate(t *testing.T) {
	t.Parallel()
	id := userID(1)
	g := graphtest.NewServer(t)
	begin := soon(2 * time.Second)
	end := begin.Add(4 * time.Second)
	setAt, clearAt := begin.Add(2*time.Second), end.Add(2*time.Second)
	g.Inject(graphtest.Fault{Op: graphtest.OpSetPresence, Status: http.StatusTooManyRequests,
		Header: retryAfter(setAt.UTC().Format(http.TimeFormat))})
	g.Inject(graphtest.Fault{Op: graphtest.OpClearPresence, Status: http.StatusTooManyRequests,
		Header: retryAfter(clearAt.UTC().Format(http.TimeFormat))})
	e := start(t, g, ics(event{"m1", begin, end}), nil, options{users: []string{id}})

	e.waitCleared([]string{id}, time.Until(clearAt)+5*time.Second)
	want := []string{"setPresence 429 status", "setPresence 200", "clearPresence 429 status", "clearPresence 200"}
	if got := presenceOps(g, id); !slices.Equal(got, want) {
		t.Errorf("presence calls = %v; want %v", got, want)
	}
	for _, c := range []struct {
		op   string
		date time.Time
	}{{graphtest.OpSetPresence, setAt}, {graphtest.OpClearPresence, clearAt}} {
		at := attempts(g, c.op, id)
		if len(at) != 2 {
			continue // reported above
		}
		// An HTTP date has whole seconds: allow a little early for the
		// clock reading in parseRetryAfter, none for a retry before it.
		if early := c.date.Sub(at[1]); early > 50*time.Millisecond {
			t.Errorf("%s retried %v before its Retry-After date", c.op, early)
		}
		if late := at[1].Sub(c.date); late > time.Second {
			t.Errorf("%s retried %v after its Retry-After date; want within 1s", c.op, late)
		}
	}
	checkSetThenCleared(t, g, id, 1)
	waitNoSessionsRecorded(t, e)
}

// TestFaultLongRetryAfterIsRescheduled: a Retry-After longer than the
// client waits itself (here 1 s) comes back to the engine as Kind Retry
// with RetryAfter, and the engine holds the user that long and tries again
// — one request per attempt, no hot loop — until the call goes through.
func TestFaultLongRetryAfterIsRescheduled(t *testing.T) {
	t.Parallel()
	id := userID(1)
	g := graphtest.NewServer(t)
	begin := soon(2 * time.Second)
	end := begin.Add(4 * time.Second)
	setAt := begin.Add(3 * time.Second)
	g.Inject(graphtest.Fault{Op: graphtest.OpSetPresence, Status: http.StatusTooManyRequests,
		Header: retryAfter(setAt.UTC().Format(http.TimeFormat))})
	g.Inject(graphtest.Fault{Op: graphtest.OpClearPresence, Times: 2, Status: http.StatusTooManyRequests,
		Header: retryAfter("2")})
	e := start(t, g, ics(event{"m1", begin, end}), nil, options{users: []string{id},
		graphOpts: []graph.Option{graph.WithRetry(3, 100*time.Millisecond, time.Second)}})

	e.waitCleared([]string{id}, time.Until(end)+8*time.Second)
	want := []string{"setPresence 429 status", "setPresence 200",
		"clearPresence 429 status", "clearPresence 429 status", "clearPresence 200"}
	if got := presenceOps(g, id); !slices.Equal(got, want) {
		t.Errorf("presence calls = %v; want %v", got, want)
	}
	if at := attempts(g, graphtest.OpSetPresence, id); len(at) == 2 && at[1].Before(setAt.Add(-50*time.Millisecond)) {
		t.Errorf("setPresence retried at %v; want not before the Retry-After date %v", at[1], setAt)
	}
	gapsAtLeast(t, "clearPresence", attempts(g, graphtest.OpClearPresence, id), 2*time.Second)
	if n := len(e.logs.Lines("graph call failed; will retry", id, "HTTP 429")); n != 3 {
		t.Errorf("engine logged %d throttled calls; want 3", n)
	}
	checkSetThenCleared(t, g, id, 1)
	waitNoSessionsRecorded(t, e)
}

// TestFault503And504: unavailable answers without Retry-After are retried
// with backoff, by the client and, past its retries, by the engine.
func TestFault503And504(t *testing.T) {
	t.Parallel()
	id := userID(1)
	g := graphtest.NewServer(t)
	g.FailNext(graphtest.OpSetPresence, 2, http.StatusServiceUnavailable, "")
	// Four 504s: more than the client's one retry, so the engine retries too.
	g.FailNext(graphtest.OpClearPresence, 4, http.StatusGatewayTimeout, "")
	begin := soon(2 * time.Second)
	end := begin.Add(3 * time.Second)
	e := start(t, g, ics(event{"m1", begin, end}), nil, options{users: []string{id},
		graphOpts: []graph.Option{graph.WithRetry(1, 100*time.Millisecond, time.Second)}})

	e.waitCleared([]string{id}, time.Until(end)+8*time.Second)
	want := []string{"setPresence 503 status", "setPresence 503 status", "setPresence 200",
		"clearPresence 504 status", "clearPresence 504 status", "clearPresence 504 status", "clearPresence 504 status", "clearPresence 200"}
	if got := presenceOps(g, id); !slices.Equal(got, want) {
		t.Errorf("presence calls = %v; want %v", got, want)
	}
	checkSetThenCleared(t, g, id, 1)
	waitNoSessionsRecorded(t, e)
}

// TestFaultConnectionReset: a connection reset mid-call (no answer: the
// call may or may not have reached Graph) is retried by the engine.
func TestFaultConnectionReset(t *testing.T) {
	t.Parallel()
	id := userID(1)
	g := graphtest.NewServer(t)
	g.Inject(graphtest.Fault{Op: graphtest.OpSetPresence, Reset: true})
	g.Inject(graphtest.Fault{Op: graphtest.OpClearPresence, Reset: true})
	begin := soon(2 * time.Second)
	end := begin.Add(3 * time.Second)
	e := start(t, g, ics(event{"m1", begin, end}), nil, options{users: []string{id}})

	e.waitCleared([]string{id}, time.Until(end)+5*time.Second)
	want := []string{"setPresence 0 reset", "setPresence 200", "clearPresence 0 reset", "clearPresence 200"}
	if got := presenceOps(g, id); !slices.Equal(got, want) {
		t.Errorf("presence calls = %v; want %v", got, want)
	}
	checkSetThenCleared(t, g, id, 1)
	waitNoSessionsRecorded(t, e)
}

// TestFaultSlowerThanTimeout: answers slower than graph.timeout fail the
// attempt as a timeout, and the engine tries again until Graph answers in
// time. (The fake still applies a timed-out call, as Graph may: the engine
// must not mind a set it sends twice.)
func TestFaultSlowerThanTimeout(t *testing.T) {
	t.Parallel()
	id := userID(1)
	g := graphtest.NewServer(t, graphtest.WithUsers(directory(id)...))
	o := options{users: []string{id}, timeout: 300 * time.Millisecond}
	// Get a token before the latency, which applies to Entra too.
	client := newClient(t, newConfig(t, g, o), nil)
	if _, err := client.ResolveUser(context.Background(), "user1@contoso.com"); err != nil {
		t.Fatalf("warm-up lookup: %v", err)
	}
	g.SetLatency(700 * time.Millisecond)
	// Long enough for the engine's backoff after two failures (up to 3 s).
	begin := soon(2 * time.Second)
	end := begin.Add(6 * time.Second)
	e := start(t, g, ics(event{"m1", begin, end}), client, o)

	// Two timed-out attempts, then Graph is fast again.
	e.eventually("two slow setPresence attempts", time.Until(begin)+10*time.Second, func() bool {
		return countCalls(g, graphtest.OpSetPresence, id, 0) >= 2
	})
	g.SetLatency(0)

	e.waitCleared([]string{id}, time.Until(end)+5*time.Second)
	if n := countCalls(g, graphtest.OpSetPresence, id, 0); n < 3 {
		t.Errorf("setPresence attempts = %d; want at least 3 (two timed out)", n)
	}
	if n := len(e.logs.Lines("graph call failed; will retry", id, "timeout")); n < 2 {
		t.Errorf("engine logged %d timed-out calls; want at least 2", n)
	}
	checkSetThenCleared(t, g, id, 1)
	waitNoSessionsRecorded(t, e)
}

// TestFault401TokenRevoked: after the token is revoked, the next call is
// answered 401; the client gets a new token once and the call goes through.
func TestFault401TokenRevoked(t *testing.T) {
	t.Parallel()
	id := userID(1)
	g := graphtest.NewServer(t)
	begin := soon(2 * time.Second)
	end := begin.Add(3 * time.Second)
	// No read-back: the clear is to be the first call after the revocation
	// (a read-back would otherwise take the 401 and the new token).
	e := start(t, g, ics(event{"m1", begin, end}), nil, options{users: []string{id},
		edit: func(c *config.Config) { c.Graph.ReadbackInterval = 0 }})

	e.waitFor("setPresence 200", time.Until(begin)+5*time.Second, func(c graphtest.Call) bool {
		return c.Op == graphtest.OpSetPresence && c.Status == 200
	})
	if n := g.TokensIssued(); n != 1 {
		t.Fatalf("tokens issued before the revocation = %d; want 1", n)
	}
	g.RevokeTokens()

	e.waitCleared([]string{id}, time.Until(end)+5*time.Second)
	want := []string{"setPresence 200", "clearPresence 401", "clearPresence 200"}
	if got := presenceOps(g, id); !slices.Equal(got, want) {
		t.Errorf("presence calls = %v; want %v", got, want)
	}
	if n := g.TokensIssued(); n != 2 {
		t.Errorf("tokens issued = %d; want 2 (one refresh)", n)
	}
	checkSetThenCleared(t, g, id, 1)
	waitNoSessionsRecorded(t, e)
}

// TestFault400IsPermanent: a refused set (400) is reported with the user
// and Graph's reason and not retried for that span, even when polls and
// other users' boundaries reconcile again; other users are unaffected.
func TestFault400IsPermanent(t *testing.T) {
	t.Parallel()
	ids := userIDs(2)
	refused, fine := ids[0], ids[1]
	g := graphtest.NewServer(t)
	g.Inject(graphtest.Fault{Op: graphtest.OpSetPresence, User: refused, Status: http.StatusBadRequest,
		Body:        `{"error":{"code":"BadRequest","message":"Unsupported combination of availability and activity."}}`,
		ContentType: "application/json"})
	begin := soon(2 * time.Second)
	end := begin.Add(4 * time.Second)
	body := ics(event{"m1", begin, end})
	e := start(t, g, body, nil, options{users: ids})

	e.waitFor("setPresence 200 for the other user", time.Until(begin)+5*time.Second, func(c graphtest.Call) bool {
		return c.Op == graphtest.OpSetPresence && c.User == fine && c.Status == 200
	})
	// A feed change mid-span makes the engine reconcile again.
	e.feeds.Set(source, []byte(ics(event{"m1", begin, end}, event{"later", begin.Add(time.Hour), begin.Add(2 * time.Hour)})))
	e.waitCleared([]string{fine}, time.Until(end)+5*time.Second)
	time.Sleep(1500 * time.Millisecond) // more polls, no more calls

	if got, want := presenceOps(g, refused), []string{"setPresence 400 status"}; !slices.Equal(got, want) {
		t.Errorf("refused user's presence calls = %v; want %v (not retried)", got, want)
	}
	lines := e.logs.Lines("graph refused the call", `"user":"`+refused+`"`)
	if len(lines) != 1 {
		t.Errorf("engine reported the refusal %d times; want once:\n%s", len(lines), strings.Join(lines, "\n"))
	} else if !strings.Contains(lines[0], "HTTP 400") || !strings.Contains(lines[0], "Unsupported combination") {
		t.Errorf("refusal report = %s; want the status and Graph's message", lines[0])
	}
	if s, live := g.Session(refused); live {
		t.Errorf("refused user has a session %+v; want none", s)
	}
	checkSetThenCleared(t, g, fine, 1)
	waitNoSessionsRecorded(t, e)
}

// TestFaultUnknownUser: a configured user Entra does not know is looked up
// once (by UPN, then by mail/proxy address), reported once and skipped at
// every later boundary; the known user is served as usual.
func TestFaultUnknownUser(t *testing.T) {
	t.Parallel()
	id := userID(1)
	const ghost = "ghost@contoso.com"
	g := graphtest.NewServer(t, graphtest.WithUsers(directory(id)...))
	begin := soon(2 * time.Second)
	body := ics(event{"m1", begin, begin.Add(2 * time.Second)}, event{"m2", begin.Add(4 * time.Second), begin.Add(6 * time.Second)})
	e := start(t, g, body, nil, options{users: []string{"user1@contoso.com", ghost},
		edit: func(c *config.Config) { c.Presence.MergeGap = 0 }})

	e.eventually("the second clearPresence 200", time.Until(begin)+12*time.Second, func() bool {
		return countCalls(g, graphtest.OpClearPresence, id, 200) >= 2
	})
	if n := countCalls(g, graphtest.OpGetUser, ghost, 0); n != 1 {
		t.Errorf("GET /users/%s sent %d times; want 1", ghost, n)
	}
	if n := countCalls(g, graphtest.OpListUsers, ghost, 0); n != 1 {
		t.Errorf("mail/proxyAddresses lookups of %s = %d; want 1", ghost, n)
	}
	if n := countCalls(g, graphtest.OpGetUser, "user1@contoso.com", 0); n != 1 {
		t.Errorf("lookups of the known user = %d; want 1 (cached)", n)
	}
	if n := countCalls(g, "", ghost, 0); n != 2 {
		t.Errorf("calls about %s = %d; want the 2 lookups only", ghost, n)
	}
	if n := len(e.logs.Lines("address names no Entra user", ghost)); n != 1 {
		t.Errorf("unknown user reported %d times; want once", n)
	}
	checkSetThenCleared(t, g, id, 2)
	waitNoSessionsRecorded(t, e)
}

// TestFaultsNothingDropped: clears for several users fail in different ways
// at the same boundary; every one is eventually sent, after its set, and
// the fake ends with no session.
func TestFaultsNothingDropped(t *testing.T) {
	t.Parallel()
	ids := userIDs(6)
	g := graphtest.NewServer(t)
	begin := soon(2 * time.Second)
	end := begin.Add(3 * time.Second)
	clear := graphtest.OpClearPresence
	// Longer than the client waits (1 s): the engine reschedules.
	g.Inject(graphtest.Fault{Op: clear, User: ids[0], Times: 2, Status: 429, Header: retryAfter("2")})
	g.Inject(graphtest.Fault{Op: clear, User: ids[1], Times: 4, Status: 503})
	g.Inject(graphtest.Fault{Op: clear, User: ids[2], Times: 2, Reset: true})
	g.Inject(graphtest.Fault{Op: clear, User: ids[3], Status: 504, Header: retryAfter(end.Add(2 * time.Second).UTC().Format(http.TimeFormat))})
	g.Inject(graphtest.Fault{Op: graphtest.OpSetPresence, User: ids[4], Status: 429, Header: retryAfter("1")})
	g.Inject(graphtest.Fault{Op: clear, User: ids[4], Status: 503, Header: retryAfter("1")})
	// ids[5]: no fault.
	e := start(t, g, ics(event{"m1", begin, end}), nil, options{users: ids, bolt: true,
		graphOpts: []graph.Option{graph.WithRetry(1, 100*time.Millisecond, time.Second)}})

	e.waitCleared(ids, time.Until(end)+10*time.Second)
	for _, id := range ids {
		checkSetThenCleared(t, g, id, 1)
	}
	if n := countCalls(g, clear, "", 200); n != len(ids) {
		t.Errorf("successful clears = %d; want %d", n, len(ids))
	}
	if s := g.Sessions(); len(s) != 0 {
		t.Errorf("fake sessions at the end = %v; want none", s)
	}
	waitNoSessionsRecorded(t, e)
}

// TestBoundaryDuringSlowPass: a boundary that falls while a reconcile pass
// is still sending its calls is acted on when the pass ends.
//
// User a's meeting starts at T+2s and its setPresence takes 2 s to answer;
// user b's meeting ends at T+3s, during that pass. Before 56494a9 the
// engine scheduled the next wake after a pass from Reconcile's "next future
// boundary", which ignored boundaries already due, so b's clear waited for
// the next boundary of anyone (a's end, T+12s: 9 s late) — with no other
// boundary, until b's 5-minute lease ran out. The same happens whenever a
// pass outlasts the gap to the next boundary: a burst paced by the rate
// limit, Graph latency, or Retry-After waits inside the client.
func TestBoundaryDuringSlowPass(t *testing.T) {
	t.Parallel()
	ids := userIDs(2)
	a, b := ids[0], ids[1]
	g := graphtest.NewServer(t)
	t0 := soon(2 * time.Second)
	bEnd := t0.Add(3 * time.Second)
	g.Inject(graphtest.Fault{Op: graphtest.OpSetPresence, User: a, Delay: 2 * time.Second})
	e := start(t, g, ics(event{"a-long", t0.Add(2 * time.Second), t0.Add(12 * time.Second)}), nil, options{
		users: []string{a},
		more:  []extraSource{{name: "webex", users: []string{b}, body: ics(event{"b-short", t0, bEnd})}},
	})

	c := e.waitFor("clearPresence for b", time.Until(t0)+16*time.Second, func(c graphtest.Call) bool {
		return c.Op == graphtest.OpClearPresence && c.User == b && c.Status == http.StatusOK
	})
	// The pass that delays it ends at about T+4s: 1 s after b's end.
	if lag := c.Time.Sub(bEnd); lag > 2*time.Second {
		t.Errorf("b's clearPresence sent %v after b's meeting ended; want within 2s (the slow pass ends 1s after it)", lag.Round(time.Millisecond))
	}
}
