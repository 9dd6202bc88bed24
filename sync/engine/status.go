package engine

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/calpresence/calpresence/internal/timeline"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/signals"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/identity"
	"github.com/calpresence/calpresence/sync/plan"
)

// Status is a snapshot of the worker for the status page (docs/operations.md): what a person looks for when someone's presence is not
// what they expect. People are shown by UPN; feed URLs are redacted.
type Status struct {
	Now     time.Time
	Ready   bool
	Sources []SourceStatus
	// OwnFeeds count people's own feeds (selfservice.feeds) by person;
	// their URLs are never shown.
	OwnFeeds []OwnFeedCount
	// Busy are the people busy now, by UPN.
	Busy []BusyPerson
	// Timeline are the people with a busy span in the status page's
	// timeline window (timeline.Window: from an hour before now to 36
	// hours on), each with those spans, earliest first; in no order
	// (the page orders them).
	Timeline []PersonSpans
	// Next are the coming changes within the horizon, soonest first, at
	// most MaxTransitions.
	Next []Transition
	// Held are the people the worker holds back from Graph calls now.
	Held []HeldPerson
	// Unresolved are calendar addresses that name no Entra user (yet):
	// the first MaxUnresolved by address, of UnresolvedCount.
	Unresolved      []identity.Unresolved
	UnresolvedCount int
	// GraphErrors are the last failed Graph calls, newest first.
	GraphErrors []GraphError
	// Signals are the live meeting signals in force (Zoom, Webex
	// webhooks), newest first, at most MaxTransitions.
	Signals []Signal
	// Live are the calls in progress (Webex Calling) and the Zoom
	// presence statuses in force: whose, since when, from which vendor;
	// newest first, at most MaxTransitions.
	Live []signals.Live
	// Down says why no engine runs ("" when one does); the rest is then
	// empty.
	Down string
	// Reload is the outcome of the last reload (nil: none since start).
	Reload *ReloadStatus
	// Replica is this replica's part with several replicas (nil: one).
	Replica *Replica
}

// Replica is what a replica sharing its state with others (state.driver
// postgres) says of itself: whether it leads, and who does.
type Replica struct {
	ID   string `json:"id"`
	Role string `json:"role"` // leader or standby
	// Leader names the replica that leads ("" when none does now, or it
	// cannot be asked: Error says why).
	Leader string    `json:"leader,omitempty"`
	Since  time.Time `json:"leader_since,omitzero"`
	Error  string    `json:"error,omitempty"`
}

// BusyPerson is someone busy now, and why.
type BusyPerson struct {
	User   string // UPN
	UserID string
	// Availability and Activity are what the span asks of Graph.
	Availability, Activity string
	Since, Until           time.Time // the busy span
	Meetings               []Meeting // the meetings making them busy now
	// Shown is what Teams showed at the last read-back (Availability ""
	// when not read yet, or read-back is off), ShownAt when, and
	// Readback the verdict: "shown", "lost" (set again), "own_status"
	// (the person's own status wins until the span ends) or "" (not
	// judged: a set in flight or just made).
	Shown    presence.Shown
	ShownAt  time.Time
	Readback string
}

// OwnStatus reports whether the person's own status in Teams wins over
// the worker's session.
func (b BusyPerson) OwnStatus() bool { return b.Readback == ReadbackOwnStatus }

// Meeting is one occurrence that makes someone busy.
type Meeting struct {
	Source     string
	UID        string
	Summary    string
	Start, End time.Time
	// Signal is the live meeting signal that cut the occurrence short
	// (state.SignalEnded, state.SignalLeft); "" when none did.
	Signal string
}

// Live reports whether a live signal (a call, a Zoom presence, an
// unscheduled meeting: a Zoom or Webex webhook) made the occurrence,
// not a calendar.
func (m Meeting) Live() bool { return strings.HasPrefix(m.Source, signalSourcePrefix) }

// signalSourcePrefix begins the source of what signals.Apply adds
// ("webhook:zoom").
const signalSourcePrefix = "webhook:"

// PersonSpans is one person's busy spans in the timeline window.
type PersonSpans struct {
	User   string // UPN
	UserID string
	Spans  []SpanStatus
}

// SpanStatus is one busy span: when, what it asks of Graph, and the
// meetings that make it.
type SpanStatus struct {
	Start, End             time.Time
	Availability, Activity string
	Meetings               []Meeting
}

// Transition is a coming change of someone's presence.
type Transition struct {
	At      time.Time
	User    string // UPN
	Busy    bool   // true: becomes busy (setPresence); false: free again
	Meeting string // the summary of the first meeting of the span
}

