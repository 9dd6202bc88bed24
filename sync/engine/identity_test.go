package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/mailaddr"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/bolt"
	"github.com/calpresence/calpresence/state/mem"
	"github.com/calpresence/calpresence/sync/identity"
	"github.com/calpresence/calpresence/sync/plan"
)

const (
	frankID = "11111111-1111-1111-1111-111111111111"
	bobID   = "22222222-2222-2222-2222-222222222222"
	carolID = "33333333-3333-3333-3333-333333333333"
)

// tenant is a small Entra: Frank has an alias in proxyAddresses.
var tenant = map[string]presence.Person{
	"frank@contoso.com":       {ID: frankID, UPN: "frank@contoso.com"},
	"frank.jones@contoso.com": {ID: frankID, UPN: "frank@contoso.com"},
	"bob@contoso.com":         {ID: bobID, UPN: "bob@contoso.com"},
	"carol@contoso.com":       {ID: carolID, UPN: "carol@contoso.com"},
}

// TestSpansMergeOnePersonsSpellings: occurrences naming one person by UPN,
// alias, another letter case or object id, from different sources, make
// one timeline; every pair of spellings merges.
func TestSpansMergeOnePersonsSpellings(t *testing.T) {
	spellings := []string{"frank@contoso.com", "frank.jones@contoso.com", "Frank@Contoso.COM", frankID, strings.ToUpper(frankID)}
	for i, a := range spellings {
		for _, b := range spellings[i+1:] {
			t.Run(a+"+"+b, func(t *testing.T) {
				d := identity.New(&testutil.Presence{People: tenant}, mem.New(), time.Hour, 4, slog.New(slog.DiscardHandler), NewMetrics(nil).forIdentity())
				for _, addr := range []string{a, b} {
					d.Lookup(addr)
				}
				d.Resolve(context.Background(), d.Due(time.Now())) // the clock the directory met them by
				key := func(m *plan.Match) (string, bool) { return d.Lookup(m.User) }
				zoom := plan.Match{User: mailaddr.Normalize(a), Occ: occ("z", 0, 15*minute), Rule: &plan.Rule{Source: "zoom", Pair: conf}}
				google := plan.Match{User: mailaddr.Normalize(b), Occ: occ("g", 5*minute, 6*minute), Rule: &plan.Rule{Source: "google", Pair: inCall}}
				spans := plan.Spans([]plan.Match{zoom, google}, 2*minute, key)
				if len(spans) != 1 || len(spans[frankID]) != 1 {
					t.Fatalf("Spans(%s, %s) = %v; want one span for %s", a, b, spans, frankID)
				}
				s := spans[frankID][0]
				if !s.Start.Equal(t0) || !s.End.Equal(t0.Add(15*minute)) || s.Pair != conf || len(s.Events()) != 2 {
					t.Errorf("span = %+v; want 15:00-15:15 InAConferenceCall with both events", s)
				}
				if got := d.UPN(frankID); got != "frank@contoso.com" && !(a == frankID || a == strings.ToUpper(frankID)) {
					t.Errorf("upn(%s) = %q; want frank@contoso.com", frankID, got)
				}
			})
		}
	}
}

// twoSources is the setup: a Zoom feed for frank@contoso.com (his
// UPN) and a Google feed matched by attendees, inviting his alias.
func twoSources() *config.Config {
	cfg := testConfig()
	cfg.Sources = []config.Source{
		{Name: "zoom", URL: "https://example.test/zoom.ics", Users: []string{"frank@contoso.com"}, PollInterval: time.Minute},
		{Name: "google", URL: "https://example.test/google.ics", Match: config.MatchAttendees, Domains: []string{"contoso.com"}, PollInterval: time.Minute},
	}
	return cfg
}

// invite is a feed of one event from start lasting dur inviting attendees.
func invite(base time.Time, uid string, start, dur time.Duration, attendees ...string) string {
	body := ics(base, uid, start, dur)
	var att strings.Builder
	att.WriteString("SUMMARY:" + uid + "\r\nORGANIZER:mailto:someone@partner.example\r\n")
	for _, a := range attendees {
		att.WriteString("ATTENDEE;PARTSTAT=ACCEPTED:mailto:" + a + "\r\n")
	}
	return strings.Replace(body, "SUMMARY:"+uid+"\r\n", att.String(), 1)
}

