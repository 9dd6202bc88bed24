// Package storetest is the contract every state.Store keeps: the bbolt
// file (state/bolt) and PostgreSQL (state/pg) run the same suite, so that
// sync sees one behaviour whichever is configured.
//
// Run checks each method's behaviour as sync relies on it: round trips of
// every field, what a Put replaces and what a Delete of nothing does, batch
// writes that are all or nothing (and where a key repeats, the last one
// wins), many records at once, durability across Close and a new Open, and
// concurrent use (run it with -race).
package storetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/calpresence/calpresence/internal/mailaddr"
	"github.com/calpresence/calpresence/state"
)

// Run runs the contract suite, each check in a subtest of its own.
//
// open returns a Store on the storage of the (sub)test t: empty at the
// first call for a t, and the same storage again at a later call for the
// same t once the Store before it is closed (the durability check reopens
// it so). PerTest helps write it. Run closes every Store it opens.
func Run(t *testing.T, open func(t *testing.T) state.Store) {
	checks := []struct {
		name string
		fn   func(t *testing.T, open func(t *testing.T) state.Store)
	}{
		{"Sessions", testSessions},
		{"PutSessions", testPutSessions},
		{"Identities", testIdentities},
		{"DeleteIdentities", testDeleteIdentities},
		{"Feeds", testFeeds},
		{"PutFeeds", testPutFeeds},
		{"FeedHeads", testFeedHeads},
		{"DeleteFeedsExcept", testDeleteFeedsExcept},
		{"Signals", testSignals},
		{"QueuedSignals", testQueuedSignals},
		{"Pauses", testPauses},
		{"OwnCalls", testOwnCalls},
		{"OwnFeeds", testOwnFeeds},
		{"OddKeys", testOddKeys},
		{"Many", testMany},
		{"Durable", testDurable},
		{"Concurrent", testConcurrent},
		{"Ping", testPing},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) { c.fn(t, open) })
	}
}

// PerTest returns a function that calls create once per test and then
// hands out what it made for that test again: the storage (a file path, a
// database's DSN) an open function for Run reopens.
func PerTest[T any](create func(t *testing.T) T) func(t *testing.T) T {
	var (
		mu   sync.Mutex
		made = map[*testing.T]T{}
	)
	return func(t *testing.T) T {
		mu.Lock()
		defer mu.Unlock()
		v, ok := made[t]
		if !ok {
			v = create(t)
			made[t] = v
		}
		return v
	}
}

// closeOnce makes Close idempotent, so that the suite can close a Store
// itself and still have the cleanup close every Store it opened.
type closeOnce struct {
	state.Store
	once sync.Once
	err  error
}

func (s *closeOnce) Close() error {
	s.once.Do(func() { s.err = s.Store.Close() })
	return s.err
}

func openStore(t *testing.T, open func(t *testing.T) state.Store) state.Store {
	t.Helper()
	s := &closeOnce{Store: open(t)}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

var (
	t0     = time.Date(2027, 3, 4, 15, 0, 0, 0, time.UTC)
	berlin = time.FixedZone("CET", 3600)
	// A zone with a half-hour offset west of UTC: an offset that is not a
	// whole number of hours must survive too.
	newfoundland = time.FixedZone("NST", -(3*3600 + 1800))
)

// fullSession sets every field of a Session, in two zones, with a call in
// flight.
func fullSession(id string) state.Session {
	start := t0.In(berlin)
	return state.Session{
		UserID:       id,
		UPN:          "alice@contoso.com",
		Availability: "Busy",
		Activity:     "InAConferenceCall",
		SpanStart:    start,
		SpanEnd:      start.Add(time.Hour).In(newfoundland),
		Expires:      start.Add(time.Hour + 123456789*time.Nanosecond),
		SetAt:        t0.Add(-time.Second),
		Pending:      state.PendingSet,
		HeldUntil:    start.Add(time.Hour).In(newfoundland),
		Events: []state.EventRef{
			{Source: "zoom-sales", UID: "ZOOM834@zoom.us", RecurrenceID: start, Start: start, End: start.Add(30 * time.Minute)},
			{Source: "webex", UID: "single", Start: t0.Add(20 * time.Minute).In(newfoundland), End: t0.Add(time.Hour)},
		},
	}
}

// equateEmpty: a nil and an empty slice are the same record.
var equateEmpty = cmpopts.EquateEmpty()

func wantSessions(t *testing.T, s state.Store, want map[string]state.Session) {
	t.Helper()
	got, err := s.Sessions(t.Context())
	if err != nil {
		t.Fatalf("Sessions() error = %v", err)
	}
	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Fatalf("Sessions() mismatch (-want +got):\n%s", diff)
	}
	// cmp compares instants (time.Time.Equal); the offsets must come back
	// too: the logs show times as recorded.
	for k, w := range want {
		g := got[k]
		sameOffset(t, "SpanStart of "+k, g.SpanStart, w.SpanStart)
		sameOffset(t, "SpanEnd of "+k, g.SpanEnd, w.SpanEnd)
		for i := range min(len(g.Events), len(w.Events)) {
			sameOffset(t, fmt.Sprintf("Events[%d].Start of %s", i, k), g.Events[i].Start, w.Events[i].Start)
		}
	}
}

