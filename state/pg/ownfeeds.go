package pg

import (
	"context"
	"errors"

	"github.com/calpresence/calpresence/state"
)

// tableOwnFeeds holds the feeds people added, their URLs sealed
// (migrations/0007_own_feeds.sql).
const tableOwnFeeds = "own_feeds"

// OwnFeeds returns every stored own feed, by id, with a
// *state.BadRecordsError for those that do not decode.
func (s *Store) OwnFeeds(ctx context.Context) (map[string]state.OwnFeed, error) {
	out := make(map[string]state.OwnFeed)
	err := readAll(ctx, s, tableOwnFeeds, func(k string, f state.OwnFeed) {
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
	return putAll(ctx, s, tableOwnFeeds, []state.OwnFeed{f}, func(f state.OwnFeed) (string, error) {
		if f.ID == "" {
			return "", errors.New("state: put own feed: empty id")
		}
		return f.ID, nil
	})
}

// DeleteOwnFeed forgets the feed id; forgetting none is not an error.
func (s *Store) DeleteOwnFeed(ctx context.Context, id string) error {
	return s.delete(ctx, tableOwnFeeds, id)
}
