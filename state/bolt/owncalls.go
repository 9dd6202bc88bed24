package bolt

import (
	"context"
	"errors"

	"github.com/calpresence/calpresence/state"
)

// bucketOwnCalls holds the calls people declared: key object id, value
// state.OwnCall (JSON). Created by Open in any schema-2 file, as the pauses.
var bucketOwnCalls = []byte("own_calls")

// OwnCalls returns every stored call, by object id, ended ones included
// (the engine forgets them). A record that does not decode is skipped and
// named in a *BadRecordsError, as in Sessions.
func (s *Store) OwnCalls(ctx context.Context) (map[string]state.OwnCall, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make(map[string]state.OwnCall)
	err := readAll(s, bucketOwnCalls, func(k string, c state.OwnCall) {
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
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.ID == "" {
		return errors.New("state: put own call: empty id")
	}
	return s.put(bucketOwnCalls, c.ID, c)
}

// DeleteOwnCall forgets the call of the person id; forgetting none is not
// an error.
func (s *Store) DeleteOwnCall(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.delete(bucketOwnCalls, id)
}
