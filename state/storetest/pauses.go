package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/calpresence/calpresence/state"
)

// testPauses: a pause round-trips with every field (an indefinite one
// without Until), a second pause of the same person replaces the first,
// a delete of none is no error, an empty id is refused, pauses survive
// Close and Open, and a cancelled context writes nothing.
func testPauses(t *testing.T, open func(t *testing.T) state.Store) {
	ctx := context.Background()
	s := openStore(t, open)
	if got, err := s.Pauses(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Pauses() of a new store = %v, %v; want none", got, err)
	}
	alice := state.Pause{ID: "6f1c2d3e-0000-4000-8000-0000000a11ce", Since: t0.In(berlin), Until: t0.Add(90 * time.Minute).In(newfoundland)}
	bob := state.Pause{ID: "00000000-0000-4000-8000-000000000b0b", Since: t0} // until resumed
	for _, p := range []state.Pause{{ID: alice.ID, Since: t0.Add(-30 * time.Minute)}, alice, bob} {
		if err := s.PutPause(ctx, p); err != nil {
			t.Fatalf("PutPause(%+v) = %v", p, err)
		}
	}
	want := map[string]state.Pause{alice.ID: alice, bob.ID: bob}
	wantPauses(t, s, want)
	if err := s.PutPause(ctx, state.Pause{Since: t0}); err == nil {
		t.Errorf("PutPause with an empty id = nil; want an error")
	}
	if err := s.DeletePause(ctx, "nobody"); err != nil {
		t.Errorf("DeletePause(nobody) = %v; want nil", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.PutPause(cancelled, state.Pause{ID: "carol", Since: t0}); err == nil {
		t.Errorf("PutPause with a cancelled context = nil; want its error")
	}
	if err := s.DeletePause(ctx, bob.ID); err != nil {
		t.Fatalf("DeletePause(bob) = %v", err)
	}
	delete(want, bob.ID)
	wantPauses(t, s, want)

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantPauses(t, openStore(t, open), want)
}

func wantPauses(t *testing.T, s state.Store, want map[string]state.Pause) {
	t.Helper()
	got, err := s.Pauses(context.Background())
	if err != nil {
		t.Fatalf("Pauses() = %v", err)
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b state.Pause) bool {
		return a.ID == b.ID && a.Since.Equal(b.Since) && a.Until.Equal(b.Until)
	})); diff != "" {
		t.Errorf("Pauses() (-want +got):\n%s", diff)
	}
}
