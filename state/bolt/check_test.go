package bolt

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/calpresence/calpresence/state"
)

func TestCheckClean(t *testing.T) {
	s, path := openTemp(t)
	if err := s.PutSession(t.Context(), sampleSession("alice@contoso.com")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutIdentities(t.Context(), []state.Identity{{Address: "alice@contoso.com", ID: "id-1"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutFeed(t.Context(), state.Feed{Source: "zoom", Body: sampleICS(10)}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	r, err := Check(t.Context(), path, time.Second)
	if err != nil {
		t.Fatalf("Check(clean file) error = %v", err)
	}
	if !r.Clean() {
		t.Errorf("Check(clean file) = %+v; want clean", r)
	}
	got := map[string]int{}
	for _, b := range r.Buckets {
		got[b.Name] = b.Good
	}
	if diff := cmp.Diff(map[string]int{"meta": 1, "sessions": 1, "identities": 1, "feeds": 1, "signals": 0}, got); diff != "" {
		t.Errorf("good records per bucket (-want +got):\n%s", diff)
	}
}

func TestCheckBadRecords(t *testing.T) {
	s, path := openTemp(t)
	if err := s.PutSession(t.Context(), sampleSession("alice@contoso.com")); err != nil {
		t.Fatal(err)
	}
	putRaw(t, s, bucketSessions, "bob@contoso.com", []byte("{not json"))
	putRaw(t, s, bucketIdentities, "carol@contoso.com", []byte("[]"))
	if err := s.PutFeeds(t.Context(), []state.Feed{{Source: "zoom", Body: sampleICS(3)}, {Source: "webex", Body: sampleICS(3)}}); err != nil {
		t.Fatal(err)
	}
	putRaw(t, s, bucketFeedBodies, "webex", []byte("not gzip"))
	if err := s.PutSignal(t.Context(), state.Signal{ID: "zoom|ended|zoom:83412345678||t", Vendor: "zoom", Event: state.SignalEnded, Meeting: "zoom:83412345678"}); err != nil {
		t.Fatal(err)
	}
	putRaw(t, s, bucketSignals, "bad-signal", []byte("7"))
	s.Close()

	r, err := Check(t.Context(), path, time.Second)
	if err != nil {
		t.Fatalf("Check error = %v", err)
	}
	if r.Clean() || r.BadRecords() != 4 || len(r.Problems) != 0 {
		t.Fatalf("Check = %d bad records, problems %q; want 4 bad records and no problem", r.BadRecords(), r.Problems)
	}
	type count struct {
		Good int
		Bad  []string
	}
	got := map[string]count{}
	for _, b := range r.Buckets {
		c := count{Good: b.Good}
		for _, rec := range b.Bad {
			c.Bad = append(c.Bad, rec.Bucket+" "+rec.Key)
		}
		got[b.Name] = c
	}
	want := map[string]count{
		"meta":       {Good: 1},
		"sessions":   {Good: 1, Bad: []string{"sessions bob@contoso.com"}},
		"identities": {Bad: []string{"identities carol@contoso.com"}},
		"feeds":      {Good: 1, Bad: []string{"feed_bodies webex"}},
		"signals":    {Good: 1, Bad: []string{"signals bad-signal"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Check per bucket (-want +got):\n%s", diff)
	}
}

func TestCheckDamagedFile(t *testing.T) {
	for name, data := range damagedFiles(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := Check(t.Context(), path, 100*time.Millisecond)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
					t.Errorf("Check(%s) error = %v; want ErrCorrupt naming the file", name, err)
				}
				return
			}
			if r.Clean() {
				t.Errorf("Check(%s) = clean; want bad records or problems", name)
			}
		})
	}
}

func TestCheckLockedOrMissing(t *testing.T) {
	_, path := openTemp(t) // held open, as by the daemon
	if _, err := Check(t.Context(), path, 100*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Errorf("Check(held file) error = %v; want ErrLocked", err)
	}
	missing := filepath.Join(t.TempDir(), "none.db")
	if _, err := Check(t.Context(), missing, time.Second); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Check(missing file) error = %v; want fs.ErrNotExist naming it", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Check created %s; want it left alone", missing)
	}
}

func TestMoveAside(t *testing.T) {
	s, path := openTemp(t)
	if err := s.PutIdentities(t.Context(), []state.Identity{{Address: "alice", ID: "id"}}); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 15, 4, 5, 0, time.FixedZone("CET", 3600))

	// Refused while the file is held.
	if _, err := MoveAside(path, now); !errors.Is(err, ErrLocked) {
		t.Errorf("MoveAside(held file) error = %v; want ErrLocked", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the held file is gone after a refused MoveAside: %v", err)
	}
	s.Close()

	dest, err := MoveAside(path, now)
	if err != nil {
		t.Fatalf("MoveAside error = %v", err)
	}
	if want := path + ".corrupt-20261201T140405Z"; dest != want {
		t.Errorf("MoveAside moved to %s; want %s", dest, want)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after MoveAside %s still exists (%v)", path, err)
	}
	// The old file is intact, and a fresh one starts empty.
	old, err := Open(dest, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ids, _ := old.Identities(t.Context()); ids["alice"].ID != "id" {
		t.Errorf("moved file lost its records")
	}
	old.Close()
	fresh, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ids, _ := fresh.Identities(t.Context()); len(ids) != 0 {
		t.Errorf("fresh file has the old records")
	}
	fresh.Close()

	// A second move in the same second does not overwrite the first.
	if _, err := MoveAside(path, now); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("MoveAside onto an existing name error = %v; want already exists", err)
	}
	os.Remove(path)
	if _, err := MoveAside(path, now); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("MoveAside(missing) error = %v; want fs.ErrNotExist", err)
	}
}