func startTwoSources(t *testing.T, begin time.Time, zoom, google string, store *mem.Store, graph *testutil.Presence) *harness {
	h := &harness{t: t, feeds: &fakeFeeds{bodies: map[string]string{"zoom": zoom, "google": google}, errs: map[string]error{}},
		graph: graph, store: store, begin: begin, metrics: NewMetrics(nil)}
	if h.store == nil {
		h.store = mem.New()
	}
	h.start(twoSources())
	return h
}

// TestEngineOnePersonTwoAddresses is the scenario of the identity issue: a
// Google meeting naming Frank's alias starts inside his Zoom meeting, then
// is removed. Frank stays busy until the Zoom meeting ends: the Google
// meeting neither shortens his one Graph session nor clears it.
func TestEngineOnePersonTwoAddresses(t *testing.T) {
	tests := []struct {
		name    string
		zoomDur time.Duration
		want    []string
	}{
		// 15 minutes: one set for the whole Zoom span; the lease lapses
		// with it (no clear needed).
		{"fifteen minutes", 15 * time.Minute, []string{"10m0s set " + frankID + " InAConferenceCall 15m0s"}},
		// 3 minutes: Graph's minimum lease (5m) outlives it, so one clear
		// at its end, and only then.
		{"three minutes", 3 * time.Minute, []string{"10m0s set " + frankID + " InAConferenceCall 5m0s", "13m0s clear " + frankID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				begin := time.Now()
				graph := &testutil.Presence{Begin: begin, People: tenant}
				inner := tt.zoomDur / 3
				h := startTwoSources(t, begin, ics(begin, "zoom-1", 10*time.Minute, tt.zoomDur),
					invite(begin, "g-1", 10*time.Minute+inner, inner, "frank.jones@contoso.com"), nil, graph)
				h.until(10*time.Minute + inner + 30*time.Second) // inside both meetings
				h.feeds.set("google", ics(begin))                // the Google meeting is removed
				h.until(10*time.Minute + 2*inner)
				// Still in the Zoom meeting: still one session, for its span.
				if s, _ := h.store.Sessions(t.Context()); len(s) != 1 || !s[frankID].SpanEnd.Equal(begin.Add(10*time.Minute+tt.zoomDur)) {
					t.Errorf("sessions after the removal = %v; want Frank's, for the Zoom meeting", s)
				}
				h.until(time.Hour)
				h.stop()
				h.want(tt.want...)
				if !strings.Contains(h.logs.String(), `"msg":"addresses name one person; merged into one presence"`) {
					t.Errorf("the merge of frank@ and frank.jones@ was not reported:\n%s", h.logs.String())
				}
				if strings.Contains(h.logs.String(), `"level":"ERROR"`) {
					t.Errorf("a merge is not an error:\n%s", h.logs.String())
				}
			})
		})
	}
}

// TestEngineResolutionFailureWaitsOnlyForThatPerson: while Frank's alias
// cannot be looked up (throttled, then timing out), Frank waits; Bob, whose
// address resolves, is served at his boundary. Once the lookup succeeds,
// Frank is set at once, and no lookup runs at a boundary.
func TestEngineResolutionFailureWaitsOnlyForThatPerson(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		var failUntil = begin.Add(12 * time.Minute)
		graph := &testutil.Presence{Begin: begin, People: tenant, ResolveErr: func(a string) error {
			if a != "frank.jones@contoso.com" || !time.Now().Before(failUntil) {
				return nil
			}
			if time.Since(begin) < 5*time.Minute {
				return &presence.Error{Op: "resolveUser", User: a, Status: 429, Kind: presence.Retry, RetryAfter: 2 * time.Minute}
			}
			return &presence.Error{Op: "resolveUser", User: a, Kind: presence.Retry, Message: "timeout"}
		}}
		cfg := twoSources()
		cfg.Sources[0].Users = []string{"bob@contoso.com"}
		h := &harness{t: t, feeds: &fakeFeeds{bodies: map[string]string{
			"zoom":   ics(begin, "zoom-1", 10*time.Minute, 30*time.Minute),
			"google": invite(begin, "g-1", 10*time.Minute, 30*time.Minute, "frank.jones@contoso.com"),
		}, errs: map[string]error{}}, graph: graph, store: mem.New(), begin: begin, metrics: NewMetrics(nil)}
		h.start(cfg)
		h.until(11 * time.Minute)
		h.want("10m0s set " + bobID + " InAConferenceCall 30m0s")
		if got := h.eng.Unresolved(); len(got) != 1 || got[0].Address != "frank.jones@contoso.com" {
			t.Errorf("Unresolved() = %v; want frank.jones@contoso.com waiting", got)
		}
		h.until(time.Hour)
		h.stop()
		calls := graph.Calls()
		// The failures stop at 12m; the back-off then in force is at most
		// 5 minutes (backoff's cap).
		if len(calls) != 2 || calls[1].Op != "set" || calls[1].User != frankID || calls[1].At < 12*time.Minute || calls[1].At > 17*time.Minute {
			t.Errorf("Graph calls = %v; want Bob at 10m, then Frank once his alias resolved (12m..17m)", calls)
		}
		// Back-off, not a hot loop: 429 Retry-After 2m, then 1s, 2s, 4s …
		if n := graph.LookupsOf("frank.jones@contoso.com"); n < 3 || n > 15 {
			t.Errorf("alias looked up %d times in 12 minutes of failures; want a back-off (3..15)", n)
		}
	})
}

