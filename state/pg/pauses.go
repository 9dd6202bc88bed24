package pg

import (
	"context"
	"errors"

	"github.com/calpresence/calpresence/state"
)

// tablePauses holds people's pauses (migrations/0005_pauses.sql).
const tablePauses = "pauses"

// Pauses returns every stored pause, by object id, ended ones included,
// with a *state.BadRecordsError for those that do not decode (as
// Sessions).
func (s *Store) Pauses(ctx context.Context) (map[string]state.Pause, error) {
	out := make(map[string]state.Pause)
	err := readAll(ctx, s, tablePauses, func(k string, p state.Pause) {
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
	return putAll(ctx, s, tablePauses, []state.Pause{p}, func(p state.Pause) (string, error) {
		if p.ID == "" {
			return "", errors.New("state: put pause: empty id")
		}
		return p.ID, nil
	})
}

// DeletePause forgets the pause of the person id; forgetting none is not
// an error.
func (s *Store) DeletePause(ctx context.Context, id string) error {
	return s.delete(ctx, tablePauses, id)
}
