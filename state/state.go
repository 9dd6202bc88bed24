// Package state is calpresence's durable record: the Graph presence sessions
// it holds, the user-id cache, and the last good copy of every feed. It lives
// in one bbolt file, so a restarted worker knows what it set before it went
// down and can reconcile at once, even before its feeds answer.
//
// Every write is its own fsync'd transaction: when a Put returns, the record
// survives a crash. The file is locked (flock) while a Store is open; a
// second opener, in this process or another, gets ErrLocked instead of
// waiting forever or sharing the file.
//
// A record that does not decode is skipped and reported (*BadRecordsError),
// never fatal for the others; a file that cannot be read as a database at
// all is ErrCorrupt, and MoveAside gets it out of the way. Check reports
// both.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrLocked reports that another Store (usually the running daemon) holds
// the state file.
var ErrLocked = errors.New("state file is locked by another process (is the daemon running?)")

// ErrFenced reports a write the store refused because the writer's term
// as leader is over: another replica took the lead since (state/pgstate's
// leader epochs). It is not worth retrying: the writer must stop acting.
// The bbolt file, which one process holds, never returns it.
var ErrFenced = errors.New("this replica's term as leader is over (fenced)")

// schemaVersion is the layout of the file. Open refuses a newer one rather
// than misread it, and migrates an older one in place (migrate.go).
//
//	1: sessions keyed by the configured address; user_ids caches ids.
//	2: sessions keyed by Entra object id; identities caches resolutions.
const schemaVersion = 2

var (
	bucketMeta       = []byte("meta")
	bucketSessions   = []byte("sessions")
	bucketIdentities = []byte("identities")  // key lower-cased address, value Identity (JSON)
	bucketFeeds      = []byte("feeds")       // key source, value feedRecord (JSON)
	bucketFeedBodies = []byte("feed_bodies") // key source, value gzip-compressed body
	bucketSignals    = []byte("signals")     // key Signal.ID, value Signal (JSON); added in schema 2 by init, no migration
	// key source, value EncodeExpansion; added by init, no migration (a
	// file without it has no expansions: its copies are parsed at start)
	bucketFeedExpansions = []byte("feed_expansions")
	keyVersion           = []byte("version")

	allBuckets = [][]byte{bucketMeta, bucketSessions, bucketIdentities, bucketFeeds, bucketFeedBodies, bucketSignals, bucketFeedExpansions, bucketPauses, bucketOwnCalls}
)

// Store is an open state file. Its methods are safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string
}

// Open opens or creates the state file at path, creating its directory if
// needed. If another Store holds the file, Open retries for up to timeout and
// then fails with ErrLocked; a timeout <= 0 tries once. It never blocks
// indefinitely, so `calpresence resync` next to a live daemon cannot hang
// or touch the daemon's file. A directory it cannot write (permissions, a
// read-only file system) is ErrNotWritable, with the fix in its text.
func Open(path string, timeout time.Duration) (*Store, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, explainNotWritable(path, fmt.Errorf("open state %s: %w", path, err))
		}
	}
	if timeout <= 0 {
		// bbolt treats 0 as "wait forever"; any positive value shorter than
		// its 50ms retry interval means a single attempt.
		timeout = time.Nanosecond
	}
	db, err := openBolt(path, &bolt.Options{Timeout: timeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open state %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, explainNotWritable(path, fmt.Errorf("open state %s: %w", path, err))
	}
	s := &Store{db: db, path: path}
	if err := s.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	if err := s.probe(); err != nil {
		db.Close()
		return nil, err // names the file
	}
	return s, nil
}

func (s *Store) init() (err error) {
	defer recoverDamage(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		v := meta.Get(keyVersion)
		if v == nil {
			return meta.Put(keyVersion, []byte(strconv.Itoa(schemaVersion)))
		}
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return fmt.Errorf("%w: meta %q: bad schema version %q", ErrCorrupt, keyVersion, v)
		}
		if n > schemaVersion {
			return fmt.Errorf("schema version %d is newer than this build's %d", n, schemaVersion)
		}
		if n < schemaVersion {
			if err := migrate(tx, n); err != nil {
				return fmt.Errorf("migrate schema %d to %d: %w", n, schemaVersion, err)
			}
			return meta.Put(keyVersion, []byte(strconv.Itoa(schemaVersion)))
		}
		return nil
	})
}

// Path returns the file the Store was opened on.
func (s *Store) Path() string { return s.path }

// Close releases the file and its lock.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close state %s: %w", s.path, err)
	}
	return nil
}

