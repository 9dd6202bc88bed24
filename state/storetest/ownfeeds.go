package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/calpresence/calpresence/state"
)

// testOwnFeeds: a feed round-trips with every field (its sealed bytes
// exactly), a second put of the same id replaces the first, several feeds
// of one person stay apart, a delete of none is no error, an empty id and
// a cancelled context are refused, feeds survive Close and Open.
func testOwnFeeds(t *testing.T, open func(t *testing.T) state.Store) {
	ctx := context.Background()
	s := openStore(t, open)
	if got, err := s.OwnFeeds(ctx); err != nil || len(got) != 0 {
		t.Fatalf("OwnFeeds() of a new store = %v, %v; want none", got, err)
	}
	alice := "6f1c2d3e-0000-4000-8000-0000000a11ce"
	a1 := state.OwnFeed{ID: "f1a2b3c4d5e6", Person: alice, Address: "alice@contoso.com", Added: t0.In(berlin),
		Sealed: []byte{0x00, 0xff, 0x10, 0x80, 'x', 0x00}}
	a2 := state.OwnFeed{ID: "0a0b0c0d0e0f", Person: alice, Address: "alice@contoso.com", Added: t0.Add(time.Minute),
		Sealed: make([]byte, 4096)}
	bob := state.OwnFeed{ID: "b0b0b0b0b0b0", Person: "00000000-0000-4000-8000-000000000b0b", Address: "Bob@Contoso.com",
		Added: t0, Sealed: []byte("sealed")}
	for _, f := range []state.OwnFeed{{ID: a1.ID, Person: alice, Sealed: []byte("old")}, a1, a2, bob} {
		if err := s.PutOwnFeed(ctx, f); err != nil {
			t.Fatalf("PutOwnFeed(%+v) = %v", f, err)
		}
	}
	want := map[string]state.OwnFeed{a1.ID: a1, a2.ID: a2, bob.ID: bob}
	wantOwnFeeds(t, s, want)
	if err := s.PutOwnFeed(ctx, state.OwnFeed{Person: alice, Sealed: []byte("x")}); err == nil {
		t.Errorf("PutOwnFeed with an empty id = nil; want an error")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.PutOwnFeed(cancelled, state.OwnFeed{ID: "carol", Person: "carol"}); err == nil {
		t.Errorf("PutOwnFeed with a cancelled context = nil; want its error")
	}
	if err := s.DeleteOwnFeed(ctx, "nothing"); err != nil {
		t.Errorf("DeleteOwnFeed(nothing) = %v; want nil", err)
	}
	if err := s.DeleteOwnFeed(ctx, a1.ID); err != nil {
		t.Fatalf("DeleteOwnFeed(a1) = %v", err)
	}
	delete(want, a1.ID)
	wantOwnFeeds(t, s, want)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantOwnFeeds(t, openStore(t, open), want)
}

func wantOwnFeeds(t *testing.T, s state.Store, want map[string]state.OwnFeed) {
	t.Helper()
	got, err := s.OwnFeeds(context.Background())
	if err != nil {
		t.Fatalf("OwnFeeds() = %v", err)
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("OwnFeeds() (-want +got):\n%s", diff)
	}
}
