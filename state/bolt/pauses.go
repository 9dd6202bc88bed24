package bolt

import (
	"context"
	"errors"

	"github.com/calpresence/calpresence/state"
)

// bucketPauses holds the pauses: key object id, value state.Pause (JSON). Open
// creates it in any schema-2 file (no schema change: an older build
// ignores it), as it did the signals bucket.
var bucketPauses = []byte("pauses")

// Pauses returns every stored pause, by object id, ended ones included
// (the engine forgets them). A record that does not decode is skipped and
// named in a *BadRecordsError, as in Sessions.
func (s *Store) Pauses(ctx context.Context) (map[string]state.Pause, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make(map[string]state.Pause)
	err := readAll(s, bucketPauses, func(k string, p state.Pause) {
		p.ID = k
		out[k] = p
	})
	if err != nil && !isBadRecords(err) {
		return nil, err
	}
	return out, err
}

// PutPause records p under p.ID, durably, replacing an earlier pause of
// the same person.
func (s *Store) PutPause(ctx context.Context, p state.Pause) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.ID == "" {
		return errors.New("state: put pause: empty id")
	}
	return s.put(bucketPauses, p.ID, p)
}

// DeletePause forgets the pause of the person id; forgetting none is not
// an error.
func (s *Store) DeletePause(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.delete(bucketPauses, id)
}
