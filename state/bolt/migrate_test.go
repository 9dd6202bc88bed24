package bolt

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/calpresence/calpresence/state"
)

// testdata/v1-sessions-by-address.db was written by release 1's state
// package (schema 1, sessions keyed by the configured address):
//
//   - frank@contoso.com and frank.jones@contoso.com, one person (id 1111…)
//     under two spellings, each with a session: Zoom set at 00:00 for 15
//     minutes, Google set at 00:05 for 6 minutes;
//   - Bob@Contoso.com, a set in flight, its id only in the user-id cache
//     (under bob@contoso.com);
//   - carol@contoso.com, a set in flight for an address never resolved;
//   - gone@contoso.com, a forgotten (empty) cached id.
func TestMigrateFromSchema1(t *testing.T) {
	data, err := os.ReadFile("testdata/v1-sessions-by-address.db")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatalf("Open(schema 1 file) = %v", err)
	}
	defer s.Close()

	t0 := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	const frankID, bobID = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
	got, err := s.Sessions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]state.Session{
		// One record for Frank: the one set last is what Graph shows (same
		// sessionId); the Zoom meeting's event is kept beside it.
		frankID: {UserID: frankID, Availability: "Busy", Activity: "InAConferenceCall",
			SpanStart: t0.Add(5 * time.Minute), SpanEnd: t0.Add(11 * time.Minute), Expires: t0.Add(11 * time.Minute), SetAt: t0.Add(5 * time.Minute),
			Events: []state.EventRef{
				{Source: "google", UID: "g-1", Start: t0.Add(5 * time.Minute), End: t0.Add(11 * time.Minute)},
				{Source: "zoom", UID: "zoom-1", Start: t0, End: t0.Add(15 * time.Minute)},
			}},
		// Bob's id comes from the cache, whatever the letter case.
		bobID: {UserID: bobID, Availability: "Busy", Activity: "InACall", SpanStart: t0, SpanEnd: t0.Add(time.Hour),
			Pending: state.PendingSet, Events: []state.EventRef{{Source: "webex", UID: "w-1", Start: t0, End: t0.Add(time.Hour)}}},
		// Carol waits, under her address, for the worker to resolve her.
		"carol@contoso.com": {Address: "carol@contoso.com", Availability: "Busy", Activity: "InAConferenceCall",
			SpanStart: t0, SpanEnd: t0.Add(30 * time.Minute), Pending: state.PendingSet,
			Events: []state.EventRef{{Source: "zoom", UID: "zoom-2", Start: t0, End: t0.Add(30 * time.Minute)}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Sessions() after migration mismatch (-want +got):\n%s", diff)
	}

	ids, err := s.Identities(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wantIDs := map[string]state.Identity{
		"frank@contoso.com":       {Address: "frank@contoso.com", ID: frankID},
		"frank.jones@contoso.com": {Address: "frank.jones@contoso.com", ID: frankID},
		"bob@contoso.com":         {Address: "bob@contoso.com", ID: bobID},
	}
	if diff := cmp.Diff(wantIDs, ids); diff != "" {
		t.Errorf("Identities() after migration mismatch (-want +got):\n%s", diff)
	}

	// The file is schema 2 now: reopening migrates nothing twice.
	s.Close()
	s2, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	again, err := s2.Sessions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, again); diff != "" {
		t.Errorf("Sessions() after reopening the migrated file mismatch (-want +got):\n%s", diff)
	}
}