// TestEngineForgetsAnIDGraphNoLongerKnows: a person deleted and re-created
// gets a new object id; the set for the old one is answered 404, the
// directory looks their address up again, and the new id is set.
func TestEngineForgetsAnIDGraphNoLongerKnows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		const newID = "44444444-4444-4444-4444-444444444444"
		people := map[string]presence.Person{"frank@contoso.com": {ID: frankID, UPN: "frank@contoso.com"}}
		graph := &testutil.Presence{Begin: begin, People: people}
		store := mem.New()
		cfg := testConfig()
		cfg.Sources[0].Users = []string{"frank@contoso.com"}
		h := startHarness(t, cfg, ics(begin, "a", 10*time.Minute, 30*time.Minute), store, graph)
		h.until(5 * time.Minute) // resolved to frankID, kept in the store
		graph.Locked(func() {
			people["frank@contoso.com"] = presence.Person{ID: newID, UPN: "frank@contoso.com"}
			graph.Fail = func(op, user string) error {
				if user == frankID {
					return &presence.Error{Op: "setPresence", User: user, Status: 404, Kind: presence.NotFound}
				}
				return nil
			}
		})
		h.until(time.Hour)
		h.stop()
		h.want("10m0s set " + newID + " InAConferenceCall 30m0s")
		ids, _ := store.Identities(t.Context())
		if ids["frank@contoso.com"].ID != newID {
			t.Errorf("stored identity = %+v; want the new id", ids["frank@contoso.com"])
		}
	})
}

// TestEngineOnlyConfigured: with only_configured, an invitation can make
// busy only people the configuration names (by any of their addresses).
func TestEngineOnlyConfigured(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		graph := &testutil.Presence{Begin: begin, People: tenant}
		cfg := twoSources()
		cfg.Presence.OnlyConfigured = true
		h := &harness{t: t, feeds: &fakeFeeds{bodies: map[string]string{
			"zoom":   ics(begin),
			"google": invite(begin, "g-1", 10*time.Minute, 30*time.Minute, "frank.jones@contoso.com", "bob@contoso.com", "mallory@contoso.com"),
		}, errs: map[string]error{}}, graph: graph, store: mem.New(), begin: begin, metrics: NewMetrics(nil)}
		h.start(cfg)
		h.until(time.Hour)
		h.stop()
		// Frank is named (zoom's users: frank@contoso.com) and reached
		// through his alias; Bob and Mallory are not named.
		h.want("10m0s set " + frankID + " InAConferenceCall 30m0s")
	})
}