// Session is a Graph presence session we hold (or are about to set) for one
// person. The reconciler records it before and after each Graph call, so
// that after a restart it knows what Graph may still be showing.
//
// A session is keyed by the person's Entra object id: Graph holds one app
// session per person, whatever address named them.
type Session struct {
	UserID string `json:"user_id"`       // Entra object id; the key
	UPN    string `json:"upn,omitempty"` // the person's UPN when known, for logs
	// Address is set only on a record migrated from schema 1 whose person
	// was never resolved: it is keyed by this address until the worker
	// resolves it (UserID is then empty).
	Address      string    `json:"address,omitempty"`
	Availability string    `json:"availability"`
	Activity     string    `json:"activity"`
	SpanStart    time.Time `json:"span_start"`
	SpanEnd      time.Time `json:"span_end"` // the span end the lease was set for
	Expires      time.Time `json:"expires"`  // when Graph drops the session: set time + expiration
	SetAt        time.Time `json:"set_at"`
	// Pending is "" when the last call completed, and "set" or "clear" while
	// one is in flight (it is recorded before the call), so a crash mid-call
	// leaves a trace the next start can act on.
	Pending string     `json:"pending,omitempty"`
	Events  []EventRef `json:"events,omitempty"` // the occurrences making up the span
	// HeldUntil is set by an operator's clear (calpresence clear,
	// POST /-/clear): nothing is set for the person before it (the end of
	// the span they were in). It is kept with the session, so a restart or
	// another replica honours it; once the clear has gone through the
	// record stays as a hold with no lease (Expires not after the clear).
	HeldUntil time.Time `json:"held_until,omitzero"`
	// Lost is set by the read-back when Teams showed less than this
	// session while it should be in force: Graph dropped it. The next
	// reconcile sets it again (reason "lost").
	Lost bool `json:"lost,omitempty"`
	// Reasserted records that a lost session of this span (SpanStart) was
	// set again once already: if Teams still shows less, it is the
	// person's own status, not a loss.
	Reasserted bool `json:"reasserted,omitempty"`
	// OwnStatusUntil is set by the read-back when the person's own status
	// in Teams beat a re-set session: nothing is set for them before it
	// (the end of that span). Kept with the session, like HeldUntil, so a
	// restart does not fight the person either.
	OwnStatusUntil time.Time `json:"own_status_until,omitzero"`
	// Message is the Teams status message the worker set for this span
	// (presence.status_message filled in), "" when none: at the span's
	// end it is cleared only while Teams still shows this text.
	Message string `json:"message,omitempty"`
}

// OwnStatusAt reports whether the person's own status in Teams is left
// alone at now (OwnStatusUntil).
func (s Session) OwnStatusAt(now time.Time) bool { return now.Before(s.OwnStatusUntil) }

// HeldAt reports whether an operator's clear holds the person back at now.
func (s Session) HeldAt(now time.Time) bool { return now.Before(s.HeldUntil) }

// Live reports whether the record stands for a session Graph may hold at
// now: a lease not run out, or a call whose outcome is not known yet. A
// record that is only an operator's hold is not live.
func (s Session) Live(now time.Time) bool { return s.Pending != "" || s.Expires.After(now) }

// Pending values of a Session.
const (
	PendingSet   = "set"
	PendingClear = "clear"
)

// EventRef names one occurrence of a span, so an early end can say which
// event changed.
type EventRef struct {
	Source       string    `json:"source"`
	UID          string    `json:"uid"`
	RecurrenceID time.Time `json:"recurrence_id,omitzero"`
	Start        time.Time `json:"start"`
	End          time.Time `json:"end"`
}

// Key is the key the session is stored under: the object id, or for a
// migrated record not yet resolved, its address.
func (s Session) Key() string {
	if s.UserID != "" {
		return s.UserID
	}
	return s.Address
}

// Sessions returns every recorded session, by Key. A record that does not
// decode is skipped: Sessions then returns the good sessions together with a
// *BadRecordsError naming the skipped keys, which the caller reports and
// otherwise ignores (see BadRecordsError). Any other error means no
// session could be read.
func (s *Store) Sessions() (map[string]Session, error) {
	out := make(map[string]Session)
	err := readAll(s, bucketSessions, func(k string, sess Session) { out[k] = sess })
	if err != nil && !isBadRecords(err) {
		return nil, err
	}
	return out, err
}

// PutSession records sess under sess.Key(), replacing any earlier one.
func (s *Store) PutSession(sess Session) error {
	if sess.Key() == "" {
		return errors.New("state: put session: no user id")
	}
	return s.put(bucketSessions, sess.Key(), sess)
}

// PutSessions records many sessions in one transaction.
func (s *Store) PutSessions(sessions []Session) error {
	return putAll(s, bucketSessions, "sessions", sessions, func(sess Session) (string, error) {
		if sess.Key() == "" {
			return "", errors.New("state: put session: no user id")
		}
		return sess.Key(), nil
	}, false)
}

// DeleteSession forgets the session stored under key (a Session's Key);
// forgetting none is not an error.
func (s *Store) DeleteSession(key string) error {
	return s.delete(bucketSessions, key)
}

func (s *Store) put(bucket []byte, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("state: encode %s %q: %w", bucket, key, err)
	}
	// Batch, not Update: writes from concurrent presence calls share one
	// fsync'd transaction instead of queueing for one each (a burst of
	// 2,000 starts would otherwise spend seconds in fsync). Each call still
	// returns only once its write is durable.
	err = s.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(key), data)
	})
	if err != nil {
		return fmt.Errorf("state: put %s %q: %w", bucket, key, err)
	}
	return nil
}

func (s *Store) get(bucket []byte, key string, v any) (bool, error) {
	var found bool
	err := s.view(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucket).Get([]byte(key))
		if data == nil {
			return nil
		}
		found = true
		return decode(bucket, []byte(key), data, v)
	})
	if err != nil {
		return false, err
	}
	return found, nil
}

func (s *Store) delete(bucket []byte, key string) error {
	if key == "" {
		return nil
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Delete([]byte(key))
	})
	if err != nil {
		return fmt.Errorf("state: delete %s %q: %w", bucket, key, err)
	}
	return nil
}

// decode unmarshals one record. A damaged record is a *BadRecordsError
// naming it, not a panic or a silent zero value.
func decode(bucket, key, data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return badRecord(bucket, key, err)
	}
	return nil
}
