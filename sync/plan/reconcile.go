package plan

import (
	"maps"
	"slices"
	"time"

	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state"
)

// Operations an Action asks for.
const (
	OpSet    = "set"    // setPresence
	OpClear  = "clear"  // clearPresence
	OpForget = "forget" // drop the record: Graph has dropped the session by itself
	OpNote   = "note"   // update the record only (the span changed, the lease still fits)
)

// Reasons logged with each presence change.
const (
	ReasonStart     = "start"
	ReasonKeepAlive = "keep-alive"
	ReasonEnd       = "end"
	ReasonRestart   = "restart"
	ReasonExtended  = "extended"
	ReasonChanged   = "changed"
	ReasonRetry     = "retry"
	ReasonExpired   = "expired"
	ReasonShortened = "shortened"
	// ReasonOperator: an operator's clear (calpresence clear, /-/clear),
	// and its retries.
	ReasonOperator = "operator"
	// ReasonHoldEnded: an operator's clear held the person back until the
	// end of the span they were in; a span still running then is set.
	ReasonHoldEnded = "hold-ended"
	// ReasonLost: the read-back found Teams showing less than a session
	// that should be in force (Graph dropped it): it is set again, once
	// per span.
	ReasonLost = "lost"

	ReasonEarlyRemoved   = "early-end:removed"
	ReasonEarlyShortened = "early-end:shortened"
	ReasonEarlyMoved     = "early-end:moved"
	ReasonEarlyCancelled = "early-end:cancelled"
	ReasonEarlyDeclined  = "early-end:declined"
	ReasonEarlySignal    = "early-end:signal" // a Zoom or Webex webhook said the meeting ended or the person left
	// ReasonSourceRemoved: a reload removed the source of the meeting.
	ReasonSourceRemoved = "early-end:source-removed"
)

// Timing constants of the presence rules.
const (
	// RenewBefore is how long before a lease runs out a keep-alive is sent
	// for a span that outlasts it.
	RenewBefore = 2 * time.Minute
	// EndSlack: at a span's end no clear is sent when the lease already ends
	// within this of it (docs/architecture.md).
	EndSlack = time.Minute
)

// Action is one change reconcile asks for.
type Action struct {
	Op string
	// User is the person's key: their Entra object id (in plan and dry
	// runs without Graph, the case-folded address).
	User string
	// Name is how the person is shown (their UPN); empty: User.
	Name       string
	Pair       presence.Pair
	Expiration time.Duration // for OpSet
	Span       Span          // the span set (OpSet, OpNote) or ended (OpClear)
	Reason     string
	// Due is the boundary the action belongs to, for the lag metric; zero
	// when the action is not tied to a boundary (a change seen in a poll).
	Due time.Time
	// Prev is the session recorded for the user when the action was
	// planned; HasPrev is false when there was none.
	Prev    state.Session
	HasPrev bool
	// HoldUntil, on an operator's clear, is recorded with the session:
	// nothing is set for the person before it (state.Session.HeldUntil).
	HoldUntil time.Time
}

// Display is how the action's person is shown in logs and reports.
func (a Action) Display() string {
	if a.Name != "" {
		return a.Name
	}
	return a.User
}

// ReconcileInput is everything Reconcile looks at. People are keyed by
// object id (Spans, Sessions, Held, Known).
type ReconcileInput struct {
	Now      time.Time
	Spans    map[string][]Span
	Sessions map[string]state.Session
	// Matches are the current matches, used to say why a span ended early;
	// Key names the person of a match, as for Spans (nil: the case-folded
	// address).
	Matches []Match
	Key     KeyFunc
	// Known reports whether every source that could concern the person
	// has been read (from the network or a stored copy). Nobody is cleared
	// while it is false.
	Known func(person string) bool
	// Held is a snapshot of the people whose calls are held back (a
	// permanent error for this span, a retry pending, an operator's
	// clear), with the time each hold ends.
	Held     map[string]time.Time
	MaxLease time.Duration
	// Rate is the presence calls per second Graph allows (0: no limit),
	// and LeadBurst how early a large burst of starts may begin: when
	// more people start at one instant than Rate allows in a second, their
	// sets begin up to N/(2×Rate), at most LeadBurst, before it, so that
	// the worst lag is half what sending from the instant on gives.
	Rate      float64
	LeadBurst time.Duration
	// FirstPass marks the first reconcile after start-up: changes it makes
	// for spans that began or ended before then are logged as "restart".
	FirstPass bool
	Started   time.Time
	// SourceRemoved reports whether a reload removed the named source
	// since start (nil: none did), to say why a span of its ended early.
	SourceRemoved func(source string) bool
}

