package signals

import (
	"context"
	"errors"
	"time"

	"github.com/calpresence/calpresence/internal/mailaddr"
	"github.com/calpresence/calpresence/state"
)

// Store keeps live meeting signals across restarts, and the inbox of
// those a standby queued for the leader; the state drivers implement it.
// An engine whose store does not (a dry run's) keeps them in memory only.
type Store interface {
	Signals(ctx context.Context) (map[string]state.Signal, error)
	// QueuedSignals returns the signals in the inbox alone (Queue),
	// without reading the others: the leader asks every InboxEvery.
	QueuedSignals(ctx context.Context) (map[string]state.Signal, error)
	PutSignal(ctx context.Context, sig state.Signal) error
	DeleteSignal(ctx context.Context, id string) error
}

// What became of a signal (the engine's Signal, Queue), for the log and the
// calpresence_webhook_signals_total metric.
const (
	Applied   = "applied"   // stored; the next reconcile (at once) follows it
	Duplicate = "duplicate" // the same fact was received before (a vendor's retry)
	Ignored   = "ignored"   // the participant is nobody the configuration covers
	Queued    = "queued"    // a standby queued it for the leader (Queue)
	// Pending: its person's look-up failed for now; it waits in the
	// inbox, tried again with back-off.
	Pending = "pending"
)

// LeftKeep is the shortest time a "left" is kept: longer than a vendor
// retries a delivery, so that a "joined" delivered after its "left" still
// finds it.
const LeftKeep = time.Hour

// ErrInvalid is wrapped by the errors Normalize (and so the engine's
// Signal and Queue) return for a signal that cannot be used (no meeting,
// an unknown event).
var ErrInvalid = errors.New("invalid signal")

// Normalize checks s and fills in what is derived from it: the
// time received, the event time (never after it was received), the
// participant's address case-folded, and the id.
func Normalize(s state.Signal) (state.Signal, error) {
	switch s.Event {
	case state.SignalEnded:
	case state.SignalLeft, state.SignalJoined:
		if s.Email == "" {
			return s, errors.Join(ErrInvalid, errors.New("no participant address"))
		}
	case state.SignalPresence, state.SignalCall:
		if s.Email == "" && s.Person == "" {
			return s, errors.Join(ErrInvalid, errors.New("no person"))
		}
		if s.Status == "" {
			return s, errors.Join(ErrInvalid, errors.New("no status"))
		}
	default:
		return s, errors.Join(ErrInvalid, errors.New("unknown event "+s.Event))
	}
	if s.Meeting == "" {
		return s, errors.Join(ErrInvalid, errors.New("no meeting"))
	}
	if s.Received.IsZero() {
		s.Received = time.Now()
	}
	if s.At.IsZero() || s.At.After(s.Received) {
		s.At = s.Received // a vendor's clock ahead of ours: now, not later
	}
	s.Email = mailaddr.Normalize(s.Email)
	event, who := s.Event, s.Email
	if isLive(&s) {
		// Two states of one call (or two presence statuses) at one time
		// are two facts; the person's vendor id stands until looked up.
		event += "/" + s.Status
		if who == "" {
			who = "id:" + s.Person
		}
	}
	s.ID = state.SignalID(s.Vendor, event, s.Meeting, who, s.At)
	return s, nil
}

// inboxPrefix marks the signals standbys queued (Queue) in the store
// shared with the leader: under their own keys, so that a vendor's retry
// queued by a standby never replaces the record of a signal applied.
const inboxPrefix = state.QueuedPrefix

// Queue keeps s in st's inbox, for the engine of the replica that
// leads to apply (its TakeInbox): a standby has no feeds to apply it to, and
// the webhook was answered before it was read.
func Queue(ctx context.Context, st Store, s state.Signal) (string, error) {
	s, err := Normalize(s)
	if err != nil {
		return "", err
	}
	if err := st.PutSignal(ctx, withID(s, inboxPrefix+s.ID)); err != nil {
		return "", err
	}
	return Queued, nil
}

func withID(s state.Signal, id string) state.Signal {
	s.ID = id
	return s
}
