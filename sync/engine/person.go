package engine

import (
	"context"
	"slices"
	"time"

	"github.com/calpresence/calpresence/signals"
	"github.com/calpresence/calpresence/state"
)

// PersonView is what a person's own page shows (the self-service
// listener): their presence as the worker sees it, and nobody else's.
type PersonView struct {
	// UPN is how the person is shown.
	UPN string
	// Shown is what Teams showed at the last read-back, when, and the
	// verdict; ReadBack is false when the person was not read back (yet,
	// or read-back is off).
	Shown    ShownPerson
	ReadBack bool
	// Spans are the person's busy spans that end after now and start
	// within PersonWindow of it, earliest first; a span's Meetings are the
	// occurrences that make it.
	Spans []SpanStatus
	// Live are the calls and Zoom presence statuses about the person in
	// force now, newest first.
	Live []signals.Live
	// Paused is true while the person's pause is in force (Pause says
	// until when; a zero Until: until they resume). Spans then leave out
	// what the pause takes away.
	Paused bool
	Pause  state.Pause
	// OnCall is true while the call the person declared runs (Call).
	OnCall bool
	Call   state.OwnCall
	// OwnFeeds are the person's own feeds in force, their URLs redacted
	// (Name is OwnFeedSource of the feed's id).
	OwnFeeds []SourceStatus
}

// PersonWindow is how far ahead a person's own page looks (the design's
// "next 36 h of their spans").
const PersonWindow = 36 * time.Hour

// Person returns the view of the person with object id id at now. Like
// Status, it reads only what the engine holds in memory (the spans are the
// reconcile's own, signals applied) and makes no call; it looks at that
// one person's spans, so a page costs little whatever the number of people.
func (e *Engine) Person(ctx context.Context, id string, now time.Time) PersonView {
	v := PersonView{UPN: e.dir.UPN(id)}
	v.Shown, v.ReadBack = e.rb.shown(id)
	v.Pause, v.Paused = e.Paused(id, now)
	v.Call, v.OnCall = e.OwnCall(id, now)
	v.OwnFeeds = e.ownFeedsOf(id)
	matches, _, feedGen := e.feeds.snapshotGen()
	_, spans := e.view(ctx, matches, feedGen, now, e.keyFunc())
	to := now.Add(PersonWindow)
	for _, s := range spans[id] {
		if !s.End.After(now) || !s.Start.Before(to) {
			continue
		}
		ss := SpanStatus{Start: s.Start, End: s.End, Availability: s.Pair.Availability, Activity: s.Pair.Activity}
		for _, ev := range s.Events() {
			m := Meeting{Source: ev.Source, UID: ev.UID, Start: ev.Start, End: ev.End}
			if mt := s.Meeting(ev.Start); mt != nil && mt.Source == ev.Source && mt.Occ.UID == ev.UID {
				m.Summary, m.Signal = mt.Occ.Summary, mt.Signal
			}
			ss.Meetings = append(ss.Meetings, m)
		}
		v.Spans = append(v.Spans, ss)
	}
	slices.SortFunc(v.Spans, func(a, b SpanStatus) int { return a.Start.Compare(b.Start) })
	for _, l := range signals.InForce(e.Signals(), now, e.maxUnscheduled()) {
		if lid, ok := e.dir.Lookup(e.target(l.Email)); ok && lid == id {
			v.Live = append(v.Live, l)
		}
	}
	return v
}

// Known returns how the person with object id id is shown, and whether the
// worker knows them: one of the addresses the configuration or a feed
// names was resolved to id.
func (e *Engine) Known(id string) (upn string, ok bool) {
	if len(e.dir.Addresses(id)) == 0 {
		return "", false
	}
	return e.dir.UPN(id), true
}