// TestEngineAdoptsASchema1StateFile starts the engine on the state file an
// earlier release wrote (sessions keyed by address; see state's migration
// test for its contents), seven minutes after midnight: Frank's two records
// are one session, re-set at once for his whole Zoom meeting (never
// cleared), Bob's uncertain set is repeated, and Carol's session, kept
// under her address, is adopted once her address resolves.
func TestEngineAdoptsASchema1StateFile(t *testing.T) {
	data, err := os.ReadFile("../../state/bolt/testdata/v1-sessions-by-address.db")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// The migration runs on opening (state's own test checks it); the
	// engine then runs on what the migrated file holds, copied into a
	// mem.Store: bbolt's batch timer and the engine's locks do not mix with
	// synctest's virtual time.
	migrated, err := bolt.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sessions, serr := migrated.Sessions(t.Context())
	ids, ierr := migrated.Identities(t.Context())
	migrated.Close()
	if serr != nil || ierr != nil {
		t.Fatal(serr, ierr)
	}
	st := mem.New()
	for _, s := range sessions {
		if err := st.PutSession(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	for addr, id := range ids {
		id.Address = addr
		if err := st.PutIdentities(t.Context(), []state.Identity{id}); err != nil {
			t.Fatal(err)
		}
	}
	synctest.Test(t, func(t *testing.T) {
		midnight := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
		if !time.Now().Equal(midnight) {
			t.Fatalf("synctest's clock starts at %v, not at the fixture's midnight", time.Now())
		}
		time.Sleep(7 * time.Minute)
		cfg := testConfig()
		cfg.Sources[0].Users = []string{"frank@contoso.com", "bob@contoso.com", "carol@contoso.com"}
		graph := &testutil.Presence{Begin: midnight, People: tenant}
		h := &harness{t: t, graph: graph, store: st, begin: midnight, metrics: NewMetrics(nil),
			feeds: &fakeFeeds{bodies: map[string]string{"zoom": ics(midnight, "zoom-1", time.Duration(0), 15*time.Minute)}, errs: map[string]error{}}}
		h.start(cfg)
		h.until(67 * time.Minute)
		h.stop()
		// Sent concurrently: compare sorted, to the minute.
		var got []string
		for _, c := range graph.Calls() {
			c.At, c.Expiration = c.At.Round(time.Minute), c.Expiration.Round(time.Minute)
			got = append(got, c.String())
		}
		slices.Sort(got)
		want := []string{
			"7m0s set " + frankID + " InAConferenceCall 8m0s", // extended: his lease was sized for the 6-minute Google meeting
			"7m0s set " + bobID + " InAConferenceCall 8m0s",   // uncertain: repeated
			"7m0s set " + carolID + " InAConferenceCall 8m0s", // adopted under her id
		}
		if !slices.Equal(got, want) {
			t.Errorf("Graph calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		sessions, _ := st.Sessions(t.Context())
		if len(sessions) != 0 {
			t.Errorf("sessions after the meeting = %v; want none (every lease lapsed with its span)", sessions)
		}
	})
}

// TestEngineKeepsSpansUntilSomethingChanges: a boundary's reconcile does not
// rebuild every person's spans; a feed change or a new identity does.
func TestEngineKeepsSpansUntilSomethingChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		graph := &testutil.Presence{Begin: begin, People: tenant}
		h := startTwoSources(t, begin, ics(begin, "zoom-1", 10*time.Minute, 30*time.Minute),
			invite(begin, "g-1", time.Hour, 30*time.Minute, "frank.jones@contoso.com"), nil, graph)
		h.until(time.Minute)
		ptr := func() uintptr {
			in, err := h.eng.input(t.Context(), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			return reflect.ValueOf(in.Spans).Pointer()
		}
		first := ptr()
		h.until(20 * time.Minute) // a boundary (10m) and many polls, nothing changed
		if ptr() != first {
			t.Error("spans were rebuilt with no feed or identity change")
		}
		h.feeds.set("google", ics(begin))
		h.until(22 * time.Minute)
		if ptr() == first {
			t.Error("spans were not rebuilt after a feed changed")
		}
		h.stop()
	})
}

// TestEngineUnknownAddressBacksOff: an address Entra does not know (a
// partner's, say) that a daily meeting names is looked up with back-off (as
// long again as it has been unknown: 1h, 1h, 2h, 4h … at most a day apart),
// not every hour for ever; reported once per refresh; and looked up again
// at once when the feed changes, but not for a new DTSTAMP alone.
func TestEngineUnknownAddressBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		const ghost = "ghost@contoso.com"
		var (
			mu      sync.Mutex
			lookups []time.Duration
		)
		graph := &testutil.Presence{Begin: begin, People: tenant, ResolveErr: func(a string) error {
			if a != ghost {
				return nil
			}
			mu.Lock()
			lookups = append(lookups, time.Since(begin).Round(time.Minute))
			mu.Unlock()
			return &presence.Error{Op: "resolveUser", User: a, Status: 404, Kind: presence.NotFound}
		}}
		daily := func(summary, stamp string) string {
			body := invite(begin, "standup", 10*time.Hour, 15*time.Minute, "bob@contoso.com", ghost)
			body = strings.Replace(body, "SUMMARY:standup", "SUMMARY:"+summary+"\r\nRRULE:FREQ=DAILY", 1)
			return strings.Replace(body, "DTSTAMP:20000101T000000Z", "DTSTAMP:"+stamp, 1)
		}
		cfg := twoSources()
		h := &harness{t: t, feeds: &fakeFeeds{bodies: map[string]string{
			"zoom": ics(begin), "google": daily("standup", "20000101T000000Z"),
		}, errs: map[string]error{}}, graph: graph, store: mem.New(), begin: begin, metrics: NewMetrics(nil)}
		h.start(cfg)
		got := func() []time.Duration {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(lookups)
		}

		h.until(72*time.Hour + 30*time.Minute)
		want := []time.Duration{0, time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 16 * time.Hour, 32 * time.Hour, 56 * time.Hour}
		if !slices.Equal(got(), want) {
			t.Errorf("lookups of %s in 72h = %v; want %v", ghost, got(), want)
		}
		// Once per refresh (24h): at 0, 32h, 56h.
		if n := strings.Count(h.logs.String(), "address names no Entra user"); n != 3 {
			t.Errorf("unknown address reported %d times in 72h; want 3", n)
		}

		// A new DTSTAMP alone (servers stamp every download) is no change.
		h.feeds.set("google", daily("standup", "20000104T000000Z"))
		h.until(73 * time.Hour)
		if n := len(got()); n != len(want) {
			t.Errorf("lookups after a new DTSTAMP = %v; want none more", got()[len(want):])
		}
		// The meeting changed: looked up again within the poll.
		h.feeds.set("google", daily("standup (moved room)", "20000104T000000Z"))
		h.until(73*time.Hour + 2*time.Minute)
		if g := got(); len(g) != len(want)+1 || g[len(g)-1] < 73*time.Hour {
			t.Errorf("lookups after the feed changed = %v; want one more at 73h", g)
		}
		// And the back-off goes on from there: a day after the change.
		h.until(96*time.Hour + 30*time.Minute)
		if g := got(); len(g) != len(want)+1 {
			t.Errorf("lookups by 96h = %v; want none after the change's before a day has passed", g)
		}
		h.until(97*time.Hour + 30*time.Minute)
		if g := got(); len(g) != len(want)+2 {
			t.Errorf("lookups by 97h30m = %v; want one a day after the change's", g)
		}
		h.stop()
	})
}

