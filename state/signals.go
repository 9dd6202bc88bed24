package state

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Signal events: what a live meeting signal says happened.
const (
	SignalEnded  = "ended"  // the meeting ended, for everyone
	SignalLeft   = "left"   // one participant left
	SignalJoined = "joined" // one participant joined
	// SignalPresence is what a vendor says a person is doing now
	// (Status: Zoom's presence_status), whatever the calendar says.
	SignalPresence = "presence"
	// SignalCall is the state of one phone call of a person (Meeting: the
	// call; Status: Webex Calling's state).
	SignalCall = "call"
)

// Signal is one live meeting fact from a vendor's webhook (Zoom, Webex):
// a meeting ended, or a participant left or joined it. It overrides the
// schedule the feeds show until it expires, also across a restart and
// later polls of a feed that still shows the meeting running.
type Signal struct {
	// ID identifies the fact: vendor, event, meeting, participant and
	// time. A vendor's retry of one delivery has the same ID.
	ID     string `json:"-"`
	Vendor string `json:"vendor"` // "zoom" or "webex"
	Event  string `json:"event"`  // SignalEnded, SignalLeft, SignalJoined, SignalPresence, SignalCall
	// Meeting is the meeting's key, as ical.MeetingKeys spells it
	// ("zoom:83412345678").
	Meeting string `json:"meeting"`
	// Email is the participant's address, lower-cased (left, joined).
	Email string `json:"email,omitempty"`
	// Person is the vendor's id of the person when the event names no
	// address (Webex Calling's personId): Email is looked up from it.
	Person string `json:"person,omitempty"`
	// Unverified: the vendor does not vouch for the participant's
	// address (a Zoom guest, typed into a form; a Webex participant
	// neither host, invitee nor of the webhook's org). Such a joined or
	// left acts only on an occurrence that names that person.
	Unverified bool `json:"unverified,omitempty"`
	// Status is the vendor's word for what the person is doing
	// (presence, call): "In_Meeting", "connected", …
	Status string `json:"status,omitempty"`
	// At is when it happened, by the vendor's clock (never after
	// Received).
	At       time.Time `json:"at"`
	Received time.Time `json:"received"`
	// Expires is when the signal stops mattering: after the scheduled end
	// of the occurrences it concerns, or the cap on an unscheduled call.
	Expires time.Time `json:"expires"`
}

// SignalID is the identity of a signal's fact (Signal.ID).
func SignalID(vendor, event, meeting, email string, at time.Time) string {
	return vendor + "|" + event + "|" + meeting + "|" + NormalizeAddress(email) + "|" + at.UTC().Format(time.RFC3339Nano)
}

// Signals returns every stored signal, by ID, expired ones included (the
// caller prunes them with DeleteSignal). A record that does not decode is
// skipped and named in a *BadRecordsError, as in Sessions.
func (s *Store) Signals() (map[string]Signal, error) {
	out := make(map[string]Signal)
	err := readAll(s, bucketSignals, func(k string, sig Signal) {
		sig.ID = k
		out[k] = sig
	})
	if err != nil && !isBadRecords(err) {
		return nil, err
	}
	return out, err
}

// QueuedPrefix begins the ID of a signal queued for the replica that
// leads to apply (signals.Queue: a standby received the webhook). The
// leader reads them every 2 s, with QueuedSignals.
const QueuedPrefix = "inbox:"

// InstancePrefix begins the ID of a Webex meeting instance's record: its
// Meeting is the meeting key that instance stands for (from "meetings
// started"), shared by the replicas so that a participant's event received
// after a restart, or by another replica, still finds its meeting. It is
// no signal: engines skip it.
const InstancePrefix = "webex-instance:"

// SignalEventInstance is the Event of an InstancePrefix record.
const SignalEventInstance = "instance"

// Queued reports whether a signal stored under id waits in the inbox.
func Queued(id string) bool { return strings.HasPrefix(id, QueuedPrefix) }

// QueuedSignals returns the signals waiting in the inbox (their ID begins
// with QueuedPrefix), by ID, and reads no other: the bucket is sorted by
// key, and a cursor finds them together. A record that does not decode is
// skipped and named in a *BadRecordsError, as in Sessions.
func (s *Store) QueuedSignals() (map[string]Signal, error) {
	out := make(map[string]Signal)
	var bad []BadRecord
	prefix := []byte(QueuedPrefix)
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSignals)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, data := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, data = c.Next() {
			var sig Signal
			if err := json.Unmarshal(data, &sig); err != nil {
				bad = append(bad, BadRecord{Bucket: string(bucketSignals), Key: string(k), Err: err})
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
		return out, &BadRecordsError{Records: bad}
	}
	return out, nil
}

// Signal returns the signal stored under id, and whether there is one.
func (s *Store) Signal(id string) (Signal, bool, error) {
	var sig Signal
	found, err := s.get(bucketSignals, id, &sig)
	sig.ID = id
	return sig, found, err
}

// PutSignal records sig under sig.ID, durably.
func (s *Store) PutSignal(sig Signal) error {
	return s.put(bucketSignals, sig.ID, sig)
}

// DeleteSignal forgets the signal stored under id; forgetting none is not
// an error.
func (s *Store) DeleteSignal(id string) error {
	return s.delete(bucketSignals, id)
}
