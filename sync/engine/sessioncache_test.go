package engine

import (
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

func (f *flakyStore) Sessions() (map[string]state.Session, error) {
	f.mu.Lock()
	f.reads++
	f.mu.Unlock()
	return f.Store.Sessions()
}

func (f *flakyStore) PutSession(s state.Session) error {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail {
		// The write may or may not have happened: here it did.
		_ = f.Store.PutSession(s)
		return errors.New("disk full")
	}
	return f.Store.PutSession(s)
}

func TestSessionCacheReadsOnceAndWritesThrough(t *testing.T) {
	st := &flakyStore{Store: mem.New()}
	_ = st.Store.PutSession(state.Session{UserID: "a", Activity: "x"})
	c := newSessionCache(st)
	for range 3 {
		if s, err := c.Sessions(); err != nil || len(s) != 1 {
			t.Fatalf("Sessions = %v, %v", s, err)
		}
	}
	if st.reads != 1 {
		t.Errorf("the store was read %d times; want once", st.reads)
	}
	if err := c.PutSessions([]state.Session{{UserID: "b"}, {UserID: "c"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSession("a"); err != nil {
		t.Fatal(err)
	}
	got, _ := c.Sessions()
	want, _ := st.Store.Sessions()
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != 2 {
		t.Errorf("cache %v, store %v", got, want)
	}
	// A copy handed out is the caller's.
	got["z"] = state.Session{UserID: "z"}
	if again, _ := c.Sessions(); len(again) != 2 {
		t.Errorf("a caller's change reached the cache: %v", again)
	}

	// A failed write: the record is in doubt, so the next read goes to
	// the store, and sees what it holds.
	st.fail = true
	if err := c.PutSession(state.Session{UserID: "d"}); err == nil {
		t.Fatal("want the store's error")
	}
	st.fail = false
	got, _ = c.Sessions()
	if _, ok := got["d"]; !ok || st.reads != 2 {
		t.Errorf("after a failed write: %v (store read %d times); want the store's records, read again", got, st.reads)
	}
}

func TestSessionCacheReportsDamagedRecordsOnce(t *testing.T) {
	c := newSessionCache(damagedStore{mem.New(), "mallory"})
	if _, err := c.Sessions(); !errors.As(err, new(*state.BadRecordsError)) {
		t.Fatalf("first read: %v; want the damaged records", err)
	}
	if _, err := c.Sessions(); err != nil {
		t.Fatalf("second read: %v; want them reported once", err)
	}
}

// TestSessionCacheKeepsOneKeysWritesInOrder: many goroutines writing the
// same people; the copy must end as the store ends.
func TestSessionCacheKeepsOneKeysWritesInOrder(t *testing.T) {
	st := mem.New()
	c := newSessionCache(st)
	_, _ = c.Sessions()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				key := fmt.Sprint("u", i%5)
				if (g+i)%3 == 0 {
					_ = c.DeleteSession(key)
				} else {
					_ = c.PutSession(state.Session{UserID: key, Activity: fmt.Sprint(g, i)})
				}
			}
		}()
	}
	wg.Wait()
	got, _ := c.Sessions()
	want, _ := st.Sessions()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("cache and store differ:\ncache %v\nstore %v", got, want)
	}
}