// Hold kinds: why someone is held back.
const (
	HoldUnknown  = "unknown"   // Graph does not know the id; looked up again later
	HoldThrottle = "throttled" // 429/503: waiting for Retry-After or back-off
	HoldRetry    = "retrying"  // another failure (5xx, timeout): back-off
	HoldRefused  = "refused"   // a permanent 4xx: not retried for this span
	HoldOperator = "operator"  // cleared by an operator until the span ends
)

// HeldPerson is someone the worker makes no call for until Until.
type HeldPerson struct {
	User   string // UPN
	UserID string
	Kind   string // one of the Hold kinds
	Reason string
	Until  time.Time
	Tries  int
}

// GraphError is one failed Graph call.
type GraphError struct {
	At      time.Time
	Op      string // set, clear
	User    string // UPN
	UserID  string
	Status  int // HTTP status; 0 for a transport error
	Message string
}

// MaxTransitions caps Status.Next.
const MaxTransitions = 50

// MaxUnresolved caps Status.Unresolved: the page stays readable (and
// cheap to render every 30 s) with thousands of unknown attendees.
const MaxUnresolved = 200

// Status returns a snapshot of the worker at now. It reads what the
// engine holds in memory (the feeds' matches, the directory, the holds);
// it takes no reconcile lock, reads no state and makes no call, so it stays
// cheap to ask every few seconds. (Like every pass, it notes addresses the
// directory has not met yet for the resolver.)
func (e *Engine) Status(ctx context.Context, now time.Time) Status {
	st := Status{Now: now, Sources: e.feeds.statuses(), OwnFeeds: e.ownFeedCounts(), GraphErrors: e.exec.recent.list()}
	unresolved := e.dir.Unresolved()
	st.Unresolved, st.UnresolvedCount = unresolved[:min(len(unresolved), MaxUnresolved)], len(unresolved)
	sigs := e.Signals()
	st.Live = signals.InForce(sigs, now, e.maxUnscheduled())
	st.Live = st.Live[:min(len(st.Live), MaxTransitions)]
	if len(sigs) > MaxTransitions {
		st.Signals = sigs[:MaxTransitions]
	} else {
		st.Signals = sigs
	}
	e.mu.Lock()
	st.Ready = e.ready
	e.mu.Unlock()

	// The reconcile's own view (live signals applied), kept between
	// changes: no spans are built here while nothing changed.
	matches, _, feedGen := e.feeds.snapshotGen()
	matches, spans := e.view(ctx, matches, feedGen, now, e.keyFunc())
	occs := occIndex(matches)
	meetings := func(s plan.Span, at time.Time) []Meeting {
		var now, all []Meeting
		for _, ev := range s.Events() {
			o := occs[refKey(ev.Source, ev.UID, ev.RecurrenceID, ev.Start)]
			m := Meeting{Source: ev.Source, UID: ev.UID, Summary: o.summary, Signal: o.signal, Start: ev.Start, End: ev.End}
			all = append(all, m)
			if !at.Before(ev.Start) && at.Before(ev.End) {
				now = append(now, m)
			}
		}
		if len(now) == 0 {
			return all // in the lead, grace or a merged gap
		}
		return now
	}
	horizon := now.Add(e.config().Schedule.Horizon)
	from, to := timeline.Window(now)
	for id, ss := range spans {
		upn := e.dir.UPN(id)
		var in []SpanStatus
		for _, s := range ss {
			if s.End.After(from) && s.Start.Before(to) {
				in = append(in, SpanStatus{Start: s.Start, End: s.End, Availability: s.Pair.Availability, Activity: s.Pair.Activity,
					Meetings: meetings(s, time.Time{})}) // at no time: all of them
			}
		}
		if len(in) > 0 {
			st.Timeline = append(st.Timeline, PersonSpans{User: upn, UserID: id, Spans: in})
		}
		if s, ok := plan.SpanAt(ss, now); ok {
			pair := s.PairAt(now) // what it shows now, as set
			b := BusyPerson{User: upn, UserID: id, Availability: pair.Availability, Activity: pair.Activity,
				Since: s.Start, Until: s.End, Meetings: meetings(s, now)}
			if sh, ok := e.rb.shown(id); ok {
				b.Shown, b.ShownAt, b.Readback = sh.Shown, sh.At, sh.Result
			}
			st.Busy = append(st.Busy, b)
		}
		for _, s := range ss {
			if s.Start.After(now) && s.Start.Before(horizon) {
				st.Next = append(st.Next, Transition{At: s.Start, User: upn, Busy: true, Meeting: firstSummary(meetings(s, s.Start))})
			}
			if s.End.After(now) && s.End.Before(horizon) {
				st.Next = append(st.Next, Transition{At: s.End, User: upn, Busy: false, Meeting: firstSummary(meetings(s, s.Start))})
			}
		}
	}
	slices.SortFunc(st.Busy, func(a, b BusyPerson) int { return strings.Compare(a.User, b.User) })
	slices.SortFunc(st.Next, func(a, b Transition) int {
		return cmp.Or(a.At.Compare(b.At), strings.Compare(a.User, b.User))
	})
	if len(st.Next) > MaxTransitions {
		st.Next = st.Next[:MaxTransitions]
	}

	for id, h := range e.exec.holdsAt(now) {
		st.Held = append(st.Held, HeldPerson{User: e.dir.UPN(id), UserID: id, Kind: h.kind(), Reason: h.why, Until: h.until, Tries: h.tries})
	}
	// An operator's clears are recorded with the sessions (the engine's
	// copy in memory: no state is read here).
	if sessions, err := e.store.Sessions(ctx); err == nil || errors.As(err, new(*state.BadRecordsError)) {
		for id, sess := range sessions {
			if sess.HeldAt(now) {
				st.Held = append(st.Held, HeldPerson{User: e.dir.UPN(id), UserID: id, Kind: HoldOperator, Reason: operatorHold, Until: sess.HeldUntil})
			}
		}
	}
	st.Held = append(st.Held, e.pausedHeld(now)...) // pauses.go
	slices.SortFunc(st.Held, func(a, b HeldPerson) int { return strings.Compare(a.User, b.User) })
	return st
}

