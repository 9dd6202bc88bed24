package bolt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"syscall"

	bbolt "go.etcd.io/bbolt"
)

// Damage comes in two sizes, and they are handled apart:
//
//   - A record whose value does not decode (a *BadRecordsError) costs that
//     record only: readers skip it, return the rest, and report it.
//   - A file bbolt cannot read as a database at all (ErrCorrupt: garbage, a
//     truncated copy, damaged pages) cannot be used; the operator moves it
//     aside (MoveAside, `calpresence state reset`) and the worker starts
//     afresh.

// ErrCorrupt reports a state file that cannot be read as a database: not a
// bbolt file, truncated, or with damaged pages. Open and Check wrap it with
// the path; the way out is MoveAside.
var ErrCorrupt = errors.New("state file is damaged")

// openBolt opens path with bbolt, turning what a damaged file does to bbolt
// into an ErrCorrupt error naming nothing but the damage (the caller adds
// the path). bbolt reports a garbage file as ErrInvalid, but it panics on a
// damaged freelist page, and a truncated file makes it read past the end of
// its memory map (a fault, which would kill the process): both are caught
// here. The file size is checked against the pages the file claims, so a
// truncated file is refused before anything reads the missing pages.
func openBolt(path string, opts *bbolt.Options) (db *bbolt.DB, err error) {
	var file *os.File
	opts.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	defer func() {
		if r := recover(); r != nil {
			// bbolt did not get to close the file: do it. Its memory
			// map cannot be reached from here and stays, and with it
			// (on Linux) the file's lock, until the process exits: a
			// process that retries Open on the same damaged file gets
			// ErrLocked. The daemon exits on this error, so it does not.
			if file != nil {
				file.Close()
			}
			db, err = nil, fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))

	db, err = bbolt.Open(path, 0o600, opts)
	if err != nil {
		return nil, classifyOpenError(err)
	}
	if err := checkSize(db, file); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// classifyOpenError marks the errors of bbolt.Open that are about the file's
// content as ErrCorrupt. The lock timeout and the operating system's errors
// (no such directory, permission denied, mmap failures) are not.
func classifyOpenError(err error) error {
	var (
		pathErr *fs.PathError
		errno   syscall.Errno
	)
	if errors.Is(err, bbolt.ErrTimeout) || errors.As(err, &pathErr) || errors.As(err, &errno) {
		return err
	}
	// bbolt.ErrInvalid, ErrChecksum, ErrVersionMismatch, "file size too
	// small", and whatever else the meta pages make bbolt say.
	return fmt.Errorf("%w: %w", ErrCorrupt, err)
}

// checkSize refuses a file shorter than the pages its meta page counts: a
// truncated copy. bbolt itself does not check, and would fault on the first
// read of a missing page.
func checkSize(db *bbolt.DB, f *os.File) error {
	if f == nil {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return db.View(func(tx *bbolt.Tx) error {
		if need := tx.Size(); fi.Size() < need {
			return fmt.Errorf("%w: the file is %d bytes but its pages need %d (truncated)", ErrCorrupt, fi.Size(), need)
		}
		return nil
	})
}

// view runs fn in a read transaction. A damaged page makes bbolt panic or
// read outside its memory map; either becomes an ErrCorrupt error naming the
// file instead of a crash of the worker.
func (s *Store) view(fn func(*bbolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("state %s: %w: %v", s.path, ErrCorrupt, r)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return s.db.View(fn)
}

// recoverDamage, deferred, turns a panic (from bbolt reading a damaged page,
// or a memory fault under debug.SetPanicOnFault) into an ErrCorrupt error.
func recoverDamage(errp *error) {
	if r := recover(); r != nil {
		*errp = fmt.Errorf("%w: %v", ErrCorrupt, r)
	}
}

// probe reads every page of the buckets a pass cannot do without (sessions,
// identities), so that Open refuses a file damaged there with ErrCorrupt
// instead of handing the daemon a store whose every pass fails. The feed
// copies are left to their own reads: a damaged one costs that feed's copy
// only. It costs a few milliseconds for 10,000 users.
func (s *Store) probe() error {
	return s.view(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketSessions, bucketIdentities} {
			if err := tx.Bucket(name).ForEach(func(k, v []byte) error { return nil }); err != nil {
				return err
			}
		}
		return nil
	})
}
