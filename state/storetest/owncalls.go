package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/calpresence/calpresence/state"
)

// testOwnCalls: a call round-trips, a second call of the same person
// replaces the first, a delete of none is no error, an empty id and a
// cancelled context are refused, calls survive Close and Open.
func testOwnCalls(t *testing.T, open func(t *testing.T) state.Store) {
	ctx := context.Background()
	s := openStore(t, open)
	if got, err := s.OwnCalls(ctx); err != nil || len(got) != 0 {
		t.Fatalf("OwnCalls() of a new store = %v, %v; want none", got, err)
	}
	alice := state.OwnCall{ID: "6f1c2d3e-0000-4000-8000-0000000a11ce", Since: t0.In(berlin), Until: t0.Add(45 * time.Minute).In(newfoundland)}
	bob := state.OwnCall{ID: "00000000-0000-4000-8000-000000000b0b", Since: t0, Until: t0.Add(4 * time.Hour)}
	for _, c := range []state.OwnCall{{ID: alice.ID, Since: t0.Add(-time.Hour), Until: t0}, alice, bob} {
		if err := s.PutOwnCall(ctx, c); err != nil {
			t.Fatalf("PutOwnCall(%+v) = %v", c, err)
		}
	}
	want := map[string]state.OwnCall{alice.ID: alice, bob.ID: bob}
	wantOwnCalls(t, s, want)
	if err := s.PutOwnCall(ctx, state.OwnCall{Since: t0, Until: t0.Add(time.Hour)}); err == nil {
		t.Errorf("PutOwnCall with an empty id = nil; want an error")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.PutOwnCall(cancelled, state.OwnCall{ID: "carol", Since: t0, Until: t0.Add(time.Hour)}); err == nil {
		t.Errorf("PutOwnCall with a cancelled context = nil; want its error")
	}
	if err := s.DeleteOwnCall(ctx, "nobody"); err != nil {
		t.Errorf("DeleteOwnCall(nobody) = %v; want nil", err)
	}
	if err := s.DeleteOwnCall(ctx, bob.ID); err != nil {
		t.Fatalf("DeleteOwnCall(bob) = %v", err)
	}
	delete(want, bob.ID)
	wantOwnCalls(t, s, want)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantOwnCalls(t, openStore(t, open), want)
}

func wantOwnCalls(t *testing.T, s state.Store, want map[string]state.OwnCall) {
	t.Helper()
	got, err := s.OwnCalls(context.Background())
	if err != nil {
		t.Fatalf("OwnCalls() = %v", err)
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b state.OwnCall) bool {
		return a.ID == b.ID && a.Since.Equal(b.Since) && a.Until.Equal(b.Until)
	})); diff != "" {
		t.Errorf("OwnCalls() (-want +got):\n%s", diff)
	}
}
