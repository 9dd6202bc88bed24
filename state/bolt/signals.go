package bolt

import (
	"bytes"
	"context"
	"encoding/json"

	bbolt "go.etcd.io/bbolt"

	"github.com/calpresence/calpresence/state"
)

// Signals returns every stored signal, by ID, expired ones included (the
// caller prunes them with DeleteSignal). A record that does not decode is
// skipped and named in a *BadRecordsError, as in Sessions.
func (s *Store) Signals(ctx context.Context) (map[string]state.Signal, error) {
	out := make(map[string]state.Signal)
	err := readAll(s, bucketSignals, func(k string, sig state.Signal) {
		sig.ID = k
		out[k] = sig
	})
	if err != nil && !isBadRecords(err) {
		return nil, err
	}
	return out, err
}

// QueuedSignals returns the signals waiting in the inbox (their ID begins
// with QueuedPrefix), by ID, and reads no other: the bucket is sorted by
// key, and a cursor finds them together. A record that does not decode is
// skipped and named in a *BadRecordsError, as in Sessions.
func (s *Store) QueuedSignals(ctx context.Context) (map[string]state.Signal, error) {
	out := make(map[string]state.Signal)
	var bad []state.BadRecord
	prefix := []byte(state.QueuedPrefix)
	err := s.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSignals)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, data := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, data = c.Next() {
			var sig state.Signal
			if err := json.Unmarshal(data, &sig); err != nil {
				bad = append(bad, state.BadRecord{Bucket: string(bucketSignals), Key: string(k), Err: err})
				continue
			}
			sig.ID = string(k)
			out[sig.ID] = sig
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return out, &state.BadRecordsError{Records: bad}
	}
	return out, nil
}

// Signal returns the signal stored under id, and whether there is one.
func (s *Store) Signal(ctx context.Context, id string) (state.Signal, bool, error) {
	var sig state.Signal
	found, err := s.get(bucketSignals, id, &sig)
	sig.ID = id
	return sig, found, err
}

// PutSignal records sig under sig.ID, durably.
func (s *Store) PutSignal(ctx context.Context, sig state.Signal) error {
	return s.put(bucketSignals, sig.ID, sig)
}

// DeleteSignal forgets the signal stored under id; forgetting none is not
// an error.
func (s *Store) DeleteSignal(ctx context.Context, id string) error {
	return s.delete(bucketSignals, id)
}