// Reconcile compares each user's desired span at in.Now with the session
// recorded for them and returns the calls that make Graph agree, plus the
// next time anything is due (zero when nothing is).
//
// It is pure: no I/O, no clock; the caller supplies Now.
func Reconcile(in ReconcileInput) (actions []Action, next time.Time) {
	now := in.Now
	wake := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	users := make(map[string]bool, len(in.Spans)+len(in.Sessions))
	for u := range in.Spans {
		users[u] = true
	}
	for u := range in.Sessions {
		users[u] = true
	}
	early := burstLeads(in)
	for _, user := range slices.Sorted(maps.Keys(users)) {
		spans := in.Spans[user]
		sess, held := in.Sessions[user]
		span, active := SpanAt(spans, now)
		// The next span start is a boundary (earlier for a large burst).
		for _, s := range spans {
			if s.Start.After(now) {
				if lead := early[s.Start]; !active && lead > 0 && !now.Before(s.Start.Add(-lead)) {
					span, active = s, true // part of a burst sent early
				} else {
					wake(s.Start.Add(-lead))
				}
				break
			}
		}
		if until, ok := in.Held[user]; ok && now.Before(until) {
			wake(until)
			continue
		}
		if held && sess.HeldAt(now) {
			// An operator cleared the person: nothing is set before the
			// hold ends. A clear not known to have gone through (failed,
			// or in flight when we stopped) is sent again as a clear,
			// never turned into a set.
			wake(sess.HeldUntil)
			if sess.Pending != "" {
				actions = append(actions, Action{Op: OpClear, User: user, Reason: ReasonOperator, HoldUntil: sess.HeldUntil,
					Span: Span{User: user, Start: sess.SpanStart, End: sess.SpanEnd, events: sess.Events}})
			}
			continue
		}
		if held && active && sess.OwnStatusAt(now) && sess.Pending == "" {
			// The person chose their own status in Teams, which beats
			// every application: nothing is set for the rest of the span
			// the read-back saw it in. Its end is cleared as usual.
			wake(sess.OwnStatusUntil)
			continue
		}
		// A call that was in flight when we stopped may or may not have
		// reached Graph: treat the session as uncertain.
		uncertain := held && sess.Pending != ""
		live := held && sess.Expires.After(now) && !uncertain && !sess.Lost

		if active {
			wake(span.End)
			// What the span shows now (a burst sent early: at its start),
			// and when that changes within it (a call, then a meeting).
			at := now
			if at.Before(span.Start) {
				at = span.Start
			}
			pair := span.PairAt(at)
			wake(span.NextPairChange(at))
			lease := clamp(span.End.Sub(now), presence.MinLease, in.MaxLease)
			set := func(reason string) {
				actions = append(actions, Action{Op: OpSet, User: user, Pair: pair, Expiration: lease, Span: span, Reason: reason})
			}
			switch {
			case !live:
				reason, due := ReasonStart, span.Start
				switch {
				case held && !sess.HeldUntil.IsZero():
					reason, due = ReasonHoldEnded, sess.HeldUntil
				case held && sess.Lost && !uncertain:
					reason, due = ReasonLost, time.Time{}
				case held && !uncertain:
					reason = ReasonExpired // lease lapsed (e.g. worker was down)
				}
				if in.FirstPass && span.Start.Before(in.Started) {
					reason, due = ReasonRestart, time.Time{}
				}
				set(reason)
				actions[len(actions)-1].Due = due
				continue
			case sess.Availability != pair.Availability || sess.Activity != pair.Activity:
				set(ReasonChanged)
				continue
			}
			// Held and live. Keep-alive before the lease runs out when the
			// span outlasts it.
			leaseEndsNearSpanEnd := !sess.Expires.Before(span.End.Add(-EndSlack))
			renewAt := sess.Expires.Add(-RenewBefore)
			if !leaseEndsNearSpanEnd && !now.Before(renewAt) {
				if sess.SpanEnd.Equal(span.End) {
					set(ReasonKeepAlive)
					actions[len(actions)-1].Due = renewAt
				} else {
					set(ReasonExtended)
				}
				continue
			}
			if !sess.SpanEnd.Equal(span.End) || !sess.SpanStart.Equal(span.Start) {
				sizedForOldEnd := !sess.Expires.Before(sess.SpanEnd.Add(-EndSlack))
				if sizedForOldEnd && sess.Expires.Before(span.End.Add(-EndSlack)) {
					// The lease was sized for an end that moved later:
					// re-set it with the new expiry.
					set(ReasonExtended)
					continue
				}
				// Shortened, or the lease was capped anyway: the lease
				// stays, the end boundary moves (a clear is sent there).
				actions = append(actions, Action{Op: OpNote, User: user, Pair: pair, Span: span, Reason: ReasonShortened})
			}
			if !leaseEndsNearSpanEnd {
				wake(renewAt)
			}
			continue
		}

		// No span now.
		if !held {
			continue
		}
		if !sess.Expires.After(now) && (!uncertain || sess.Pending == state.PendingClear) {
			// The lease has run out: Graph has dropped the session by
			// itself (also one whose clear kept failing).
			reason := ReasonExpired
			if !now.Before(sess.SpanEnd) {
				reason = ReasonEnd
			}
			actions = append(actions, Action{Op: OpForget, User: user, Reason: reason})
			continue
		}
		if in.Known != nil && !in.Known(user) {
			// Never clear a user whose sources have not all been read.
			wake(sess.Expires)
			continue
		}
		ended := Span{User: user, Start: sess.SpanStart, End: sess.SpanEnd, events: sess.Events}
		switch {
		case !now.Before(sess.SpanEnd):
			// The span ended as planned (or while we were down).
			if !uncertain && !sess.Expires.After(sess.SpanEnd.Add(EndSlack)) {
				// The lease ends within a minute of the span: let it lapse.
				actions = append(actions, Action{Op: OpForget, User: user, Reason: ReasonEnd})
				continue
			}
			reason, due := ReasonEnd, sess.SpanEnd
			if in.FirstPass && sess.SpanEnd.Before(in.Started) {
				reason, due = ReasonRestart, time.Time{}
			}
			actions = append(actions, Action{Op: OpClear, User: user, Span: ended, Reason: reason, Due: due})
		default:
			actions = append(actions, Action{Op: OpClear, User: user, Span: ended, Reason: earlyEndReason(sess, in.Matches, in.Key, in.SourceRemoved, now)})
		}
	}
	for i := range actions {
		actions[i].Prev, actions[i].HasPrev = in.Sessions[actions[i].User]
	}
	return actions, next
}

