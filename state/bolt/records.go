package bolt

import (
	"encoding/json"
	"errors"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/calpresence/calpresence/state"
)

// readAll decodes every record of bucket and hands each to add with its
// key. A record that does not decode is skipped: readAll then returns a
// *BadRecordsError naming the skipped keys once the rest are read, which
// callers report and otherwise ignore. Any other error means nothing could
// be read. A missing bucket has no records.
func readAll[T any](s *Store, bucket []byte, add func(key string, v T)) error {
	var bad []state.BadRecord
	err := s.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, data []byte) error {
			var v T
			if err := json.Unmarshal(data, &v); err != nil {
				bad = append(bad, state.BadRecord{Bucket: string(bucket), Key: string(k), Err: err})
				return nil
			}
			add(string(k), v)
			return nil
		})
	})
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return &state.BadRecordsError{Records: bad}
	}
	return nil
}

// putAll encodes values and stores each under its key, all in one
// transaction (a batch shared with concurrent writers, or its own): all or
// none. what names the records in errors ("sessions").
func putAll[T any](s *Store, bucket []byte, what string, values []T, key func(T) (string, error), batch bool) error {
	type rec struct {
		key  string
		data []byte
	}
	recs := make([]rec, 0, len(values))
	for _, v := range values {
		k, err := key(v)
		if err != nil {
			return err
		}
		data, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("state: encode %s %q: %w", bucket, k, err)
		}
		recs = append(recs, rec{k, data})
	}
	tx := s.db.Update
	if batch {
		tx = s.db.Batch
	}
	err := tx(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket)
		for _, r := range recs {
			if err := b.Put([]byte(r.key), r.data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: put %d %s: %w", len(values), what, err)
	}
	return nil
}

// isBadRecords reports whether err is readAll's "some records skipped".
func isBadRecords(err error) bool {
	var bad *state.BadRecordsError
	return errors.As(err, &bad)
}
