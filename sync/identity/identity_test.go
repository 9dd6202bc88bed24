package identity

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/internal/mailaddr"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state"
)

const frankID = "11111111-1111-1111-1111-111111111111"

// tenant is a small Entra: Frank has an alias in proxyAddresses.
var tenant = map[string]presence.Person{
	"frank@contoso.com":       {ID: frankID, UPN: "frank@contoso.com"},
	"frank.jones@contoso.com": {ID: frankID, UPN: "frank@contoso.com"},
}

// memStore keeps identities in memory, as state/mem does.
type memStore struct {
	mu  sync.Mutex
	ids map[string]state.Identity
}

func newMemStore() *memStore { return &memStore{ids: make(map[string]state.Identity)} }

func (m *memStore) Identities(ctx context.Context) (map[string]state.Identity, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.ids), nil
}

func (m *memStore) PutIdentities(ctx context.Context, ids []state.Identity) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, idn := range ids {
		idn.Address = mailaddr.Normalize(idn.Address)
		m.ids[idn.Address] = idn
	}
	return nil
}

func (m *memStore) DeleteIdentity(ctx context.Context, address string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.ids, mailaddr.Normalize(address))
	return nil
}

func (m *memStore) DeleteIdentities(ctx context.Context, addresses []string) error {
	for _, a := range addresses {
		m.DeleteIdentity(ctx, a)
	}
	return nil
}

func testMetrics() *Metrics {
	return &Metrics{
		GraphRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "graph_requests_total"}, []string{"op", "code"}),
		Addresses:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "addresses"}, []string{"state"}),
	}
}

// TestDirectoryForbiddenLookupIsNotUnknown: a 403 on a lookup (the app
// lacks User.Read.All) says nothing of the address: it is retried with
// back-off and reported as a consent problem, not as "no such user".
func TestDirectoryForbiddenLookupIsNotUnknown(t *testing.T) {
	var logs strings.Builder
	refuse := true
	p := &testutil.Presence{People: tenant, ResolveErr: func(string) error {
		if refuse {
			return &presence.Error{Op: policy.OpResolveUser, Status: 403, Kind: policy.Classify(policy.OpResolveUser, 403), Message: "Authorization_RequestDenied"}
		}
		return nil
	}}
	d := New(p, newMemStore(), time.Hour, 4, slog.New(slog.NewTextHandler(&logs, nil)), testMetrics())
	d.Lookup("frank@contoso.com")
	if got := d.Unresolved(); len(got) != 0 {
		t.Errorf("unresolved() before any lookup = %v; want none", got)
	}
	d.Resolve(context.Background(), d.Due(time.Now()))
	if d.IsUnknown("frank@contoso.com") {
		t.Error("a 403 marked the address unknown")
	}
	if got := d.Unresolved(); len(got) != 1 || !strings.Contains(got[0].Reason, "403") {
		t.Errorf("unresolved() = %v; want frank with the 403", got)
	}
	if !strings.Contains(logs.String(), "User.Read.All") {
		t.Errorf("the log does not name the missing permission:\n%s", logs.String())
	}
	refuse = false
	d.Resolve(context.Background(), []string{"frank@contoso.com"})
	if id, ok := d.Lookup("frank@contoso.com"); !ok || id != frankID {
		t.Errorf("after consent: lookup = %q, %v; want %s", id, ok, frankID)
	}
	if got := d.Unresolved(); len(got) != 0 {
		t.Errorf("unresolved() after consent = %v; want none (the answer kept from before is not)", got)
	}
}

