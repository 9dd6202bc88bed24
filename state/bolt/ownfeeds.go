package bolt

import (
	"context"
	"errors"

	"github.com/calpresence/calpresence/state"
)

// bucketOwnFeeds holds the feeds people added: key feed id, value
// state.OwnFeed (JSON, the URL sealed). Created by Open in any schema-2
// file, as the pauses.
var bucketOwnFeeds = []byte("own_feeds")

// OwnFeeds returns every stored own feed, by id. A record that does not
// decode is skipped and named in a *BadRecordsError, as in Sessions.
func (s *Store) OwnFeeds(ctx context.Context) (map[string]state.OwnFeed, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make(map[string]state.OwnFeed)
	err := readAll(s, bucketOwnFeeds, func(k string, f state.OwnFeed) {
		f.ID = k
		out[k] = f
	})
	if err != nil && !isBadRecords(err) {
		return nil, err
	}
	return out, err
}

// PutOwnFeed records f under f.ID, durably.
func (s *Store) PutOwnFeed(ctx context.Context, f state.OwnFeed) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if f.ID == "" {
		return errors.New("state: put own feed: empty id")
	}
	return s.put(bucketOwnFeeds, f.ID, f)
}

// DeleteOwnFeed forgets the feed id; forgetting none is not an error.
func (s *Store) DeleteOwnFeed(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.delete(bucketOwnFeeds, id)
}
