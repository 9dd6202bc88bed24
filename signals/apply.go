package signals

import (
	"cmp"
	"slices"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/mailaddr"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/plan"
)

// Apply returns matches as the live signals say they really are, at
// any time (it is pure: the same input gives the same output):
//
//   - "ended" at t cuts, at t, every busy occurrence that names the meeting
//     and is in effect at t (between its start, widened by lead, and its
//     end, widened by grace), for everyone;
//   - "left" at t cuts the person's part of such an occurrence at t, and a
//     later "joined" brings it back from then until its scheduled end;
//   - "joined" with no such occurrence of the person is an unscheduled call
//     (only when the vendor vouches for the participant: not Unverified):
//     a synthetic match (source "webhook:<vendor>", UID the meeting key,
//     the default presence pair) from t until their next "left", the
//     meeting's "ended", or t + maxUnscheduled.
//
// A signal never touches an occurrence it does not fall within: a personal
// meeting number reused by the next meeting does not end that one.
//
// matches must be the caller's own slice (the engine's feed snapshot is a
// fresh one): an occurrence cut short is replaced in it, and further parts and
// unscheduled calls are appended, so that 185,000 matches are not copied
// again on every reconcile while a signal is in force. The occurrences
// are the feeds' and shared: they are never changed; a cut one is a copy.
// who maps a participant's address to the address that names them in
// matches (users: mapping); key names people as for Spans.
func Apply(matches []plan.Match, sigs []state.Signal, pair presence.Pair, maxUnscheduled time.Duration, who func(email string) string, key plan.KeyFunc) []plan.Match {
	if len(sigs) == 0 {
		return matches
	}
	if maxUnscheduled <= 0 {
		maxUnscheduled = config.DefaultWebhooks().MaxUnscheduled
	}
	if who == nil {
		who = mailaddr.Normalize
	}
	// The matches are the feed set's, shared with every reader: cut copies.
	matches = slices.Clone(matches)
	sigs = slices.Clone(sigs)
	slices.SortStableFunc(sigs, byTime)
	// The person each participant signal names, and the signals by meeting.
	persons := make([]string, len(sigs))
	byMeeting := make(map[string][]int)
	for i := range sigs {
		s := &sigs[i]
		if s.Email != "" {
			if p, ok := key.Of(&plan.Match{User: who(s.Email), Rule: &plan.Rule{Source: "webhook:" + s.Vendor}}); ok {
				persons[i] = p
			}
		}
		if !isLive(s) {
			byMeeting[s.Meeting] = append(byMeeting[s.Meeting], i)
		}
	}
	// scheduled[i]: the joined signal i fell within a busy occurrence of its
	// person, so it is no unscheduled call.
	scheduled := make([]bool, len(sigs))
	var (
		rel   []int
		parts []plan.Match
		extra []plan.Match
	)
	for i := range matches {
		m := &matches[i]
		if !m.Busy() || len(m.Occ.MeetingKeys) == 0 {
			continue
		}
		from, to := m.Occ.Start.Add(-m.Lead), m.Occ.End.Add(m.Grace)
		rel = rel[:0]
		for _, k := range m.Occ.MeetingKeys {
			for _, j := range byMeeting[k] {
				if t := sigs[j].At; !t.Before(from) && t.Before(to) {
					rel = append(rel, j)
				}
			}
		}
		if len(rel) == 0 {
			continue
		}
		slices.Sort(rel) // signals are sorted by time
		person, _ := key.Of(m)
		in, segStart, first := true, m.Occ.Start, true
		parts = parts[:0]
		for _, j := range rel {
			s := &sigs[j]
			mine := persons[j] != "" && persons[j] == person
			switch {
			case s.Event == state.SignalEnded && in, s.Event == state.SignalLeft && mine && in:
				parts = append(parts, segment(m, segStart, s.At, first, s.Event))
				in, first = false, false
			case s.Event == state.SignalJoined && mine:
				scheduled[j] = true
				if !in {
					in, segStart = true, later(s.At, m.Occ.Start)
				}
			}
		}
		if in {
			parts = append(parts, segment(m, segStart, m.Occ.End, first, ""))
		}
		matches[i] = parts[0]
		extra = append(extra, parts[1:]...)
	}
	for i := range sigs {
		s := &sigs[i]
		if s.Event != state.SignalJoined || scheduled[i] || persons[i] == "" || s.Unverified {
			// An unverified participant's join acts on their own
			// calendar occurrence only: no unscheduled call.
			continue
		}
		end, cut := s.At.Add(maxUnscheduled), ""
		for _, j := range byMeeting[s.Meeting] {
			o := &sigs[j]
			if j <= i || !o.At.Before(end) {
				continue
			}
			if o.Event == state.SignalEnded || o.Event == state.SignalLeft && persons[j] == persons[i] && !o.Unverified {
				end, cut = o.At, o.Event
				break
			}
		}
		occ := &plan.Occurrence{UID: s.Meeting, RecurrenceID: s.At.UTC(), Summary: "unscheduled call " + s.Meeting,
			Start: s.At, End: later(end, s.At), MeetingKeys: []string{s.Meeting}}
		nm := plan.Match{User: who(s.Email), Occ: occ, Rule: &plan.Rule{Source: "webhook:" + s.Vendor, Pair: pair}, Signal: cut}
		if !occ.End.After(occ.Start) {
			nm.Skip = plan.SkipSignal
		}
		extra = append(extra, nm)
	}
	extra = appendLive(extra, sigs, persons, maxUnscheduled, who)
	return append(matches, extra...)
}