// TestEngineSummarisesUnresolved: /readyz counts the addresses that name
// nobody and names the first few by address, not all of them; the status
// page lists more, but not without bound either.
func TestEngineSummarisesUnresolved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		graph := &testutil.Presence{Begin: begin, ResolveErr: func(a string) error {
			if strings.HasPrefix(a, "ghost-") {
				return &presence.Error{Op: "resolveUser", User: a, Status: 404, Kind: presence.NotFound}
			}
			return nil
		}}
		const ghosts = MaxUnresolved + 50
		cfg := testConfig()
		var want []string
		for i := range ghosts {
			a := fmt.Sprintf("ghost-%03d@contoso.com", ghosts-1-i) // configured in reverse
			cfg.Sources[0].Users = append(cfg.Sources[0].Users, a)
			want = append(want, a)
		}
		slices.Sort(want)
		h := startHarness(t, cfg, ics(begin, "m", 10*time.Minute, 30*time.Minute), nil, graph)
		h.until(time.Minute)
		r := h.eng.Readiness(true)
		st := h.eng.Status(t.Context(), time.Now())
		h.stop()

		if r.Unresolved == nil || r.Unresolved.Count != ghosts || len(r.Unresolved.First) != identity.UnresolvedShown {
			t.Fatalf("Readiness().Unresolved = %+v; want %d counted, the first %d named", r.Unresolved, ghosts, identity.UnresolvedShown)
		}
		for i, u := range r.Unresolved.First {
			if u.Address != want[i] || u.Reason != "unknown" {
				t.Errorf("Readiness().Unresolved.First[%d] = %+v; want %s unknown", i, u, want[i])
			}
		}
		if !slices.Contains(r.Degraded, fmt.Sprintf("%d calendar addresses name no Entra user", ghosts)) {
			t.Errorf("Readiness().Degraded = %q; want the count of unresolved addresses", r.Degraded)
		}
		body, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(body), fmt.Sprintf(`"unresolved_addresses":{"count":%d,"first":[{"address":"ghost-000@contoso.com","reason":"unknown"},`, ghosts)) {
			t.Errorf("/readyz JSON = %s; want unresolved_addresses as a count and the first few", body)
		}
		if len(body) > 2048 {
			t.Errorf("/readyz JSON is %d bytes with %d unresolved addresses; want a summary under 2 KB", len(body), ghosts)
		}

		if st.UnresolvedCount != ghosts || len(st.Unresolved) != MaxUnresolved || st.Unresolved[0].Address != want[0] ||
			st.Unresolved[MaxUnresolved-1].Address != want[MaxUnresolved-1] {
			t.Errorf("Status(): %d of %d unresolved listed, from %v; want the first %d of %d by address",
				len(st.Unresolved), st.UnresolvedCount, st.Unresolved[:1], MaxUnresolved, ghosts)
		}
	})
}
