package state

import "time"

// Session is a Graph presence session we hold (or are about to set) for one
// person. The reconciler records it before and after each Graph call, so
// that after a restart it knows what Graph may still be showing.
//
// A session is keyed by the person's Entra object id: Graph holds one app
// session per person, whatever address named them.
type Session struct {
	UserID string `json:"user_id"`       // Entra object id; the key
	UPN    string `json:"upn,omitempty"` // the person's UPN when known, for logs
	// Address is set only on a record migrated from schema 1 whose person
	// was never resolved: it is keyed by this address until the worker
	// resolves it (UserID is then empty).
	Address      string    `json:"address,omitempty"`
	Availability string    `json:"availability"`
	Activity     string    `json:"activity"`
	SpanStart    time.Time `json:"span_start"`
	SpanEnd      time.Time `json:"span_end"` // the span end the lease was set for
	Expires      time.Time `json:"expires"`  // when Graph drops the session: set time + expiration
	SetAt        time.Time `json:"set_at"`
	// Pending is "" when the last call completed, and "set" or "clear" while
	// one is in flight (it is recorded before the call), so a crash mid-call
	// leaves a trace the next start can act on.
	Pending string     `json:"pending,omitempty"`
	Events  []EventRef `json:"events,omitempty"` // the occurrences making up the span
	// HeldUntil is set by an operator's clear (calpresence clear,
	// POST /-/clear): nothing is set for the person before it (the end of
	// the span they were in). It is kept with the session, so a restart or
	// another replica honours it; once the clear has gone through the
	// record stays as a hold with no lease (Expires not after the clear).
	HeldUntil time.Time `json:"held_until,omitzero"`
	// Lost is set by the read-back when Teams showed less than this
	// session while it should be in force: Graph dropped it. The next
	// reconcile sets it again (reason "lost").
	Lost bool `json:"lost,omitempty"`
	// Reasserted records that a lost session of this span (SpanStart) was
	// set again once already: if Teams still shows less, it is the
	// person's own status, not a loss.
	Reasserted bool `json:"reasserted,omitempty"`
	// OwnStatusUntil is set by the read-back when the person's own status
	// in Teams beat a re-set session: nothing is set for them before it
	// (the end of that span). Kept with the session, like HeldUntil, so a
	// restart does not fight the person either.
	OwnStatusUntil time.Time `json:"own_status_until,omitzero"`
	// Message is the Teams status message the worker set for this span
	// (presence.status_message filled in), "" when none: at the span's
	// end it is cleared only while Teams still shows this text.
	Message string `json:"message,omitempty"`
}

// OwnStatusAt reports whether the person's own status in Teams is left
// alone at now (OwnStatusUntil).
func (s Session) OwnStatusAt(now time.Time) bool { return now.Before(s.OwnStatusUntil) }

// HeldAt reports whether an operator's clear holds the person back at now.
func (s Session) HeldAt(now time.Time) bool { return now.Before(s.HeldUntil) }

// Live reports whether the record stands for a session Graph may hold at
// now: a lease not run out, or a call whose outcome is not known yet. A
// record that is only an operator's hold is not live.
func (s Session) Live(now time.Time) bool { return s.Pending != "" || s.Expires.After(now) }

// Pending values of a Session.
const (
	PendingSet   = "set"
	PendingClear = "clear"
)

// EventRef names one occurrence of a span, so an early end can say which
// event changed.
type EventRef struct {
	Source       string    `json:"source"`
	UID          string    `json:"uid"`
	RecurrenceID time.Time `json:"recurrence_id,omitzero"`
	Start        time.Time `json:"start"`
	End          time.Time `json:"end"`
}

// Key is the key the session is stored under: the object id, or for a
// migrated record not yet resolved, its address.
func (s Session) Key() string {
	if s.UserID != "" {
		return s.UserID
	}
	return s.Address
}

// MergeSessions makes one record of two that name one person. Graph holds
// one session per person, so what it shows is the last call made: the
// uncertain record (a call in flight) wins, else the one set last. The
// events of both are kept so that an early end can still be explained;
// the span stays the one the lease was sized for, so the reconciler
// re-sets it at once when the person's merged span runs longer.
func MergeSessions(a, b Session) Session {
	keep, other := a, b
	switch {
	case a.Pending != "" && b.Pending == "":
	case b.Pending != "" && a.Pending == "":
		keep, other = b, a
	case b.SetAt.After(a.SetAt):
		keep, other = b, a
	}
	keep.Events = append(append([]EventRef(nil), keep.Events...), other.Events...)
	if other.HeldUntil.After(keep.HeldUntil) {
		keep.HeldUntil = other.HeldUntil
	}
	return keep
}