// burstLeads returns, for each instant at which more people start than
// in.Rate allows in a second, how early their sets begin (BENCHMARKS.md: a burst goes out at the rate Graph allows; spreading it
// around the instant halves the worst lag).
func burstLeads(in ReconcileInput) map[time.Time]time.Duration {
	if in.Rate <= 0 || in.LeadBurst <= 0 {
		return nil
	}
	starts := make(map[time.Time]int)
	for _, spans := range in.Spans {
		for _, s := range spans {
			if s.Start.After(in.Now) && s.Start.Sub(in.Now) <= in.LeadBurst+time.Minute {
				starts[s.Start]++
				break
			}
		}
	}
	var out map[time.Time]time.Duration
	for t, n := range starts {
		if float64(n) <= in.Rate {
			continue
		}
		if out == nil {
			out = make(map[time.Time]time.Duration)
		}
		out[t] = min(time.Duration(float64(n)/(2*in.Rate)*float64(time.Second)), in.LeadBurst).Truncate(time.Millisecond)
	}
	return out
}

// earlyEndReason says why a span that should still be running has no busy
// occurrence left: the first of its events that explains it.
func earlyEndReason(sess state.Session, matches []Match, key KeyFunc, removed func(string) bool, now time.Time) string {
	for _, ref := range sess.Events {
		if removed != nil && removed(ref.Source) {
			return ReasonSourceRemoved
		}
		var found *Match
		for i := range matches {
			m := &matches[i]
			if m.Source != ref.Source || m.Occ.UID != ref.UID {
				continue
			}
			if id, ok := key.Of(m); ok && id == sess.Key() && m.Occ.RecurrenceID.Equal(ref.RecurrenceID) {
				found = m
				break
			}
		}
		switch {
		case found == nil:
			continue
		case found.Signal != "" && !found.Occ.End.After(now):
			return ReasonEarlySignal
		case found.Skip == SkipCancelled:
			return ReasonEarlyCancelled
		case found.Skip == SkipDeclined:
			return ReasonEarlyDeclined
		case found.Skip != "":
			return ReasonEarlyRemoved
		case found.Occ.Start.After(now):
			return ReasonEarlyMoved
		case !found.Occ.End.After(now):
			return ReasonEarlyShortened
		}
	}
	return ReasonEarlyRemoved
}

func clamp(d, lo, hi time.Duration) time.Duration {
	if hi < lo {
		hi = lo
	}
	return min(max(d, lo), hi)
}
