package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/calpresence/calpresence/state"
)

// Report is what Check found in a state file.
type Report struct {
	Path    string
	Buckets []BucketReport // meta, sessions, identities, feeds, signals, in that order
	// Problems are damage below the records: what bbolt's own consistency
	// check found (pages, freelist), or a read that failed on a damaged
	// page.
	Problems []string
}

// BucketReport counts one bucket's records. A feed counts once, its
// metadata (feeds) and body (feed_bodies) together.
type BucketReport struct {
	Name    string
	Missing bool // the bucket does not exist (Open creates it)
	Good    int
	Bad     []state.BadRecord
}

// BadRecords returns how many records do not decode.
func (r *Report) BadRecords() int {
	n := 0
	for _, b := range r.Buckets {
		n += len(b.Bad)
	}
	return n
}

// Clean reports whether every record decodes and bbolt found no damage.
func (r *Report) Clean() bool { return r.BadRecords() == 0 && len(r.Problems) == 0 }

// Check reads every record of the state file at path the way the worker
// reads it, and runs bbolt's consistency check. It opens the file
// read-only, waiting up to timeout for a writer (the daemon) to let go,
// then fails with ErrLocked. A missing file is an error wrapping
// fs.ErrNotExist; a file that cannot be read as a database at all is
// ErrCorrupt.
func Check(ctx context.Context, path string, timeout time.Duration) (*Report, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("check state %s: %w", path, err)
	}
	if timeout <= 0 {
		timeout = time.Nanosecond // one try, as in Open
	}
	db, err := openBolt(path, &bbolt.Options{ReadOnly: true, Timeout: timeout})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("check state %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("check state %s: %w", path, err)
	}
	defer db.Close()
	s := &Store{db: db, path: path}
	r := &Report{Path: path}
	if !s.checkRecords(ctx, r) {
		// A read already hit a damaged page; bbolt's check would only
		// walk into it again.
		return r, nil
	}
	err = s.view(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			r.Problems = append(r.Problems, err.Error())
		}
		return nil
	})
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
	}
	return r, nil
}

// checkRecords fills r's buckets, reading each record through the same code
// the worker uses. It returns false when a read failed on a damaged page
// (recorded in r.Problems).
func (s *Store) checkRecords(ctx context.Context, r *Report) bool {
	var (
		present = make(map[string]bool)
		version []byte
		feedIDs []string
	)
	keys := func(b *bbolt.Bucket) (ks []string, err error) {
		if b == nil {
			return nil, nil
		}
		err = b.ForEach(func(k, _ []byte) error { ks = append(ks, string(k)); return nil })
		return ks, err
	}
	err := s.view(func(tx *bbolt.Tx) (err error) {
		for _, name := range allBuckets {
			present[string(name)] = tx.Bucket(name) != nil
		}
		if b := tx.Bucket(bucketMeta); b != nil {
			version = bytes.Clone(b.Get(keyVersion))
		}
		feedIDs, err = keys(tx.Bucket(bucketFeeds))
		return err
	})
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
		return false
	}

	meta := BucketReport{Name: string(bucketMeta), Missing: !present[string(bucketMeta)]}
	if version != nil {
		if n, err := strconv.Atoi(string(version)); err != nil || n < 1 || n > schemaVersion {
			meta.Bad = append(meta.Bad, state.BadRecord{Bucket: meta.Name, Key: string(keyVersion),
				Err: fmt.Errorf("schema version %q; this build reads 1..%d", version, schemaVersion)})
		} else {
			meta.Good++
		}
	}

	sessions := BucketReport{Name: string(bucketSessions), Missing: !present[string(bucketSessions)]}
	if !sessions.Missing {
		got, err := s.Sessions(ctx)
		if !tally(&sessions, err, r) {
			return false
		}
		sessions.Good = len(got) // tally counted the read as one
	}

	users := BucketReport{Name: string(bucketIdentities), Missing: !present[string(bucketIdentities)]}
	if !users.Missing {
		got, err := s.Identities(ctx)
		if !tally(&users, err, r) {
			return false
		}
		users.Good = len(got) // tally counted the read as one
	}

	// A feed is its metadata and its body: without the bodies bucket
	// there is no feed to read.
	feeds := BucketReport{Name: string(bucketFeeds), Missing: !present[string(bucketFeeds)] || !present[string(bucketFeedBodies)]}
	if !feeds.Missing {
		for _, k := range feedIDs {
			if _, _, err := s.Feed(ctx, k); !tally(&feeds, err, r) {
				return false
			}
		}
	}
	sigs := BucketReport{Name: string(bucketSignals), Missing: !present[string(bucketSignals)]}
	if !sigs.Missing {
		got, err := s.Signals(ctx)
		if !tally(&sigs, err, r) {
			return false
		}
		sigs.Good = len(got) // tally counted the read as one
	}
	r.Buckets = []BucketReport{meta, sessions, users, feeds, sigs}
	return true
}

// tally counts one record read: good, bad, or (false) a damaged page.
func tally(b *BucketReport, err error, r *Report) bool {
	var bad *state.BadRecordsError
	switch {
	case err == nil:
		b.Good++
	case errors.As(err, &bad):
		b.Bad = append(b.Bad, bad.Records...)
	default:
		r.Problems = append(r.Problems, err.Error())
		return false
	}
	return true
}

// MoveAside renames the state file at path to
// <path>.corrupt-<UTC time of now> and returns the new name. The file is
// kept, not deleted, for inspection; the next start creates a fresh one.
// It refuses with ErrLocked while another process (the daemon) holds the
// file, and with an error wrapping fs.ErrNotExist when there is none.
func MoveAside(path string, now time.Time) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("move state %s aside: %w", path, err)
	}
	defer f.Close()
	// Hold the lock across the rename, so a daemon cannot take the file
	// in between.
	if err := lockExclusive(f); err != nil {
		return "", fmt.Errorf("move state %s aside: %w", path, err)
	}
	dest := path + ".corrupt-" + now.UTC().Format("20060102T150405Z")
	if _, err := os.Lstat(dest); err == nil {
		return "", fmt.Errorf("move state %s aside: %s already exists", path, dest)
	}
	if err := os.Rename(path, dest); err != nil {
		return "", fmt.Errorf("move state %s aside: %w", path, err)
	}
	return dest, nil
}