// byTime orders signals by the vendor's time; at one time, by their
// arrival (Zoom's date_time counts seconds: a call that ends within the
// second it began must end, not run on until maxUnscheduled), then by id,
// so that the same input gives the same output.
func byTime(a, b state.Signal) int {
	if c := a.At.Compare(b.At); c != 0 {
		return c
	}
	if c := a.Received.Compare(b.Received); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// appendLive appends the spans presence and call signals (sorted by time)
// give: per person and per vendor's presence or call (Meeting), from a
// signal that asks for a pair (StatusPair) until the next signal of that
// one — which ends it or changes its pair — or maxUnscheduled later.
//
// Ordered by the vendor's time, not by arrival: a status delivered late
// takes its place in the past, and never overrides a newer one. These
// spans touch no calendar occurrence: they are matches of their own,
// merged with the calendar's by strength (a Zoom "Available" ends what
// "In_Meeting" started, never the meeting on the calendar).
func appendLive(extra []plan.Match, sigs []state.Signal, persons []string, maxUnscheduled time.Duration, who func(string) string) []plan.Match {
	type stream struct{ person, meeting string }
	open := make(map[stream]int) // the signal whose span runs; -1 none
	emit := func(i int, end time.Time) {
		s := &sigs[i]
		pair, _ := StatusPair(s)
		if c := s.At.Add(maxUnscheduled); c.Before(end) {
			end = c
		}
		label := "Zoom presence " + s.Status
		if s.Event == state.SignalCall {
			label = "call " + s.Status
		}
		occ := &plan.Occurrence{UID: s.Meeting, RecurrenceID: s.At.UTC(), Summary: label,
			Start: s.At, End: later(end, s.At)}
		nm := plan.Match{User: who(s.Email), Occ: occ, Rule: &plan.Rule{Source: "webhook:" + s.Vendor, Pair: pair}}
		if !occ.End.After(occ.Start) {
			nm.Skip = plan.SkipSignal
		}
		extra = append(extra, nm)
	}
	for i := range sigs {
		s := &sigs[i]
		if !isLive(s) || persons[i] == "" {
			continue
		}
		k := stream{persons[i], s.Event + "|" + s.Meeting}
		j, running := open[k]
		pair, busy := StatusPair(s)
		if running && j >= 0 {
			if p, _ := StatusPair(&sigs[j]); busy && p == pair {
				continue // the same again (held after connected): one span
			}
			emit(j, s.At)
		}
		if busy {
			open[k] = i
		} else {
			open[k] = -1
		}
	}
	for i := range sigs {
		// In the signals' order, so that the same input gives the same
		// output.
		if isLive(&sigs[i]) && persons[i] != "" && open[stream{persons[i], sigs[i].Event + "|" + sigs[i].Meeting}] == i {
			emit(i, sigs[i].At.Add(maxUnscheduled))
		}
	}
	return extra
}

// segment is the part [start, end) of m's occurrence, a copy. Only the
// first part keeps the lead; a part cut short by a signal (event) loses
// the grace: the meeting is over. A part that loses either gets a copy of
// m's Rule, which the source's other matches share.
func segment(m *plan.Match, start, end time.Time, first bool, event string) plan.Match {
	occ := *m.Occ
	occ.Start, occ.End = start, later(end, start)
	nm := *m
	nm.Occ = &occ
	if !first || event != "" {
		r := *m.Rule
		nm.Rule = &r
	}
	if !first {
		nm.Lead = 0
	}
	if event != "" {
		nm.Grace, nm.Signal = 0, event
		if !end.After(start) {
			// Over before it began: nothing of it makes anyone busy.
			occ.End = occ.Start
			nm.Skip = plan.SkipSignal
		}
	}
	return nm
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
