package pg

import (
	"context"
	"errors"

	"github.com/calpresence/calpresence/state"
)

// tableOwnCalls holds the calls people declared
// (migrations/0006_own_calls.sql).
const tableOwnCalls = "own_calls"

// OwnCalls returns every stored call, by object id, ended ones included,
// with a *state.BadRecordsError for those that do not decode.
func (s *Store) OwnCalls(ctx context.Context) (map[string]state.OwnCall, error) {
	out := make(map[string]state.OwnCall)
	err := readAll(ctx, s, tableOwnCalls, func(k string, c state.OwnCall) {
		c.ID = k
		out[k] = c
	})
	if err != nil && !isBadRecords(err) {
		return nil, err
	}
	return out, err
}

// PutOwnCall records c under c.ID, durably, replacing the person's
// earlier call.
func (s *Store) PutOwnCall(ctx context.Context, c state.OwnCall) error {
	return putAll(ctx, s, tableOwnCalls, []state.OwnCall{c}, func(c state.OwnCall) (string, error) {
		if c.ID == "" {
			return "", errors.New("state: put own call: empty id")
		}
		return c.ID, nil
	})
}

// DeleteOwnCall forgets the call of the person id; forgetting none is not
// an error.
func (s *Store) DeleteOwnCall(ctx context.Context, id string) error {
	return s.delete(ctx, tableOwnCalls, id)
}