// operatorHold is the reason shown for an operator's clear.
const operatorHold = "cleared by operator"

func firstSummary(ms []Meeting) string {
	for _, m := range ms {
		if m.Summary != "" {
			return m.Summary
		}
	}
	return ""
}

// refKey identifies one occurrence of one source.
func refKey(source, uid string, recurrenceID, start time.Time) string {
	return source + "\x00" + uid + "\x00" + recurrenceID.UTC().Format(time.RFC3339Nano) + "\x00" + start.UTC().Format(time.RFC3339Nano)
}

// occInfo is what the status view tells of one matched occurrence.
type occInfo struct {
	summary string
	signal  string // the live signal that cut it short
}

// occIndex maps each matched occurrence to its summary and the signal
// that cut it short. The meetings of people's own feeds are their private
// calendars: the status view (ops) gets OwnFeedSummary in place of their
// titles; the person's own page shows them (Person).
func occIndex(matches []plan.Match) map[string]occInfo {
	out := make(map[string]occInfo, len(matches))
	for i := range matches {
		o := matches[i].Occ
		summary := o.Summary
		if _, own := ownFeedID(matches[i].Source); own {
			summary = OwnFeedSummary
		}
		if summary != "" || matches[i].Signal != "" {
			out[refKey(matches[i].Source, o.UID, o.RecurrenceID, o.Start)] = occInfo{summary: summary, signal: matches[i].Signal}
		}
	}
	return out
}

// OwnFeedSummary stands for the title of a meeting from a person's own
// feed on the status view.
const OwnFeedSummary = "(a meeting in their own feed)"

// holdsAt returns the holds in force at now, by person id.
func (x *executor) holdsAt(now time.Time) map[string]hold {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make(map[string]hold)
	for id, h := range x.holds {
		if now.Before(h.until) {
			out[id] = h
		}
	}
	return out
}

// heldKinds counts the holds in force at now by kind.
func (x *executor) heldKinds(now time.Time) map[string]int {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make(map[string]int)
	for _, h := range x.holds {
		if now.Before(h.until) {
			out[h.kind()]++
		}
	}
	return out
}

// recentErrorsKept is how many failed Graph calls the status page shows.
const recentErrorsKept = 20

// recentErrors keeps the last recentErrorsKept failed Graph calls. The
// zero value is ready to use.
type recentErrors struct {
	mu   sync.Mutex
	ring [recentErrorsKept]GraphError
	n    int // calls recorded in all
}

// add records a failed call; a call cut short by shutdown is not a
// failure of Graph's.
func (r *recentErrors) add(a plan.Action, err error, at time.Time) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	g := GraphError{At: at, Op: a.Op, User: a.Display(), UserID: a.User, Message: err.Error()}
	var pe *presence.Error
	if errors.As(err, &pe) {
		g.Status = pe.Status
	}
	r.mu.Lock()
	r.ring[r.n%recentErrorsKept] = g
	r.n++
	r.mu.Unlock()
}

// list returns the kept errors, newest first.
func (r *recentErrors) list() []GraphError {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := min(r.n, recentErrorsKept)
	out := make([]GraphError, 0, k)
	for i := 1; i <= k; i++ {
		out = append(out, r.ring[(r.n-i)%recentErrorsKept])
	}
	return out
}
