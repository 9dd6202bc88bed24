package plan

import (
	"slices"
	"time"

	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state"
)

// Span is a stretch of time one person should show as busy: the busy
// occurrences of all sources, under any of their addresses, widened by lead
// and grace, merged where they overlap or lie closer than merge_gap.
type Span struct {
	User       string // the person's key (see KeyFunc)
	Start, End time.Time
	// Pair is the strongest presence among the span's occurrences; what
	// it shows at a given time is PairAt.
	Pair presence.Pair

	// The occurrences the span is made of (Events): the matches of a span
	// Spans built (a part of one slice per person, not a copy per event:
	// 200,000 references at 10,000 feeds), or the events of a span a
	// session record describes.
	matches []*Match
	events  []state.EventRef
}

// Events returns the occurrences the span is made of.
func (s *Span) Events() []state.EventRef {
	if s.matches == nil {
		return s.events
	}
	out := make([]state.EventRef, len(s.matches))
	for i, m := range s.matches {
		out[i] = state.EventRef{Source: m.Source, UID: m.Occ.UID, RecurrenceID: m.Occ.RecurrenceID, Start: m.Occ.Start, End: m.Occ.End}
	}
	return out
}

// Meeting returns the first occurrence of the span that is in progress
// at t, else its first; nil for a span a session record describes (its
// occurrences are only named there).
func (s *Span) Meeting(t time.Time) *Match {
	for _, m := range s.matches {
		if !t.Before(m.Occ.Start) && t.Before(m.Occ.End) {
			return m
		}
	}
	if len(s.matches) > 0 {
		return s.matches[0]
	}
	return nil
}

// PairAt is what the span should show at t: the strongest presence among
// its occurrences in progress then (lead and grace included), so that a
// phone call merged with a meeting that follows it shows InACall until the
// meeting begins; in a gap between them (shorter than merge_gap), the
// occurrence that ended last; Pair for a span a session record describes.
func (s *Span) PairAt(t time.Time) presence.Pair {
	var best, last presence.Pair
	var lastEnd time.Time
	found := false
	for _, m := range s.matches {
		start, end := m.Occ.Start.Add(-m.Lead), m.Occ.End.Add(m.Grace)
		switch {
		case !t.Before(start) && t.Before(end):
			if !found || presence.Strength(m.Pair) > presence.Strength(best) {
				best = m.Pair
			}
			found = true
		case !end.After(t) && !end.Before(lastEnd):
			last, lastEnd = m.Pair, end
		}
	}
	switch {
	case found:
		return best
	case !lastEnd.IsZero():
		return last
	}
	return s.Pair
}

// NextPairChange returns the first instant after t, within the span, at
// which PairAt differs from PairAt(t); zero when it does not change again.
func (s *Span) NextPairChange(t time.Time) time.Time {
	if len(s.matches) < 2 {
		return time.Time{}
	}
	now := s.PairAt(t)
	var next time.Time
	for _, m := range s.matches {
		for _, c := range []time.Time{m.Occ.Start.Add(-m.Lead), m.Occ.End.Add(m.Grace)} {
			if c.After(t) && c.Before(s.End) && (next.IsZero() || c.Before(next)) && s.PairAt(c) != now {
				next = c
			}
		}
	}
	return next
}

// Contains reports whether t falls in [Start, End).
func (s *Span) Contains(t time.Time) bool { return !t.Before(s.Start) && t.Before(s.End) }

// KeyFunc names the person a match makes busy: the key spans, sessions
// and holds are kept under (the Entra object id in the daemon). ok is false
// when the match concerns nobody the worker may act on yet (an address
// not resolved, unknown to Entra, or not allowed by only_configured).
// A nil KeyFunc keys by the case-folded address (plan, which has no Graph).
type KeyFunc func(m *Match) (key string, ok bool)

// Of is the key of m: k(m), or the case-folded address when k is nil.
func (k KeyFunc) Of(m *Match) (string, bool) {
	if k == nil {
		return state.NormalizeAddress(m.User), true
	}
	return k(m)
}

// Spans builds every person's busy spans from the matches: occurrences of
// one person, from any source and under any address, make one timeline.
// It is pure: the same matches and keys always give the same spans. Spans
// of one person are sorted and disjoint, separated by at least mergeGap.
func Spans(matches []Match, mergeGap time.Duration, key KeyFunc) map[string][]Span {
	byUser := make(map[string][]*Match)
	for i := range matches {
		m := &matches[i]
		if !m.Busy() {
			continue
		}
		if k, ok := key.Of(m); ok {
			byUser[k] = append(byUser[k], m)
		}
	}
	out := make(map[string][]Span, len(byUser))
	for user, ms := range byUser {
		slices.SortFunc(ms, func(a, b *Match) int {
			if c := a.Occ.Start.Add(-a.Lead).Compare(b.Occ.Start.Add(-b.Lead)); c != 0 {
				return c
			}
			return a.Occ.End.Add(a.Grace).Compare(b.Occ.End.Add(b.Grace))
		})
		spans := make([]Span, 0, countSpans(ms, mergeGap))
		first := 0 // of the last span's matches in ms
		for i, m := range ms {
			start, end := m.Occ.Start.Add(-m.Lead), m.Occ.End.Add(m.Grace)
			if n := len(spans); n > 0 && (!start.After(spans[n-1].End) || start.Sub(spans[n-1].End) < mergeGap) {
				last := &spans[n-1]
				if end.After(last.End) {
					last.End = end
				}
				if presence.Strength(m.Pair) > presence.Strength(last.Pair) {
					last.Pair = m.Pair
				}
				last.matches = ms[first : i+1 : i+1]
				continue
			}
			first = i
			spans = append(spans, Span{User: user, Start: start, End: end, Pair: m.Pair, matches: ms[i : i+1 : i+1]})
		}
		out[user] = spans
	}
	return out
}

// countSpans is the number of spans Spans makes of one person's sorted
// matches: their slice is then allocated once (growing it by appends
// allocated most of what Spans did at 10,000 people, BenchmarkSpans10k).
func countSpans(ms []*Match, mergeGap time.Duration) int {
	n := 0
	var end time.Time
	for _, m := range ms {
		start, e := m.Occ.Start.Add(-m.Lead), m.Occ.End.Add(m.Grace)
		if n > 0 && (!start.After(end) || start.Sub(end) < mergeGap) {
			if e.After(end) {
				end = e
			}
			continue
		}
		n, end = n+1, e
	}
	return n
}

// SpanAt returns the span containing t, if any.
func SpanAt(spans []Span, t time.Time) (Span, bool) {
	for _, s := range spans {
		if s.Contains(t) {
			return s, true
		}
		if s.Start.After(t) {
			break
		}
	}
	return Span{}, false
}
