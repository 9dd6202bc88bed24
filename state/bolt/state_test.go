package bolt

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bbolt "go.etcd.io/bbolt"

	"github.com/calpresence/calpresence/state"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "state.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

var t0 = time.Date(2027, 3, 4, 15, 0, 0, 0, time.UTC)

func sampleSession(id string) state.Session {
	return state.Session{
		UserID:       id,
		UPN:          "alice@contoso.com",
		Availability: "Busy",
		Activity:     "InAConferenceCall",
		SpanStart:    t0,
		SpanEnd:      t0.Add(time.Hour),
		Expires:      t0.Add(time.Hour),
		SetAt:        t0.Add(-time.Second),
		Pending:      state.PendingSet,
		Events: []state.EventRef{
			{Source: "zoom-sales", UID: "ZOOM834", RecurrenceID: t0, Start: t0, End: t0.Add(30 * time.Minute)},
			{Source: "webex", UID: "single", Start: t0.Add(20 * time.Minute), End: t0.Add(time.Hour)},
		},
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

func TestSessions(t *testing.T) {
	s, _ := openTemp(t)

	got, err := s.Sessions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("Sessions() on a new file = %v; want none", got)
	}

	alice, bob := sampleSession("0f1e2d3c-aaaa-bbbb-cccc-000000000001"), sampleSession("0f1e2d3c-aaaa-bbbb-cccc-000000000002")
	bob.Events = nil
	bob.Pending = ""
	for _, sess := range []state.Session{alice, bob} {
		if err := s.PutSession(t.Context(), sess); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]state.Session{alice.UserID: alice, bob.UserID: bob}
	if got, err = s.Sessions(t.Context()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Sessions() mismatch (-want +got):\n%s", diff)
	}

	// A later put replaces; a delete forgets; deleting nothing is fine.
	alice.Pending = ""
	alice.Expires = t0.Add(2 * time.Hour)
	if err := s.PutSession(t.Context(), alice); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(t.Context(), bob.UserID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(t.Context(), "0f1e2d3c-aaaa-bbbb-cccc-00000000dead"); err != nil {
		t.Errorf("DeleteSession(unknown) = %v; want nil", err)
	}
	want = map[string]state.Session{alice.UserID: alice}
	if got, err = s.Sessions(t.Context()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Sessions() after update and delete mismatch (-want +got):\n%s", diff)
	}

	if err := s.PutSession(t.Context(), state.Session{}); err == nil {
		t.Error("PutSession(no user) = nil; want an error")
	}
}

func TestIdentities(t *testing.T) {
	s, _ := openTemp(t)
	if got, err := s.Identities(t.Context()); err != nil || len(got) != 0 {
		t.Errorf("Identities() on a new file = %v, %v; want none", got, err)
	}
	frank := state.Identity{Address: " Frank@Contoso.com", ID: "id-1", UPN: "frank@contoso.com", CheckedAt: t0}
	ghost := state.Identity{Address: "ghost@contoso.com", Unknown: true, CheckedAt: t0}
	if err := s.PutIdentities(t.Context(), []state.Identity{frank, ghost}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Identities(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	frank.Address = "frank@contoso.com" // keyed normalised
	want := map[string]state.Identity{"frank@contoso.com": frank, "ghost@contoso.com": ghost}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Identities() mismatch (-want +got):\n%s", diff)
	}
	if err := s.DeleteIdentity(t.Context(), "GHOST@contoso.com"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Identities(t.Context()); len(got) != 1 {
		t.Errorf("Identities() after DeleteIdentity = %v; want frank only", got)
	}
	if err := s.PutIdentities(t.Context(), []state.Identity{{}}); err == nil {
		t.Error("PutIdentities(no address) = nil; want an error")
	}
}

func TestFeedRoundTrip(t *testing.T) {
	s, _ := openTemp(t)
	if _, ok, err := s.Feed(t.Context(), "zoom"); err != nil || ok {
		t.Errorf("Feed(unknown) = _, %v, %v; want false, nil", ok, err)
	}

	body := sampleICS(200)
	in := state.Feed{
		Source:     "zoom",
		URLHash:    state.URLHash("https://example.zoom.us/feed.ics?token=x"),
		Validators: state.Validators{ETag: `W/"v1"`, LastModified: "Mon, 01 Mar 2027 10:00:00 GMT"},
		Body:       body,
		FetchedAt:  t0,
	}
	if err := s.PutFeed(t.Context(), in); err != nil { // Hash left zero: PutFeed computes it
		t.Fatal(err)
	}
	got, ok, err := s.Feed(t.Context(), "zoom")
	if err != nil || !ok {
		t.Fatalf("Feed(zoom) = _, %v, %v; want true, nil", ok, err)
	}
	want := in
	want.Hash = sha256.Sum256(body)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Feed(zoom) mismatch (-want +got):\n%s", diff)
	}

	// Stored compressed, as gzip.
	var stored []byte
	s.db.View(func(tx *bbolt.Tx) error {
		stored = bytes.Clone(tx.Bucket(bucketFeedBodies).Get([]byte("zoom")))
		return nil
	})
	if len(stored) >= len(body)/4 {
		t.Errorf("stored body is %d bytes for %d; want it compressed", len(stored), len(body))
	}
	r, err := gzip.NewReader(bytes.NewReader(stored))
	if err != nil {
		t.Fatalf("stored body is not gzip: %v", err)
	}
	if plain, _ := io.ReadAll(r); !bytes.Equal(plain, body) {
		t.Error("stored body does not gunzip to the feed")
	}

	// An empty feed is a feed too.
	if err := s.PutFeed(t.Context(), state.Feed{Source: "empty", Body: nil}); err != nil {
		t.Fatal(err)
	}
	if f, ok, err := s.Feed(t.Context(), "empty"); err != nil || !ok || len(f.Body) != 0 {
		t.Errorf("Feed(empty) = %v, %v, %v; want an empty body", f, ok, err)
	}
}

func TestDeleteFeedsExcept(t *testing.T) {
	s, _ := openTemp(t)
	for _, src := range []string{"a", "b", "c", "d"} {
		if err := s.PutFeed(t.Context(), state.Feed{Source: src, Body: []byte(src)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteFeedsExcept(t.Context(), []string{"b", "d", "not-stored"}); err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string]bool{"a": false, "b": true, "c": false, "d": true} {
		if _, ok, err := s.Feed(t.Context(), src); err != nil || ok != want {
			t.Errorf("Feed(%q) = _, %v, %v; want %v, nil", src, ok, err, want)
		}
	}
	// No stray bodies either.
	s.db.View(func(tx *bbolt.Tx) error {
		if n := tx.Bucket(bucketFeedBodies).Stats().KeyN; n != 2 {
			t.Errorf("%d feed bodies left; want 2", n)
		}
		return nil
	})
}

func TestConcurrentPutFeed(t *testing.T) {
	s, _ := openTemp(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if err := s.PutFeed(t.Context(), state.Feed{Source: fmt.Sprint("src-", i), Body: sampleICS(i)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i := range 20 {
		f, ok, err := s.Feed(t.Context(), fmt.Sprint("src-", i))
		if err != nil || !ok || !bytes.Equal(f.Body, sampleICS(i)) {
			t.Errorf("Feed(src-%d) = %v, %v; want the body written", i, ok, err)
		}
	}
}

func TestPutFeeds(t *testing.T) {
	s, _ := openTemp(t)
	feeds := []state.Feed{
		{Source: "a", Body: sampleICS(1), FetchedAt: t0},
		{Source: "b", Body: sampleICS(2), Validators: state.Validators{ETag: `"b"`}, FetchedAt: t0},
	}
	if err := s.PutFeeds(t.Context(), feeds); err != nil {
		t.Fatal(err)
	}
	for _, want := range feeds {
		want.Hash = sha256.Sum256(want.Body)
		got, ok, err := s.Feed(t.Context(), want.Source)
		if err != nil || !ok {
			t.Fatalf("Feed(%q) = _, %v, %v", want.Source, ok, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Feed(%q) mismatch (-want +got):\n%s", want.Source, diff)
		}
	}

	// All or nothing: a bad entry stores none of the batch.
	if err := s.PutFeeds(t.Context(), []state.Feed{{Source: "c", Body: []byte("c")}, {Body: []byte("no source")}}); err == nil {
		t.Error("PutFeeds(entry without source) = nil; want an error")
	}
	if _, ok, _ := s.Feed(t.Context(), "c"); ok {
		t.Error("Feed(c) stored although its batch failed")
	}
}

func TestPersistAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sess := sampleSession("0f1e2d3c-aaaa-bbbb-cccc-000000000001")
	frank := state.Identity{Address: "frank@contoso.com", ID: "id-1", UPN: "frank@contoso.com", CheckedAt: t0}
	feed := state.Feed{Source: "zoom", URLHash: state.URLHash("u"), Body: sampleICS(3), FetchedAt: t0}
	feed.Hash = sha256.Sum256(feed.Body)
	for _, err := range []error{s.PutSession(t.Context(), sess), s.PutIdentities(t.Context(), []state.Identity{frank}), s.PutFeed(t.Context(), feed)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sessions, err := s.Sessions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]state.Session{sess.UserID: sess}, sessions); diff != "" {
		t.Errorf("Sessions() after reopen mismatch (-want +got):\n%s", diff)
	}
	if ids, err := s.Identities(t.Context()); err != nil || ids["frank@contoso.com"] != frank {
		t.Errorf("Identities() after reopen = %v, %v; want %v", ids, err, frank)
	}
	got, ok, err := s.Feed(t.Context(), "zoom")
	if err != nil || !ok {
		t.Fatalf("Feed() after reopen = _, %v, %v", ok, err)
	}
	if diff := cmp.Diff(feed, got); diff != "" {
		t.Errorf("Feed() after reopen mismatch (-want +got):\n%s", diff)
	}
}

func TestOpenLocked(t *testing.T) {
	s, path := openTemp(t)

	// flock locks belong to the open file description, so a second Open in
	// the same process contends exactly like another process would.
	start := time.Now()
	s2, err := Open(path, 100*time.Millisecond)
	if err == nil {
		s2.Close()
		t.Fatal("second Open succeeded; want ErrLocked")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second Open error = %v; want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("second Open error = %q; want it to name %s", err, path)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second Open took %v; want about 100ms", d)
	}

	// A zero timeout tries once rather than waiting forever.
	if _, err := Open(path, 0); !errors.Is(err, ErrLocked) {
		t.Errorf("Open(timeout 0) error = %v; want ErrLocked", err)
	}

	// The holder is unharmed and keeps working.
	if err := s.PutIdentities(t.Context(), []state.Identity{{Address: "alice", ID: "id"}}); err != nil {
		t.Errorf("holder's PutIdentities after a failed second Open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s3, err := Open(path, 100*time.Millisecond)
	if err != nil {
		t.Fatalf("Open after the holder closed: %v", err)
	}
	defer s3.Close()
	if ids, err := s3.Identities(t.Context()); err != nil || ids["alice"].ID != "id" {
		t.Errorf("Identities() = %v, %v; want the holder's write", ids, err)
	}
}

// TestOpenLockedOtherProcess is the resync-next-to-a-daemon case: another
// process holds the file.
func TestOpenLockedOtherProcess(t *testing.T) {
	if path := os.Getenv("STATE_TEST_HOLD"); path != "" {
		s, err := Open(path, time.Second)
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		io.Copy(io.Discard, os.Stdin) // hold until the parent closes stdin
		s.Close()
		os.Exit(0)
	}

	path := filepath.Join(t.TempDir(), "state.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenLockedOtherProcess$")
	cmd.Env = append(os.Environ(), "STATE_TEST_HOLD="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	line := make([]byte, len("locked\n"))
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "locked\n" {
		t.Fatalf("helper said %q, %v; want locked", line, err)
	}

	if s, err := Open(path, 100*time.Millisecond); !errors.Is(err, ErrLocked) {
		if err == nil {
			s.Close()
		}
		t.Errorf("Open while another process holds the file: %v; want ErrLocked", err)
	}
}

func TestCorruptRecords(t *testing.T) {
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	goodFeed := func(s *Store) {
		if err := s.PutFeed(t.Context(), state.Feed{Source: "zoom", Body: []byte("BEGIN:VCALENDAR")}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		setup  func(s *Store)
		bucket []byte
		key    string
		value  []byte // nil deletes the key
		read   func(s *Store) error
		want   string // in the error, besides the key
	}{
		{
			name:   "session",
			bucket: bucketSessions, key: "alice@contoso.com", value: []byte("{not json"),
			read: func(s *Store) error { _, err := s.Sessions(t.Context()); return err },
			want: `corrupt record sessions "alice@contoso.com"`,
		},
		{
			name:   "session-wrong-type",
			bucket: bucketSessions, key: "bob", value: []byte(`{"span_end": 42}`),
			read: func(s *Store) error { _, err := s.Sessions(t.Context()); return err },
			want: `corrupt record sessions "bob"`,
		},
		{
			name:   "identity",
			bucket: bucketIdentities, key: "alice", value: []byte{0xff, 0x00},
			read: func(s *Store) error { _, err := s.Identities(t.Context()); return err },
			want: `corrupt record identities "alice"`,
		},
		{
			name: "feed-meta", setup: goodFeed,
			bucket: bucketFeeds, key: "zoom", value: []byte("[]"),
			read: func(s *Store) error { _, _, err := s.Feed(t.Context(), "zoom"); return err },
			want: `corrupt record feeds "zoom"`,
		},
		{
			name: "feed-body-not-gzip", setup: goodFeed,
			bucket: bucketFeedBodies, key: "zoom", value: []byte("BEGIN:VCALENDAR"),
			read: func(s *Store) error { _, _, err := s.Feed(t.Context(), "zoom"); return err },
			want: `corrupt record feed_bodies "zoom"`,
		},
		{
			name: "feed-body-truncated", setup: goodFeed,
			bucket: bucketFeedBodies, key: "zoom", value: gz(sampleICS(50))[:40],
			read: func(s *Store) error { _, _, err := s.Feed(t.Context(), "zoom"); return err },
			want: `corrupt record feed_bodies "zoom"`,
		},
		{
			name: "feed-body-other-content", setup: goodFeed,
			bucket: bucketFeedBodies, key: "zoom", value: gz([]byte("BEGIN:VCALENDAR!")),
			read: func(s *Store) error { _, _, err := s.Feed(t.Context(), "zoom"); return err },
			want: `corrupt record feed_bodies "zoom": body does not match its hash`,
		},
		{
			name: "feed-body-missing", setup: goodFeed,
			bucket: bucketFeedBodies, key: "zoom", value: nil,
			read: func(s *Store) error { _, _, err := s.Feed(t.Context(), "zoom"); return err },
			want: `corrupt record feed_bodies "zoom": body missing`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			if tt.setup != nil {
				tt.setup(s)
			}
			err := s.db.Update(func(tx *bbolt.Tx) error {
				if tt.value == nil {
					return tx.Bucket(tt.bucket).Delete([]byte(tt.key))
				}
				return tx.Bucket(tt.bucket).Put([]byte(tt.key), tt.value)
			})
			if err != nil {
				t.Fatal(err)
			}
			err = tt.read(s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("read error = %v; want one containing %q", err, tt.want)
			}
		})
	}
}

func TestOpenBadFiles(t *testing.T) {
	t.Run("not-bolt", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		if err := os.WriteFile(path, bytes.Repeat([]byte("not a database "), 1000), 0o600); err != nil {
			t.Fatal(err)
		}
		if s, err := Open(path, time.Second); err == nil {
			s.Close()
			t.Error("Open(garbage file) = nil error; want one")
		} else if !strings.Contains(err.Error(), path) {
			t.Errorf("Open(garbage file) error = %q; want it to name the file", err)
		}
	})

	t.Run("newer-schema", func(t *testing.T) {
		s, path := openTemp(t)
		s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyVersion, []byte("99")) })
		s.Close()
		if s, err := Open(path, time.Second); err == nil {
			s.Close()
			t.Error("Open(schema 99) = nil error; want one")
		} else if !strings.Contains(err.Error(), "schema version 99") {
			t.Errorf("Open(schema 99) error = %q; want it to name the version", err)
		}
	})
}

func TestPutSessions(t *testing.T) {
	s, _ := openTemp(t)
	in := []state.Session{{UserID: "a", Activity: "InACall"}, {UserID: "b", Pending: state.PendingSet}}
	if err := s.PutSessions(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	got, err := s.Sessions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["a"].Activity != "InACall" || got["b"].Pending != state.PendingSet {
		t.Errorf("Sessions() after PutSessions = %+v; want both records", got)
	}
	if err := s.PutSessions(t.Context(), []state.Session{{UserID: "c"}, {}}); err == nil {
		t.Error("PutSessions with an empty user: no error")
	}
	if got, _ := s.Sessions(t.Context()); len(got) != 2 {
		t.Errorf("a refused batch wrote %d sessions; want the 2 from before", len(got))
	}
}
