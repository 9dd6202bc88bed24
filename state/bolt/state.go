// Package bolt is the default state driver (a state.Store): the Graph
// presence sessions calpresence holds, the resolved addresses, the last
// good copy of every feed and live signals, in one bbolt file, so that a
// restarted worker knows what it set before it went down and can
// reconcile at once, even before its feeds answer.
//
// Every write is its own fsync'd transaction: when a Put returns, the record
// survives a crash. The file is locked (flock) while a Store is open; a
// second opener, in this process or another, gets ErrLocked instead of
// waiting forever or sharing the file.
//
// A record that does not decode is skipped and reported
// (*state.BadRecordsError), never fatal for the others; a file that cannot
// be read as a database at all is ErrCorrupt, and MoveAside gets it out of
// the way. Check reports both.
package bolt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/calpresence/calpresence/state"
)

// ErrLocked reports that another Store (usually the running daemon) holds
// the state file.
var ErrLocked = errors.New("state file is locked by another process (is the daemon running?)")

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
	// key source, value state.EncodeExpansion; added by init, no migration
	// (a file without it has no expansions: its copies are parsed at start)
	bucketFeedExpansions = []byte("feed_expansions")
	keyVersion           = []byte("version")

	allBuckets = [][]byte{bucketMeta, bucketSessions, bucketIdentities, bucketFeeds, bucketFeedBodies, bucketSignals, bucketFeedExpansions, bucketPauses, bucketOwnCalls, bucketOwnFeeds}
)

// Store is an open state file. Its methods are safe for concurrent use.
type Store struct {
	db   *bbolt.DB
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
	db, err := openBolt(path, &bbolt.Options{Timeout: timeout})
	if errors.Is(err, bbolt.ErrTimeout) {
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
	return s.db.Update(func(tx *bbolt.Tx) error {
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

// Ping reports whether the file is still open. bbolt's reads and writes
// cannot be cut short: ctx is not consulted here or by the other methods.
func (s *Store) Ping(ctx context.Context) error {
	return s.view(func(*bbolt.Tx) error { return nil })
}

// Close releases the file and its lock.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close state %s: %w", s.path, err)
	}
	return nil
}

// Sessions returns every recorded session, by Key. A record that does not
// decode is skipped: Sessions then returns the good sessions together with a
// *BadRecordsError naming the skipped keys, which the caller reports and
// otherwise ignores (see BadRecordsError). Any other error means no
// session could be read.
func (s *Store) Sessions(ctx context.Context) (map[string]state.Session, error) {
	out := make(map[string]state.Session)
	err := readAll(s, bucketSessions, func(k string, sess state.Session) { out[k] = sess })
	if err != nil && !isBadRecords(err) {
		return nil, err
	}
	return out, err
}

// PutSession records sess under sess.Key(), replacing any earlier one.
func (s *Store) PutSession(ctx context.Context, sess state.Session) error {
	if sess.Key() == "" {
		return errors.New("state: put session: no user id")
	}
	return s.put(bucketSessions, sess.Key(), sess)
}

// PutSessions records many sessions in one transaction.
func (s *Store) PutSessions(ctx context.Context, sessions []state.Session) error {
	return putAll(s, bucketSessions, "sessions", sessions, func(sess state.Session) (string, error) {
		if sess.Key() == "" {
			return "", errors.New("state: put session: no user id")
		}
		return sess.Key(), nil
	}, false)
}

// DeleteSession forgets the session stored under key (a Session's Key);
// forgetting none is not an error.
func (s *Store) DeleteSession(ctx context.Context, key string) error {
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
	err = s.db.Batch(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(key), data)
	})
	if err != nil {
		return fmt.Errorf("state: put %s %q: %w", bucket, key, err)
	}
	return nil
}

func (s *Store) get(bucket []byte, key string, v any) (bool, error) {
	var found bool
	err := s.view(func(tx *bbolt.Tx) error {
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
	err := s.db.Batch(func(tx *bbolt.Tx) error {
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
		return state.NewBadRecord(string(bucket), string(key), err)
	}
	return nil
}
