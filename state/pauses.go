package state

import (
	"context"
	"errors"
	"time"
)

// Pause is a person's own opt-out (the self-service page's "pause"): the
// worker clears them at once and sets nothing for them until Until —
// calendar spans and live signals alike — or until they resume. Keyed by
// Entra object id; shared by every replica through the store, so that any
// replica can take it and the leader carries it out.
type Pause struct {
	// ID is the person's Entra object id; the key.
	ID string `json:"-"`
	// Since is when the person paused.
	Since time.Time `json:"since"`
	// Until is when the pause ends by itself; zero: until they resume.
	Until time.Time `json:"until,omitzero"`
}

// Active reports whether the pause is in force at now.
func (p Pause) Active(now time.Time) bool { return p.Until.IsZero() || now.Before(p.Until) }

// bucketPauses holds the pauses: key object id, value Pause (JSON). Open
// creates it in any schema-2 file (no schema change: an older build
// ignores it), as it did the signals bucket.
var bucketPauses = []byte("pauses")

// Pauses returns every stored pause, by object id, ended ones included
// (the engine forgets them). A record that does not decode is skipped and
// named in a *BadRecordsError, as in Sessions.
func (s *Store) Pauses(ctx context.Context) (map[string]Pause, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make(map[string]Pause)
	err := readAll(s, bucketPauses, func(k string, p Pause) {
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
func (s *Store) PutPause(ctx context.Context, p Pause) error {
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
