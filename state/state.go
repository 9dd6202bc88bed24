// Package state is calpresence's durable record, as records: the Graph
// presence sessions it holds (Session), what Entra said of each address
// (Identity), the last good copy of every feed (Feed) and live meeting
// signals (Signal), with Store, the interface every driver implements.
// The drivers are state/bolt (one bbolt file, the default) and state/pg
// (PostgreSQL, for several replicas); state/storetest is the contract
// both keep.
//
// A record that does not decode is skipped and reported (*BadRecordsError),
// never fatal for the others.
package state

import "context"

// Store is what a driver keeps: sessions by person, resolved addresses,
// feed copies and signals. Its methods are safe for concurrent use. Each
// works under the ctx it is given: a driver that waits for anything (a
// database) gives up when ctx ends, with ctx's error.
type Store interface {
	// Sessions returns every recorded session, by Session.Key. It may
	// return the sessions that decode together with a *BadRecordsError
	// for those that do not: not fatal.
	Sessions(ctx context.Context) (map[string]Session, error)
	// PutSession records sess under sess.Key(), replacing any earlier one.
	PutSession(ctx context.Context, sess Session) error
	// PutSessions records many sessions at once: all or none.
	PutSessions(ctx context.Context, sessions []Session) error
	// DeleteSession forgets the session under key; forgetting none is no
	// error.
	DeleteSession(ctx context.Context, key string) error

	// Identities returns every cached identity, by normalised address
	// (a *BadRecordsError as in Sessions).
	Identities(ctx context.Context) (map[string]Identity, error)
	// PutIdentities records ids, each under its normalised address: all
	// or none.
	PutIdentities(ctx context.Context, ids []Identity) error
	// DeleteIdentity forgets what is cached for address.
	DeleteIdentity(ctx context.Context, address string) error
	// DeleteIdentities forgets what is cached for each of addresses, at
	// once.
	DeleteIdentities(ctx context.Context, addresses []string) error

	// Feed returns the stored copy of source's feed, and whether there is
	// one.
	Feed(ctx context.Context, source string) (Feed, bool, error)
	// PutFeed stores f as its source's last good copy.
	PutFeed(ctx context.Context, f Feed) error
	// PutFeeds stores several copies at once: all or none.
	PutFeeds(ctx context.Context, feeds []Feed) error
	// FeedHeads returns every stored copy without its body (Body nil)
	// and with its Expansion: what a restart reconciles from before any
	// copy is parsed. A copy whose record is damaged is left out (Feed
	// reports it); a damaged expansion is left empty.
	FeedHeads(ctx context.Context) ([]Feed, error)
	// DeleteFeedsExcept drops the copies of every source not in sources.
	DeleteFeedsExcept(ctx context.Context, sources []string) error

	// Signals returns every stored signal, by ID, expired ones and the
	// inbox included (a *BadRecordsError as in Sessions).
	Signals(ctx context.Context) (map[string]Signal, error)
	// QueuedSignals returns the signals in the inbox alone (QueuedPrefix).
	QueuedSignals(ctx context.Context) (map[string]Signal, error)
	// Signal returns the signal stored under id, and whether there is one.
	Signal(ctx context.Context, id string) (Signal, bool, error)
	// PutSignal records sig under sig.ID.
	PutSignal(ctx context.Context, sig Signal) error
	// DeleteSignal forgets the signal under id; forgetting none is no
	// error.
	DeleteSignal(ctx context.Context, id string) error

	// Pauses returns every stored pause (the self-service page's), by
	// object id, ended ones included (a *BadRecordsError as in Sessions).
	Pauses(ctx context.Context) (map[string]Pause, error)
	// PutPause records p under p.ID, replacing the person's earlier one.
	PutPause(ctx context.Context, p Pause) error
	// DeletePause forgets the person's pause; forgetting none is no error.
	DeletePause(ctx context.Context, id string) error

	// OwnCalls returns every call people declared on their page, by
	// object id, ended ones included (a *BadRecordsError as in Sessions).
	OwnCalls(ctx context.Context) (map[string]OwnCall, error)
	// PutOwnCall records c under c.ID, replacing the person's earlier one.
	PutOwnCall(ctx context.Context, c OwnCall) error
	// DeleteOwnCall forgets the person's call; forgetting none is no
	// error.
	DeleteOwnCall(ctx context.Context, id string) error

	// OwnFeeds returns every feed people added on their page, by ID (a
	// *BadRecordsError as in Sessions).
	OwnFeeds(ctx context.Context) (map[string]OwnFeed, error)
	// PutOwnFeed records f under f.ID, replacing an earlier one.
	PutOwnFeed(ctx context.Context, f OwnFeed) error
	// DeleteOwnFeed forgets the feed id; forgetting none is no error.
	DeleteOwnFeed(ctx context.Context, id string) error

	// Ping reports whether the store can be used now (/readyz): a
	// database that answers, a file still open.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}