func sameOffset(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	_, g := got.Zone()
	_, w := want.Zone()
	if g != w || got.IsZero() != want.IsZero() {
		t.Errorf("%s = %v; want %v (offset %d, zero %v)", what, got, want, w, want.IsZero())
	}
}

func testSessions(t *testing.T, open func(t *testing.T) state.Store) {
	s := openStore(t, open)
	wantSessions(t, s, map[string]state.Session{})

	alice := fullSession("0f1e2d3c-aaaa-bbbb-cccc-000000000001")
	// Zero times, no events, nothing pending.
	bob := state.Session{UserID: "0f1e2d3c-aaaa-bbbb-cccc-000000000002", Availability: "Busy", Activity: "InACall"}
	// A record migrated from schema 1 whose person was never resolved:
	// keyed by its address.
	carol := state.Session{Address: "carol@contoso.com", Availability: "Busy", Activity: "InACall", Pending: state.PendingClear, SpanEnd: t0}
	for _, sess := range []state.Session{alice, bob, carol} {
		if err := s.PutSession(t.Context(), sess); err != nil {
			t.Fatalf("PutSession(%q) = %v", sess.Key(), err)
		}
	}
	wantSessions(t, s, map[string]state.Session{alice.UserID: alice, bob.UserID: bob, carol.Address: carol})

	// A later put replaces; a delete forgets; deleting nothing (an
	// unknown key, the empty key) is not an error.
	alice.Pending = ""
	alice.Expires = t0.Add(2 * time.Hour)
	alice.Events = alice.Events[:1]
	if err := s.PutSession(t.Context(), alice); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(t.Context(), bob.UserID); err != nil {
		t.Fatalf("DeleteSession(%q) = %v", bob.UserID, err)
	}
	for _, key := range []string{"0f1e2d3c-aaaa-bbbb-cccc-00000000dead", bob.UserID, ""} {
		if err := s.DeleteSession(t.Context(), key); err != nil {
			t.Errorf("DeleteSession(%q) of nothing = %v; want nil", key, err)
		}
	}
	wantSessions(t, s, map[string]state.Session{alice.UserID: alice, carol.Address: carol})

	if err := s.PutSession(t.Context(), state.Session{Availability: "Busy"}); err == nil {
		t.Error("PutSession(no user id, no address) = nil; want an error")
	}
	wantSessions(t, s, map[string]state.Session{alice.UserID: alice, carol.Address: carol})
}

func testPutSessions(t *testing.T, open func(t *testing.T) state.Store) {
	s := openStore(t, open)
	a, b, c := fullSession("a"), state.Session{UserID: "b", Pending: state.PendingSet}, state.Session{UserID: "c", Activity: "InACall"}
	if err := s.PutSessions(t.Context(), []state.Session{a, b}); err != nil {
		t.Fatal(err)
	}
	wantSessions(t, s, map[string]state.Session{"a": a, "b": b})

	// A batch replaces the records it names and leaves the others; where
	// it names one key twice, the last wins.
	b2 := b
	b2.Pending = ""
	b3 := b2
	b3.Activity = "InACall"
	if err := s.PutSessions(t.Context(), []state.Session{b2, c, b3}); err != nil {
		t.Fatal(err)
	}
	wantSessions(t, s, map[string]state.Session{"a": a, "b": b3, "c": c})

	// All or nothing: a batch with a record that has no key writes none.
	d := state.Session{UserID: "d"}
	if err := s.PutSessions(t.Context(), []state.Session{d, {}}); err == nil {
		t.Error("PutSessions with a session without a key = nil; want an error")
	}
	wantSessions(t, s, map[string]state.Session{"a": a, "b": b3, "c": c})

	// Nothing to write is fine.
	for _, batch := range [][]state.Session{nil, {}} {
		if err := s.PutSessions(t.Context(), batch); err != nil {
			t.Errorf("PutSessions(%v) = %v; want nil", batch, err)
		}
	}
}

