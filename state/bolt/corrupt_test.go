package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/calpresence/calpresence/state"
)

// putRaw writes value under key in bucket, bypassing the encoders.
func putRaw(t *testing.T, s *Store, bucket []byte, key string, value []byte) {
	t.Helper()
	if err := s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Put([]byte(key), value) }); err != nil {
		t.Fatal(err)
	}
}

func TestSessionsSkipsUndecodableRecords(t *testing.T) {
	s, _ := openTemp(t)
	for _, u := range []string{"alice@contoso.com", "bob@contoso.com"} {
		if err := s.PutSession(t.Context(), sampleSession(u)); err != nil {
			t.Fatal(err)
		}
	}
	putRaw(t, s, bucketSessions, "carol@contoso.com", []byte("{not json"))
	putRaw(t, s, bucketSessions, "dave@contoso.com", []byte(`{"span_end": 42}`))

	got, err := s.Sessions(t.Context())
	var bad *state.BadRecordsError
	if !errors.As(err, &bad) {
		t.Fatalf("Sessions() error = %v; want a *BadRecordsError", err)
	}
	if keys := bad.Keys(); !slices.Equal(keys, []string{"carol@contoso.com", "dave@contoso.com"}) {
		t.Errorf("skipped keys = %q; want carol and dave", keys)
	}
	for _, r := range bad.Records {
		if r.Bucket != "sessions" || r.Err == nil {
			t.Errorf("bad record %+v; want bucket sessions and a reason", r)
		}
	}
	for _, want := range []string{"2 corrupt records", `sessions "carol@contoso.com"`, `sessions "dave@contoso.com"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Sessions() error = %q; want it to contain %q", err, want)
		}
	}
	if len(got) != 2 || got["alice@contoso.com"].UserID == "" || got["bob@contoso.com"].UserID == "" {
		t.Errorf("Sessions() = %v; want alice and bob, the records that decode", got)
	}

	// Writing the user's session again replaces the damaged record.
	if err := s.PutSession(t.Context(), sampleSession("carol@contoso.com")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(t.Context(), "dave@contoso.com"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Sessions(t.Context()); err != nil || len(got) != 3 {
		t.Errorf("Sessions() after rewriting = %d sessions, %v; want 3, nil", len(got), err)
	}
}

func TestSingleReadsReportBadRecordsError(t *testing.T) {
	s, _ := openTemp(t)
	if err := s.PutIdentities(t.Context(), []state.Identity{{Address: "bob", ID: "id-2"}}); err != nil {
		t.Fatal(err)
	}
	putRaw(t, s, bucketIdentities, "alice", []byte{0xff})
	ids, err := s.Identities(t.Context())
	var bad *state.BadRecordsError
	if !errors.As(err, &bad) || len(ids) != 1 || ids["bob"].ID != "id-2" || bad.Keys()[0] != "alice" {
		t.Errorf("Identities(one damaged) = %v, %v; want bob and a *BadRecordsError naming alice", ids, err)
	}
	if err := s.PutFeed(t.Context(), state.Feed{Source: "zoom", Body: []byte("BEGIN:VCALENDAR")}); err != nil {
		t.Fatal(err)
	}
	putRaw(t, s, bucketFeedBodies, "zoom", []byte("not gzip"))
	if _, ok, err := s.Feed(t.Context(), "zoom"); !errors.As(err, &bad) || ok || bad.Records[0].Bucket != "feed_bodies" {
		t.Errorf("Feed(damaged body) = %v, %v; want a *BadRecordsError in feed_bodies", ok, err)
	}
}

// damagedFiles returns a healthy state file's bytes and ways of damaging
// them the way disks and careless copies do.
func damagedFiles(t *testing.T) map[string][]byte {
	t.Helper()
	s, path := openTemp(t)
	var sessions []state.Session
	for i := range 300 {
		sessions = append(sessions, sampleSession(fmt.Sprintf("user%d@contoso.com", i)))
	}
	if err := s.PutSessions(t.Context(), sessions); err != nil {
		t.Fatal(err)
	}
	if err := s.PutFeed(t.Context(), state.Feed{Source: "zoom", Body: sampleICS(2000)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	if len(good) < 16*page {
		t.Fatalf("sample file is %d bytes; want at least 16 pages", len(good))
	}
	fill := func(from, to int, b byte) []byte {
		d := bytes.Clone(good)
		for i := from; i < to; i++ {
			d[i] = b
		}
		return d
	}
	return map[string][]byte{
		"text":           bytes.Repeat([]byte("not a database "), 1000),
		"one-page":       good[:page],
		"two-pages":      good[:2*page], // the meta pages only: the freelist page is gone
		"three-pages":    good[:3*page],
		"half":           good[:len(good)/2],
		"zeroed-meta":    fill(0, 2*page, 0),
		"garbage-after":  fill(2*page, len(good), 0xff),
		"zeroed-page-4":  fill(4*page, 5*page, 0),
		"zeroed-tail":    fill(len(good)/2, len(good), 0),
		"all-but-header": fill(16, len(good), 0x5a),
	}
}

// TestOpenDamagedFile: a damaged file is refused with ErrCorrupt naming the
// path, whatever the damage (these samples damage the meta pages, the
// freelist, the length, or the pages of sessions); it never panics or
// faults.
func TestOpenDamagedFile(t *testing.T) {
	for name, data := range damagedFiles(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, 100*time.Millisecond)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%s) succeeded; want ErrCorrupt", name)
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Errorf("Open(%s) error = %v; want ErrCorrupt naming the file", name, err)
			}
		})
	}
}

// TestReadOnDamagedPage: a page damaged while the store is open (the disk
// under a running daemon) makes a read fail with ErrCorrupt naming the file,
// not panic.
func TestReadOnDamagedPage(t *testing.T) {
	s, path := openTemp(t)
	var sessions []state.Session
	for i := range 300 {
		sessions = append(sessions, sampleSession(fmt.Sprintf("user%d@contoso.com", i)))
	}
	if err := s.PutSessions(t.Context(), sessions); err != nil {
		t.Fatal(err)
	}
	var root uint64
	s.db.View(func(tx *bbolt.Tx) error { root = uint64(tx.Bucket(bucketSessions).Root()); return nil })
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt(make([]byte, 4096), int64(root)*4096)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sessions(t.Context()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Errorf("Sessions() over a zeroed page = %v; want ErrCorrupt naming the file", err)
	}
	if _, err := s.Identities(t.Context()); err != nil {
		t.Errorf("Identities() in an undamaged bucket = %v; want nil", err)
	}
}

// TestOpenTruncatedFile: a copy cut short is refused before any read of a
// missing page (which would fault).
func TestOpenTruncatedFile(t *testing.T) {
	data := damagedFiles(t)["half"]
	path := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, time.Second)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("Open(truncated) = %v; want ErrCorrupt saying truncated", err)
	}
}