// TestDirectoryForgetsUnnamedAddresses: an address no feed names is
// forgotten ForgetAfter after it was last named (or, loaded from the state
// and not met since, last looked up), in memory and in the state; one a
// feed names, or the configuration, never is, however old its answer.
func TestDirectoryForgetsUnnamedAddresses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		day := 24 * time.Hour
		st := newMemStore()
		if err := st.PutIdentities(t.Context(), []state.Identity{
			{Address: "old@partner.example", ID: "id-old", CheckedAt: now.Add(-8 * day)},
			{Address: "recent@partner.example", Unknown: true, CheckedAt: now.Add(-day), UnknownSince: now.Add(-3 * day)},
			{Address: "named@partner.example", ID: "id-named", CheckedAt: now.Add(-30 * day)},
			{Address: "ceo@contoso.com", ID: "id-ceo", CheckedAt: now.Add(-30 * day)},
			{Address: "carried@contoso.com", ID: "id-carried"}, // schema 1: no CheckedAt
		}); err != nil {
			t.Fatal(err)
		}
		d := New(&testutil.Presence{}, st, day, 4, slog.New(slog.DiscardHandler), testMetrics())
		if err := d.Load(t.Context()); err != nil {
			t.Fatal(err)
		}
		d.Lookup("met@partner.example") // a webhook's participant, say
		named := map[string]bool{"named@partner.example": true}
		keep := map[string]bool{"ceo@contoso.com": true}
		stored := func() []string {
			ids, _ := st.Identities(t.Context())
			return slices.Sorted(maps.Keys(ids))
		}

		if got, want := d.Prune(t.Context(), now, named, keep), []string{"old@partner.example"}; !slices.Equal(got, want) {
			t.Errorf("prune at start = %v; want %v", got, want)
		}
		if got, want := stored(), []string{"carried@contoso.com", "ceo@contoso.com", "named@partner.example", "recent@partner.example"}; !slices.Equal(got, want) {
			t.Errorf("identities stored after the first prune = %v; want %v", got, want)
		}
		// The answer for a named address is old: it is refreshed, not
		// forgotten; the one for recent@ (unknown, no feed names it) is not
		// looked up again.
		if got, want := d.Due(now), []string{"met@partner.example", "named@partner.example"}; !slices.Equal(got, want) {
			t.Errorf("due = %v; want %v", got, want)
		}

		time.Sleep(ForgetAfter - time.Minute)
		if got := d.Prune(t.Context(), time.Now(), named, keep); !slices.Equal(got, []string{"recent@partner.example"}) {
			t.Errorf("prune a minute before a week is over = %v; want recent@partner.example (unnamed, looked up 8 days ago)", got)
		}
		time.Sleep(time.Minute)
		want := []string{"carried@contoso.com", "met@partner.example"}
		if got := d.Prune(t.Context(), time.Now(), named, keep); !slices.Equal(got, want) {
			t.Errorf("prune a week after start = %v; want %v", got, want)
		}
		if got, want := stored(), []string{"ceo@contoso.com", "named@partner.example"}; !slices.Equal(got, want) {
			t.Errorf("identities stored a week after start = %v; want %v", got, want)
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if got, want := slices.Sorted(maps.Keys(d.known)), []string{"ceo@contoso.com", "named@partner.example"}; !slices.Equal(got, want) {
			t.Errorf("known a week after start = %v; want %v", got, want)
		}
		if got, want := slices.Sorted(maps.Keys(d.seen)), []string{"named@partner.example"}; !slices.Equal(got, want) {
			t.Errorf("seen a week after start = %v; want %v", got, want)
		}
		if _, ok := d.byID["id-old"]; ok {
			t.Error("byID still names the forgotten old@partner.example")
		}
	})
}

// TestDirectoryForgetKeepsAnAnswerThatRaced: Graph answers 404 for an id;
// the directory forgets its addresses and wakes the resolver, which may
// look one up again and store the new answer before forget's delete
// reaches the state. The new answer must stay stored (a restart would
// otherwise look it up again, or worse, keep an older one).
func TestDirectoryForgetKeepsAnAnswerThatRaced(t *testing.T) {
	const newID = "44444444-4444-4444-4444-444444444444"
	people := map[string]presence.Person{"frank@contoso.com": {ID: frankID, UPN: "frank@contoso.com"}}
	st := &racingStore{memStore: newMemStore()}
	d := New(&testutil.Presence{People: people}, st, time.Hour, 4, slog.New(slog.DiscardHandler), testMetrics())
	d.Lookup("frank@contoso.com")
	d.Resolve(context.Background(), d.Due(time.Now()))
	people["frank@contoso.com"] = presence.Person{ID: newID, UPN: "frank@contoso.com"}
	st.before = func() { d.Resolve(context.Background(), d.Due(time.Now())) } // the resolver, first
	d.Forget(t.Context(), frankID)
	if id, ok := d.Lookup("frank@contoso.com"); !ok || id != newID {
		t.Fatalf("lookup after forget = %q, %v; want %s", id, ok, newID)
	}
	ids, _ := st.Identities(t.Context())
	if got := ids["frank@contoso.com"]; got.ID != newID {
		t.Errorf("stored identity = %+v; want the new id %s (resolved while forget was deleting)", got, newID)
	}
}

// racingStore answers a lookup (as the resolver, woken by forget, may)
// just before each delete of identities reaches the store.
type racingStore struct {
	*memStore
	before func()
}

func (s *racingStore) DeleteIdentity(ctx context.Context, address string) error {
	s.before()
	return s.memStore.DeleteIdentity(ctx, address)
}

func (s *racingStore) DeleteIdentities(ctx context.Context, addresses []string) error {
	s.before()
	return s.memStore.DeleteIdentities(ctx, addresses)
}
