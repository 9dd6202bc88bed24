package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/mem"
)

// flakyStore fails the writes it is told to and counts the reads.
type flakyStore struct {
	*mem.Store
	mu    sync.Mutex
	fail  bool
	reads int
}

func (f *flakyStore) Sessions(ctx context.Context) (map[string]state.Session, error) {
	f.mu.Lock()
	f.reads++
	f.mu.Unlock()
	return f.Store.Sessions(ctx)
}

func (f *flakyStore) PutSession(ctx context.Context, s state.Session) error {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail {
		// The write may or may not have happened: here it did.
		_ = f.Store.PutSession(ctx, s)
		return errors.New("disk full")
	}
	return f.Store.PutSession(ctx, s)
}

func TestSessionCacheReadsOnceAndWritesThrough(t *testing.T) {
	st := &flakyStore{Store: mem.New()}
	_ = st.Store.PutSession(t.Context(), state.Session{UserID: "a", Activity: "x"})
	c := newSessionCache(st)
	for range 3 {
		if s, err := c.Sessions(t.Context()); err != nil || len(s) != 1 {
			t.Fatalf("Sessions = %v, %v", s, err)
		}
	}
	if st.reads != 1 {
		t.Errorf("the store was read %d times; want once", st.reads)
	}
	if err := c.PutSessions(t.Context(), []state.Session{{UserID: "b"}, {UserID: "c"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSession(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	got, _ := c.Sessions(t.Context())
	want, _ := st.Store.Sessions(t.Context())
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != 2 {
		t.Errorf("cache %v, store %v", got, want)
	}
	// A copy handed out is the caller's.
	got["z"] = state.Session{UserID: "z"}
	if again, _ := c.Sessions(t.Context()); len(again) != 2 {
		t.Errorf("a caller's change reached the cache: %v", again)
	}

	// A failed write: the record is in doubt, so the next read goes to
	// the store, and sees what it holds.
	st.fail = true
	if err := c.PutSession(t.Context(), state.Session{UserID: "d"}); err == nil {
		t.Fatal("want the store's error")
	}
	st.fail = false
	got, _ = c.Sessions(t.Context())
	if _, ok := got["d"]; !ok || st.reads != 2 {
		t.Errorf("after a failed write: %v (store read %d times); want the store's records, read again", got, st.reads)
	}
}

func TestSessionCacheReportsDamagedRecordsOnce(t *testing.T) {
	c := newSessionCache(damagedStore{mem.New(), "mallory"})
	if _, err := c.Sessions(t.Context()); !errors.As(err, new(*state.BadRecordsError)) {
		t.Fatalf("first read: %v; want the damaged records", err)
	}
	if _, err := c.Sessions(t.Context()); err != nil {
		t.Fatalf("second read: %v; want them reported once", err)
	}
}

// TestSessionCacheKeepsOneKeysWritesInOrder: many goroutines writing the
// same people; the copy must end as the store ends.
func TestSessionCacheKeepsOneKeysWritesInOrder(t *testing.T) {
	st := mem.New()
	c := newSessionCache(st)
	_, _ = c.Sessions(t.Context())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				key := fmt.Sprint("u", i%5)
				if (g+i)%3 == 0 {
					_ = c.DeleteSession(t.Context(), key)
				} else {
					_ = c.PutSession(t.Context(), state.Session{UserID: key, Activity: fmt.Sprint(g, i)})
				}
			}
		}()
	}
	wg.Wait()
	got, _ := c.Sessions(t.Context())
	want, _ := st.Sessions(t.Context())
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("cache and store differ:\ncache %v\nstore %v", got, want)
	}
}