func testIdentities(t *testing.T, open func(t *testing.T) state.Store) {
	s := openStore(t, open)
	if got, err := s.Identities(t.Context()); err != nil || len(got) != 0 {
		t.Errorf("Identities() of a new store = %v, %v; want none", got, err)
	}
	frank := state.Identity{Address: " Frank@Contoso.com ", ID: "id-1", UPN: "frank@contoso.com", CheckedAt: t0.In(berlin)}
	ghost := state.Identity{Address: "ghost@contoso.com", Unknown: true, CheckedAt: t0, UnknownSince: t0.Add(-3 * time.Hour).In(newfoundland)}
	carried := state.Identity{Address: "old@contoso.com", ID: "id-2"} // from schema 1: CheckedAt zero
	if err := s.PutIdentities(t.Context(), []state.Identity{frank, ghost, carried}); err != nil {
		t.Fatal(err)
	}
	frank.Address = "frank@contoso.com" // keyed, and returned, normalised
	want := map[string]state.Identity{frank.Address: frank, ghost.Address: ghost, carried.Address: carried}
	check := func() {
		t.Helper()
		got, err := s.Identities(t.Context())
		if err != nil {
			t.Fatalf("Identities() error = %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("Identities() mismatch (-want +got):\n%s", diff)
		}
		sameOffset(t, "CheckedAt", got[frank.Address].CheckedAt, frank.CheckedAt)
		if g, ok := want[ghost.Address]; ok && g.Unknown {
			sameOffset(t, "UnknownSince", got[ghost.Address].UnknownSince, g.UnknownSince)
		}
	}
	check()

	// Two spellings of one address in a batch are one record: the last.
	later := state.Identity{Address: "GHOST@contoso.com", ID: "id-3", CheckedAt: t0.Add(time.Hour)}
	ghost2 := state.Identity{Address: "ghost@contoso.com", ID: "id-4", CheckedAt: t0.Add(2 * time.Hour)}
	if err := s.PutIdentities(t.Context(), []state.Identity{later, ghost2}); err != nil {
		t.Fatal(err)
	}
	want[ghost.Address] = ghost2
	check()

	// DeleteIdentity normalises too; forgetting nothing is fine.
	for _, addr := range []string{"GHOST@Contoso.com", "ghost@contoso.com", "nobody@contoso.com", ""} {
		if err := s.DeleteIdentity(t.Context(), addr); err != nil {
			t.Errorf("DeleteIdentity(%q) = %v; want nil", addr, err)
		}
	}
	delete(want, ghost.Address)
	check()

	// All or nothing: an empty address refuses the batch.
	if err := s.PutIdentities(t.Context(), []state.Identity{{Address: "new@contoso.com", ID: "x"}, {Address: "  "}}); err == nil {
		t.Error("PutIdentities with an empty address = nil; want an error")
	}
	check()
	for _, batch := range [][]state.Identity{nil, {}} {
		if err := s.PutIdentities(t.Context(), batch); err != nil {
			t.Errorf("PutIdentities(%v) = %v; want nil", batch, err)
		}
	}

	// The one normalisation (mailaddr.Normalize): a calendar's
	// "MAILTO:" spelling is the same person, put and deleted.
	hank := state.Identity{Address: "MAILTO:Hank@Contoso.com ", ID: "id-9", CheckedAt: t0}
	if err := s.PutIdentities(t.Context(), []state.Identity{hank}); err != nil {
		t.Fatal(err)
	}
	hank.Address = "hank@contoso.com"
	want[hank.Address] = hank
	check()
	if err := s.DeleteIdentity(t.Context(), "mailto:HANK@contoso.com"); err != nil {
		t.Fatal(err)
	}
	delete(want, hank.Address)
	check()
}

// testDeleteIdentities: the worker forgets the addresses no feed names any
// more in batches. A batch normalises each address as DeleteIdentity does,
// skips what is not there, and leaves every other record alone.
func testDeleteIdentities(t *testing.T, open func(t *testing.T) state.Store) {
	s := openStore(t, open)
	want := make(map[string]state.Identity)
	var all []state.Identity
	for i := range 1000 {
		id := state.Identity{Address: fmt.Sprintf("guest-%04d@partner.example", i), ID: fmt.Sprintf("id-%d", i), CheckedAt: t0}
		if i%3 == 0 {
			id = state.Identity{Address: id.Address, Unknown: true, CheckedAt: t0}
		}
		all = append(all, id)
		want[id.Address] = id
	}
	if err := s.PutIdentities(t.Context(), all); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		got, err := s.Identities(t.Context())
		if err != nil {
			t.Fatalf("Identities() error = %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("Identities() mismatch (-want +got):\n%s", diff)
		}
	}
	for _, batch := range [][]string{nil, {}, {"", "  "}, {"nobody@partner.example"}} {
		if err := s.DeleteIdentities(t.Context(), batch); err != nil {
			t.Errorf("DeleteIdentities(%q) = %v; want nil", batch, err)
		}
	}
	check()

	// Every other one, spelled differently, plus one twice and one that is
	// not there, in one call.
	var gone []string
	for i := 0; i < 1000; i += 2 {
		a := fmt.Sprintf("guest-%04d@partner.example", i)
		gone = append(gone, " "+strings.ToUpper(a)+" ")
		delete(want, a)
	}
	gone = append(gone, gone[0], "nobody@partner.example")
	if err := s.DeleteIdentities(t.Context(), gone); err != nil {
		t.Fatalf("DeleteIdentities(%d addresses) = %v", len(gone), err)
	}
	check()
	if len(want) != 500 {
		t.Fatalf("%d identities left in want; the test means 500", len(want))
	}
}

func sampleICS(n int) []byte {
	var b bytes.Buffer
	b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n")
	for i := range n {
		fmt.Fprintf(&b, "BEGIN:VEVENT\r\nUID:event-%d@example.com\r\nDTSTART:20270304T%02d0000Z\r\nSUMMARY:Weekly sync %d\r\nEND:VEVENT\r\n", i, i%24, i)
	}
	b.WriteString("END:VCALENDAR\r\n")
	return b.Bytes()
}

// hashed is f as stored and read back: Hash filled in from Body.
func hashed(f state.Feed) state.Feed {
	if f.Hash == ([32]byte{}) {
		f.Hash = sha256.Sum256(f.Body)
	}
	return f
}

func wantFeed(t *testing.T, s state.Store, want state.Feed) {
	t.Helper()
	got, ok, err := s.Feed(t.Context(), want.Source)
	if err != nil || !ok {
		t.Fatalf("Feed(%q) = _, %v, %v; want the copy", want.Source, ok, err)
	}
	if diff := cmp.Diff(hashed(want), got, equateEmpty); diff != "" {
		t.Fatalf("Feed(%q) mismatch (-want +got):\n%s", want.Source, diff)
	}
	sameOffset(t, "FetchedAt of "+want.Source, got.FetchedAt, want.FetchedAt)
}

func noFeed(t *testing.T, s state.Store, source string) {
	t.Helper()
	if f, ok, err := s.Feed(t.Context(), source); err != nil || ok {
		t.Fatalf("Feed(%q) = %v, %v, %v; want none", source, f.Source, ok, err)
	}
}

func testFeeds(t *testing.T, open func(t *testing.T) state.Store) {
	s := openStore(t, open)
	noFeed(t, s, "zoom")

	zoom := state.Feed{
		Source:     "zoom",
		URLHash:    state.URLHash("https://example.zoom.us/feed.ics?token=x"),
		Validators: state.Validators{ETag: `W/"v1"`, LastModified: "Mon, 01 Mar 2027 10:00:00 GMT"},
		Body:       sampleICS(200),
		FetchedAt:  t0.In(newfoundland),
	}
	if err := s.PutFeed(t.Context(), zoom); err != nil { // Hash zero: computed
		t.Fatal(err)
	}
	wantFeed(t, s, zoom)
	noFeed(t, s, "Zoom") // sources are compared exactly

	// A later put replaces, validators and all; a given Hash is kept.
	zoom.Body = sampleICS(3)
	zoom.Hash = sha256.Sum256(zoom.Body)
	zoom.Validators = state.Validators{}
	zoom.URLHash = ""
	zoom.FetchedAt = time.Time{}
	if err := s.PutFeed(t.Context(), zoom); err != nil {
		t.Fatal(err)
	}
	wantFeed(t, s, zoom)

	// An empty feed is a feed too.
	empty := state.Feed{Source: "empty"}
	if err := s.PutFeed(t.Context(), empty); err != nil {
		t.Fatal(err)
	}
	wantFeed(t, s, empty)

	if err := s.PutFeed(t.Context(), state.Feed{Body: []byte("no source")}); err == nil {
		t.Error("PutFeed(no source) = nil; want an error")
	}
}

func testPutFeeds(t *testing.T, open func(t *testing.T) state.Store) {
	s := openStore(t, open)
	a := state.Feed{Source: "a", Body: sampleICS(1), FetchedAt: t0}
	b := state.Feed{Source: "b", Body: sampleICS(2), Validators: state.Validators{ETag: `"b"`}, FetchedAt: t0}
	if err := s.PutFeeds(t.Context(), []state.Feed{a, b}); err != nil {
		t.Fatal(err)
	}
	wantFeed(t, s, a)
	wantFeed(t, s, b)

	// A batch replaces what it names, leaves the rest, and the last of
	// two copies of one source wins.
	b1 := state.Feed{Source: "b", Body: []byte("first"), FetchedAt: t0.Add(time.Minute)}
	b2 := state.Feed{Source: "b", Body: []byte("second"), FetchedAt: t0.Add(2 * time.Minute)}
	c := state.Feed{Source: "c", Body: sampleICS(5)}
	if err := s.PutFeeds(t.Context(), []state.Feed{b1, c, b2}); err != nil {
		t.Fatal(err)
	}
	wantFeed(t, s, a)
	wantFeed(t, s, b2)
	wantFeed(t, s, c)

	// All or nothing: an entry without a source stores none of the batch.
	if err := s.PutFeeds(t.Context(), []state.Feed{{Source: "d", Body: []byte("d")}, {Body: []byte("no source")}}); err == nil {
		t.Error("PutFeeds(an entry without a source) = nil; want an error")
	}
	noFeed(t, s, "d")
	for _, batch := range [][]state.Feed{nil, {}} {
		if err := s.PutFeeds(t.Context(), batch); err != nil {
			t.Errorf("PutFeeds(%v) = %v; want nil", batch, err)
		}
	}
}

// testFeedHeads: every copy without its body, with its expansion, which
// is kept as given, replaced with the copy (a copy without one drops the
// one before) and dropped with it.
func testFeedHeads(t *testing.T, open func(t *testing.T) state.Store) {
	s := openStore(t, open)
	heads := func() map[string]state.Feed {
		t.Helper()
		hs, err := s.FeedHeads(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		m := make(map[string]state.Feed, len(hs))
		for _, h := range hs {
			if h.Body != nil {
				t.Errorf("FeedHeads: %q has a body of %d bytes; want none", h.Source, len(h.Body))
			}
			m[h.Source] = h
		}
		return m
	}
	if got := heads(); len(got) != 0 {
		t.Fatalf("FeedHeads() of an empty store = %v; want none", got)
	}
	exp := state.Expansion{Key: "zone=Europe/Berlin horizon=36h", At: t0.In(newfoundland), Occurrences: []byte("\x01\x00stored\x00form")}
	a := state.Feed{Source: "a", URLHash: state.URLHash("https://a.example/feed.ics"), Body: sampleICS(3), FetchedAt: t0,
		Validators: state.Validators{ETag: `"a"`}, Expansion: exp}
	b := state.Feed{Source: "b", Body: sampleICS(1), FetchedAt: t0}
	if err := s.PutFeeds(t.Context(), []state.Feed{a, b}); err != nil {
		t.Fatal(err)
	}
	wantFeed(t, s, a)
	wantFeed(t, s, b)
	strip := func(f state.Feed) state.Feed {
		f = hashed(f)
		f.Body = nil
		return f
	}
	want := map[string]state.Feed{"a": strip(a), "b": strip(b)}
	if diff := cmp.Diff(want, heads(), equateEmpty); diff != "" {
		t.Fatalf("FeedHeads() mismatch (-want +got):\n%s", diff)
	}

	// Replaced with the copy: a new expansion, and none.
	a.Expansion = state.Expansion{Key: "k2", At: t0.Add(time.Hour), Occurrences: bytes.Repeat([]byte{0, 1, 0xff}, 10_000)}
	b.Expansion = exp
	if err := s.PutFeeds(t.Context(), []state.Feed{a, b}); err != nil {
		t.Fatal(err)
	}
	b.Expansion = state.Expansion{}
	if err := s.PutFeed(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	want = map[string]state.Feed{"a": strip(a), "b": strip(b)}
	if diff := cmp.Diff(want, heads(), equateEmpty); diff != "" {
		t.Fatalf("FeedHeads() after replacing mismatch (-want +got):\n%s", diff)
	}
	wantFeed(t, s, b)

	if err := s.DeleteFeedsExcept(t.Context(), []string{"b"}); err != nil {
		t.Fatal(err)
	}
	a.Expansion = state.Expansion{}
	if err := s.PutFeed(t.Context(), state.Feed{Source: "a", Body: []byte("again")}); err != nil {
		t.Fatal(err)
	}
	if got := heads()["a"].Expansion; !cmp.Equal(got, state.Expansion{}, equateEmpty) {
		t.Errorf("FeedHeads()[a] after DeleteFeedsExcept and a put without one: expansion %+v; want none", got)
	}
}

func testDeleteFeedsExcept(t *testing.T, open func(t *testing.T) state.Store) {
	s := openStore(t, open)
	put := func(sources ...string) {
		t.Helper()
		for _, src := range sources {
			if err := s.PutFeed(t.Context(), state.Feed{Source: src, Body: []byte(src)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	put("a", "b", "c", "d")
	if err := s.DeleteFeedsExcept(t.Context(), []string{"b", "d", "not-stored"}); err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string]bool{"a": false, "b": true, "c": false, "d": true} {
		if _, ok, err := s.Feed(t.Context(), src); err != nil || ok != want {
			t.Errorf("Feed(%q) after DeleteFeedsExcept = _, %v, %v; want %v, nil", src, ok, err, want)
		}
	}
	// Nothing kept, however spelt, drops them all.
	for _, keep := range [][]string{nil, {}} {
		put("a", "b")
		if err := s.DeleteFeedsExcept(t.Context(), keep); err != nil {
			t.Fatal(err)
		}
		for _, src := range []string{"a", "b", "d"} {
			if _, ok, err := s.Feed(t.Context(), src); err != nil || ok {
				t.Errorf("Feed(%q) after DeleteFeedsExcept(%#v) = _, %v, %v; want none", src, keep, ok, err)
			}
		}
	}
}

func wantSignals(t *testing.T, s state.Store, want map[string]state.Signal) {
	t.Helper()
	got, err := s.Signals(t.Context())
	if err != nil {
		t.Fatalf("Signals() error = %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Signals() mismatch (-want +got):\n%s", diff)
	}
	for id, w := range want {
		sameOffset(t, "At of "+id, got[id].At, w.At)
	}
}

func signal(event, email string, at time.Time) state.Signal {
	return state.Signal{
		ID:       state.SignalID("zoom", event, "zoom:83412345678", email, at),
		Vendor:   "zoom",
		Event:    event,
		Meeting:  "zoom:83412345678",
		Email:    email,
		At:       at,
		Received: at.Add(time.Second).In(time.UTC),
		Expires:  at.Add(8 * time.Hour),
	}
}

func testSignals(t *testing.T, open func(t *testing.T) state.Store) {
	s := openStore(t, open)
	wantSignals(t, s, map[string]state.Signal{})
	ended := signal(state.SignalEnded, "", t0.In(berlin))
	left := signal(state.SignalLeft, "alice@contoso.com", t0.Add(-time.Minute).In(newfoundland))
	for _, sig := range []state.Signal{ended, left} {
		if err := s.PutSignal(t.Context(), sig); err != nil {
			t.Fatal(err)
		}
	}
	wantSignals(t, s, map[string]state.Signal{ended.ID: ended, left.ID: left})

	// A vendor's retry of one delivery has the same ID: it replaces.
	left.Received = left.Received.Add(time.Minute)
	if err := s.PutSignal(t.Context(), left); err != nil {
		t.Fatal(err)
	}
	wantSignals(t, s, map[string]state.Signal{ended.ID: ended, left.ID: left})

	for _, id := range []string{ended.ID, ended.ID, "no such signal", ""} {
		if err := s.DeleteSignal(t.Context(), id); err != nil {
			t.Errorf("DeleteSignal(%q) = %v; want nil", id, err)
		}
	}
	wantSignals(t, s, map[string]state.Signal{left.ID: left})

	// One record read by its id: a Webex meeting instance's meeting.
	inst := state.Signal{ID: state.InstancePrefix + "c8a5f5e1_I_2042'; --", Vendor: "webex", Event: state.SignalEventInstance,
		Meeting: "webex:25501234567", Received: t0.UTC(), Expires: t0.Add(24 * time.Hour).UTC()}
	if err := s.PutSignal(t.Context(), inst); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.Signal(t.Context(), inst.ID); err != nil || !ok || !got.Received.Equal(inst.Received) || got.Meeting != inst.Meeting || got.ID != inst.ID {
		t.Errorf("Signal(%q) = %+v, %v, %v; want %+v", inst.ID, got, ok, err, inst)
	}
	if _, ok, err := s.Signal(t.Context(), "no such signal"); ok || err != nil {
		t.Errorf("Signal(no such signal) = %v, %v; want none", ok, err)
	}
	if err := s.DeleteSignal(t.Context(), inst.ID); err != nil {
		t.Fatal(err)
	}

	if err := s.PutSignal(t.Context(), state.Signal{Vendor: "zoom"}); err == nil {
		t.Error("PutSignal(no ID) = nil; want an error")
	}
	wantSignals(t, s, map[string]state.Signal{left.ID: left})
}

// testQueuedSignals: the inbox (signals stored under state.QueuedPrefix)
// is read alone, among many signals in force; Signals still returns all.
// Only the exact prefix queues: keys come from outside.
func testQueuedSignals(t *testing.T, open func(t *testing.T) state.Store) {
	s := openStore(t, open)
	want := make(map[string]state.Signal)
	all := make(map[string]state.Signal)
	put := func(sig state.Signal) {
		t.Helper()
		if err := s.PutSignal(t.Context(), sig); err != nil {
			t.Fatal(err)
		}
		all[sig.ID] = sig
	}
	for i := range 300 {
		put(signal(state.SignalLeft, fmt.Sprintf("guest-%03d@partner.example", i), t0.Add(time.Duration(i)*time.Second)))
	}
	for _, id := range []string{"Inbox:x", "inbox", "inbox;x", "xinbox:x", " inbox:x"} {
		sig := signal(state.SignalEnded, "", t0)
		sig.ID = id
		put(sig)
	}
	check := func() {
		t.Helper()
		got, err := s.QueuedSignals(t.Context())
		if err != nil {
			t.Fatalf("QueuedSignals() error = %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("QueuedSignals() mismatch (-want +got):\n%s", diff)
		}
	}
	check()
	for i, email := range []string{"alice@contoso.com", "bob@contoso.com"} {
		sig := signal(state.SignalJoined, email, t0.Add(time.Duration(i)*time.Minute).In(berlin))
		sig.ID = state.QueuedPrefix + sig.ID
		put(sig)
		want[sig.ID] = sig
	}
	check()
	wantSignals(t, s, all)
	for id := range want {
		if err := s.DeleteSignal(t.Context(), id); err != nil {
			t.Fatal(err)
		}
		delete(want, id)
		delete(all, id)
		check()
	}
	wantSignals(t, s, all)
}

// testOddKeys: keys come from outside (addresses in feeds, webhook
// payloads). NUL bytes, bytes that are not UTF-8 and very long keys are
// stored and found like any other, by every store.
func testOddKeys(t *testing.T, open func(t *testing.T) state.Store) {
	s := openStore(t, open)
	keys := []string{
		"nul\x00inside@contoso.com",
		"not-utf8-\xff\xfe@contoso.com",
		"ünïcødé@contoso.com",
		strings.Repeat("long", 1000) + "@contoso.com", // 4 KB: past a B-tree entry's limit
		`quote'"back\slash;--@contoso.com`,
	}
	var (
		sessions []state.Session
		ids      []state.Identity
	)
	for i, k := range keys {
		sessions = append(sessions, state.Session{Address: k, Activity: "InACall"})
		ids = append(ids, state.Identity{Address: k, ID: fmt.Sprint("id-", i)})
		if err := s.PutSignal(t.Context(), state.Signal{ID: k, Vendor: "webex"}); err != nil {
			t.Errorf("PutSignal(ID %q) = %v", k, err)
		}
		if err := s.PutFeed(t.Context(), state.Feed{Source: k, Body: []byte(k)}); err != nil {
			t.Errorf("PutFeed(%q) = %v", k, err)
		}
	}
	if err := s.PutSessions(t.Context(), sessions); err != nil {
		t.Fatal(err)
	}
	if err := s.PutIdentities(t.Context(), ids); err != nil {
		t.Fatal(err)
	}

	gotSessions, err := s.Sessions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	gotIDs, err := s.Identities(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	gotSignals, err := s.Signals(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if _, ok := gotSessions[k]; !ok {
			t.Errorf("Sessions() lacks key %q", k)
		}
		if id := gotIDs[mailaddr.Normalize(k)]; id.ID != fmt.Sprint("id-", i) || id.Address != mailaddr.Normalize(k) {
			t.Errorf("Identities()[%q] = %+v; want id-%d", mailaddr.Normalize(k), id, i)
		}
		if sig, ok := gotSignals[k]; !ok || sig.ID != k {
			t.Errorf("Signals()[%q] = %+v, %v; want it under its ID", k, sig, ok)
		}
		if f, ok, err := s.Feed(t.Context(), k); err != nil || !ok || string(f.Body) != k {
			t.Errorf("Feed(%q) = %q, %v, %v; want its body", k, f.Body, ok, err)
		}
	}
	if n := len(gotSessions); n != len(keys) {
		t.Errorf("Sessions() has %d records; want %d", n, len(keys))
	}
	for _, k := range keys {
		for _, err := range []error{s.DeleteSession(t.Context(), k), s.DeleteIdentity(t.Context(), k), s.DeleteSignal(t.Context(), k)} {
			if err != nil {
				t.Errorf("delete %q: %v", k, err)
			}
		}
	}
	if err := s.DeleteFeedsExcept(t.Context(), keys[:1]); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Feed(t.Context(), keys[0]); !ok {
		t.Errorf("DeleteFeedsExcept(%q) dropped it", keys[0])
	}
	if _, ok, _ := s.Feed(t.Context(), keys[1]); ok {
		t.Errorf("DeleteFeedsExcept(%q) kept %q", keys[0], keys[1])
	}
	got1, _ := s.Sessions(t.Context())
	got2, _ := s.Identities(t.Context())
	got3, _ := s.Signals(t.Context())
	if len(got1)+len(got2)+len(got3) != 0 {
		t.Errorf("after deleting every key: %d sessions, %d identities, %d signals left; want none", len(got1), len(got2), len(got3))
	}
}

func testMany(t *testing.T, open func(t *testing.T) state.Store) {
	s := openStore(t, open)
	const nSessions, nFeeds = 2000, 500
	want := make(map[string]state.Session, nSessions)
	batch := make([]state.Session, 0, nSessions)
	for i := range nSessions {
		sess := fullSession(fmt.Sprintf("0f1e2d3c-0000-4000-8000-%012d", i))
		sess.SetAt = sess.SetAt.Add(time.Duration(i) * time.Millisecond)
		want[sess.UserID] = sess
		batch = append(batch, sess)
	}
	if err := s.PutSessions(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	// Compared as JSON (what both sides record) rather than with cmp,
	// which takes seconds over 2,000 sessions under -race.
	got, err := s.Sessions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Sessions() has %d records; want %d", len(got), len(want))
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !bytes.Equal(mustJSON(t, g), mustJSON(t, w)) {
			t.Fatalf("Sessions()[%q] = %+v, %v; want %+v", k, g, ok, w)
		}
	}

	feeds := make([]state.Feed, 0, nFeeds)
	for i := range nFeeds {
		feeds = append(feeds, state.Feed{
			Source:     fmt.Sprintf("feed-%04d", i),
			URLHash:    state.URLHash(fmt.Sprint("https://example.com/", i)),
			Validators: state.Validators{ETag: fmt.Sprintf(`"%d"`, i)},
			Body:       sampleICS(i % 40),
			FetchedAt:  t0.Add(time.Duration(i) * time.Second),
		})
	}
	if err := s.PutFeeds(t.Context(), feeds); err != nil {
		t.Fatal(err)
	}
	for _, f := range feeds {
		got, ok, err := s.Feed(t.Context(), f.Source)
		f = hashed(f)
		if err != nil || !ok || !bytes.Equal(got.Body, f.Body) || got.Hash != f.Hash ||
			got.Validators != f.Validators || got.URLHash != f.URLHash || !got.FetchedAt.Equal(f.FetchedAt) {
			t.Fatalf("Feed(%q) = %+v, %v, %v; want %+v", f.Source, got, ok, err, f)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// testDurable: what a Put returned for is there after Close and a new
// Open.
func testDurable(t *testing.T, open func(t *testing.T) state.Store) {
	s := openStore(t, open)
	sess := fullSession("0f1e2d3c-aaaa-bbbb-cccc-000000000001") // an intent: Pending set
	frank := state.Identity{Address: "frank@contoso.com", ID: "id-1", UPN: "frank@contoso.com", CheckedAt: t0}
	feed := hashed(state.Feed{Source: "zoom", URLHash: state.URLHash("u"), Body: sampleICS(3), FetchedAt: t0})
	sig := signal(state.SignalJoined, "bob@contoso.com", t0)
	for _, err := range []error{s.PutSession(t.Context(), sess), s.PutIdentities(t.Context(), []state.Identity{frank}), s.PutFeed(t.Context(), feed), s.PutSignal(t.Context(), sig)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openStore(t, open)
	wantSessions(t, s, map[string]state.Session{sess.UserID: sess})
	if ids, err := s.Identities(t.Context()); err != nil || !cmp.Equal(ids, map[string]state.Identity{frank.Address: frank}) {
		t.Errorf("Identities() after reopening = %v, %v; want %v", ids, err, frank)
	}
	wantFeed(t, s, feed)
	wantSignals(t, s, map[string]state.Signal{sig.ID: sig})
}

// testConcurrent uses one Store from several goroutines at once, as the
// executor, the pollers and the webhook receiver do. Run with -race.
func testConcurrent(t *testing.T, open func(t *testing.T) state.Store) {
	s := openStore(t, open)
	const workers, rounds = 8, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				key := fmt.Sprintf("user-%d-%d", w, r)
				sess := state.Session{UserID: key, Pending: state.PendingSet, SetAt: t0}
				steps := []func() error{
					func() error { return s.PutSessions(t.Context(), []state.Session{sess}) },
					func() error { sess.Pending = ""; return s.PutSession(t.Context(), sess) },
					func() error { _, err := s.Sessions(t.Context()); return err },
					func() error {
						return s.PutIdentities(t.Context(), []state.Identity{{Address: key + "@contoso.com", ID: key}})
					},
					func() error { _, err := s.Identities(t.Context()); return err },
					func() error {
						return s.PutFeeds(t.Context(), []state.Feed{{Source: fmt.Sprint("feed-", w), Body: sampleICS(r)}})
					},
					func() error { _, _, err := s.Feed(t.Context(), fmt.Sprint("feed-", (w+1)%workers)); return err },
					func() error { return s.PutSignal(t.Context(), state.Signal{ID: key, Vendor: "zoom"}) },
					func() error { _, err := s.Signals(t.Context()); return err },
				}
				if r%2 == 1 {
					steps = append(steps,
						func() error { return s.DeleteSession(t.Context(), key) },
						func() error { return s.DeleteSignal(t.Context(), key) },
						func() error { return s.DeleteIdentity(t.Context(), key+"@contoso.com") })
				}
				for i, step := range steps {
					if err := step(); err != nil {
						t.Errorf("worker %d round %d step %d: %v", w, r, i, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()

	sessions, err := s.Sessions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ids, err := s.Identities(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	signals, err := s.Signals(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for w := range workers {
		for r := 0; r < rounds; r += 2 {
			want = append(want, fmt.Sprintf("user-%d-%d", w, r))
		}
		f, ok, err := s.Feed(t.Context(), fmt.Sprint("feed-", w))
		if err != nil || !ok || !bytes.Equal(f.Body, sampleICS(rounds-1)) {
			t.Errorf("Feed(feed-%d) = %v, %v; want the last body written", w, ok, err)
		}
	}
	slices.Sort(want)
	for name, got := range map[string][]string{
		"Sessions()": slices.Sorted(maps.Keys(sessions)),
		"Signals()":  slices.Sorted(maps.Keys(signals)),
	} {
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s keys mismatch (-want +got):\n%s", name, diff)
		}
	}
	if len(ids) != len(want) {
		t.Errorf("Identities() has %d records; want %d", len(ids), len(want))
	}
	for _, sess := range sessions {
		if sess.Pending != "" {
			t.Errorf("session %q is pending; the second put cleared it", sess.UserID)
		}
	}
}

// testPing: an open store answers.
func testPing(t *testing.T, open func(t *testing.T) state.Store) {
	s := openStore(t, open)
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping() of an open store = %v; want nil", err)
	}
}
