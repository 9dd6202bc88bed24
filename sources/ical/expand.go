package ical

import (
	"errors"
	"slices"
	"strings"
	"time"
)

// override is a RECURRENCE-ID component of a series.
type override struct {
	ev     *vevent
	rid    dtv
	ridAt  time.Time
	future bool // RANGE=THISANDFUTURE
	used   bool
	// excluded: an EXDATE of a series names the instance, so the override
	// is void.
	excluded bool
	span     span
	hasDT    bool
	f        lazyFields
}

// ridKey identifies an instance: by instant for zoned and UTC values, by
// wall clock for floating ones, by date for DATE values.
type ridKey struct {
	kind byte
	v    int64
}

func dateKey(w civil) ridKey {
	y, m, d := w.Date()
	return ridKey{'d', int64(y*10000 + int(m)*100 + d)}
}

// instance is one start produced by DTSTART, RRULE or RDATE, on the
// series' wall clock.
type instance struct {
	wall   civil
	at     time.Time // zero: localToUTC(loc, wall)
	end    time.Time // from an RDATE PERIOD
	hasEnd bool
}

// series is a master VEVENT with its span and fields.
type series struct {
	ev   *vevent
	span span
	f    *lazyFields
}

// lazyFields are the fields of a VEVENT, read when an occurrence first
// needs them: most series have no instance in a 36 h window, and their
// descriptions and attendees are most of a feed.
type lazyFields struct {
	p      compProps
	master *lazyFields // the series an override inherits from, or nil
	read   bool
	f      fields
}

// get returns the fields, reading them the first time.
func (l *lazyFields) get() *fields {
	if !l.read {
		l.read = true
		l.f = readFields(l.p)
		if l.master != nil {
			l.f = l.f.inherit(l.master.get())
		}
	}
	return &l.f
}

// expandGroup expands the VEVENTs that share a UID.
func (x *expander) expandGroup(g *group) {
	var masters []*vevent
	defer func() {
		if r := recover(); r != nil {
			ev := g.overrides
			switch {
			case len(masters) > 0:
				ev = masters
			case len(g.masters) > 0:
				ev = g.masters
			}
			x.res.recovered++
			x.lossf(ev[0], ev[0].line("DTSTART", 0), "cannot expand: %v", r)
		}
	}()
	masters = x.masters(g.masters)
	var one [1]series // most groups are one series
	list := one[:0]
	for _, m := range masters {
		s, err := x.span(m)
		if err != nil {
			x.lossf(m, m.line("DTSTART", 0), "VEVENT skipped: %v", err)
			continue
		}
		m.f = lazyFields{p: m.p}
		list = append(list, series{ev: m, span: s, f: &m.f})
	}
	// Overrides inherit from, and stand in for instances of, the first
	// series; with several (one UID on distinct meetings) an override
	// replaces the instance of whichever produces it.
	var master *vevent
	var ms *span
	var mf *lazyFields
	if len(list) > 0 {
		master, ms, mf = list[0].ev, &list[0].span, list[0].f
	}
	ovs := x.overrides(g.overrides, master, ms, mf)
	if len(list) == 0 {
		n := 0
		for _, o := range ovs {
			if !x.emitOverride(o, time.Time{}, &n) {
				return
			}
		}
		return
	}
	n, more := 0, true
	rules := make([][]rule, len(list))
	for i, s := range list {
		var cnt int
		var ok bool
		rules[i], cnt, ok = x.expandSeries(s.ev, s.span, s.f, ovs)
		if i == 0 {
			n, more = cnt, ok
		}
	}
	if !more {
		return
	}
	for _, o := range ovs {
		if o.used || o.excluded {
			continue
		}
		// An override whose instance no series produces is still a
		// meeting, unless it is older than the series (a lower SEQUENCE):
		// then the series was edited after it and it is stale.
		if o.ev.seq < master.seq && !x.anyProduces(list, rules, o) {
			continue
		}
		if !x.emitOverride(o, o.ridAt, &n) {
			return
		}
	}
}

// anyProduces reports whether one of the series has the instance o names.
func (x *expander) anyProduces(list []series, rules [][]rule, o *override) bool {
	for i, s := range list {
		if x.produces(s.ev, s.span.start, rules[i], o) {
			return true
		}
	}
	return false
}

// overrides parses the RECURRENCE-ID components; several for one instance:
// the highest SEQUENCE, then the last, wins.
func (x *expander) overrides(list []*vevent, master *vevent, ms *span, mf *lazyFields) []*override {
	if len(list) == 0 {
		return nil
	}
	byKey := map[ridKey]*override{}
	var out []*override
	for _, ev := range list {
		p := &ev.p.get("RECURRENCE-ID")[0]
		line := ev.line("RECURRENCE-ID", 0)
		rid, err := x.dt(ev, p, p.Value, line)
		if err != nil {
			x.lossf(ev, line, "override skipped: %v", err)
			continue
		}
		o := &override{ev: ev, rid: rid, ridAt: rid.instant()}
		if r := p.Params["RANGE"]; len(r) > 0 && strings.EqualFold(r[0], "THISANDFUTURE") {
			o.future = true
		}
		s, err := x.span(ev)
		switch {
		case err == nil:
			o.span, o.hasDT = s, true
		case ms != nil:
			// No DTSTART: the instance keeps its time and the series' length.
			o.span = span{start: rid, dur: ms.dur}
		default:
			x.lossf(ev, line, "override without DTSTART and without its series skipped")
			continue
		}
		o.f = lazyFields{p: ev.p, master: mf}
		k := x.ridKeyOf(rid)
		if prev := byKey[k]; prev != nil {
			if ev.seq < prev.ev.seq {
				continue
			}
			*prev = *o
			continue
		}
		byKey[k] = o
		out = append(out, o)
	}
	return out
}

func (x *expander) ridKeyOf(d dtv) ridKey {
	switch {
	case d.date:
		return dateKey(d.wall)
	case d.floating:
		return ridKey{'w', d.wall.Unix()}
	}
	return ridKey{'i', d.instant().Unix()}
}

// exdates is the EXDATE set of a series.
type exdates struct {
	instants map[int64]bool // zoned and UTC values
	walls    map[int64]bool // floating values: compared with the wall clock
	dates    map[ridKey]bool
}

func (e *exdates) has(wall civil, at time.Time, date bool) bool {
	if e == nil {
		return false
	}
	if e.dates[dateKey(wall)] {
		return true
	}
	if date {
		// A DATE-TIME EXDATE on an all-day series: its date.
		return e.walls[wall.Unix()] || e.instants[at.Unix()]
	}
	return e.instants[at.Unix()] || e.walls[wall.Unix()]
}

func (x *expander) exdates(ev *vevent, series dtv) *exdates {
	ps := ev.p.get("EXDATE")
	if len(ps) == 0 {
		return nil
	}
	e := &exdates{instants: map[int64]bool{}, walls: map[int64]bool{}, dates: map[ridKey]bool{}}
	for i := range ps {
		line := ev.line("EXDATE", i)
		for v := range strings.SplitSeq(ps[i].Value, ",") {
			if strings.TrimSpace(v) == "" {
				continue
			}
			d, err := x.dt(ev, &ps[i], v, line)
			if err != nil {
				x.warnf(ev, line, "%v, ignored", err)
				continue
			}
			switch {
			case d.date:
				e.dates[dateKey(d.wall)] = true
			case series.date:
				// DATE-TIME EXDATE on a DATE series: the date it falls on.
				if d.floating {
					e.dates[dateKey(d.wall)] = true
				} else {
					e.dates[dateKey(wallIn(d.instant(), series.loc))] = true
				}
			case d.floating:
				e.walls[d.wall.Unix()] = true
			default:
				e.instants[d.instant().Unix()] = true
			}
		}
	}
	return e
}

// expandSeries expands a master VEVENT with the overrides that replace its
// instances. It returns its rules, the occurrences it emitted, and false when
// it hit MaxPerEvent or is a deleted series; otherwise the caller emits the
// overrides no series used.
func (x *expander) expandSeries(m *vevent, ms span, mf *lazyFields, ovs []*override) (rules []rule, n int, more bool) {
	loc := ms.start.loc
	start := ms.start
	ex := x.exdates(m, start)

	// Match overrides to instances by instant, wall clock or date. On an
	// all-day series a DATE-TIME RECURRENCE-ID names the date it is written
	// with (Exchange: RECURRENCE-ID;TZID=...:20260226T000000).
	var byInstant, byWall, byDate map[int64]*override
	var future []*override
	var shift time.Duration
	excluded := func(o *override) bool {
		if ex == nil {
			return false
		}
		if o.rid.date || start.date {
			return ex.dates[dateKey(o.rid.wall)]
		}
		return ex.has(wallIn(o.ridAt, loc), o.ridAt, false)
	}
	for _, o := range ovs {
		if o.used {
			continue // an earlier series with this UID replaced its instance
		}
		if excluded(o) {
			o.excluded = true
			continue // the instance was excluded: its override is void
		}
		switch {
		case o.rid.date || start.date:
			if byDate == nil {
				byDate = map[int64]*override{}
			}
			byDate[dateKey(o.rid.wall).v] = o
		case o.rid.floating:
			if byWall == nil {
				byWall = map[int64]*override{}
			}
			byWall[o.rid.wall.Unix()] = o
		default:
			if byInstant == nil {
				byInstant = map[int64]*override{}
			}
			byInstant[o.ridAt.Unix()] = o
		}
		if o.future {
			future = append(future, o)
			d := o.span.start.instant().Sub(o.ridAt)
			shift = max(shift, d, -d, o.span.upper())
		}
	}
	slices.SortFunc(future, func(a, b *override) int { return a.ridAt.Compare(b.ridAt) })

	// The part of the series' wall clock that can reach the window.
	slack := 2*time.Hour + shift
	fromWall := wallIn(x.opt.From, loc)
	toWall := wallIn(x.opt.To, loc)
	win := ruleWindow{
		lo:    fromWall.Add(-ms.upper() - slack),
		hi:    toWall.Add(slack),
		from:  fromWall.Add(-2 * time.Hour),
		to:    toWall.Add(2 * time.Hour),
		limit: x.opt.MaxPerEvent,
	}

	rules = x.rules(m)
	var insts []instance
	if len(rules) > 0 && len(m.p.get("RDATE")) == 0 && allEndBefore(rules, start.wall) {
		// Every RRULE ends before DTSTART: clients write this for a
		// deleted series (python-recurring-ical-events issue 117).
		// Its overrides go with it.
		x.warnf(m, m.line("RRULE", 0), "UNTIL before DTSTART: no occurrences")
		return rules, 0, false
	}
	if !start.wall.Before(win.lo) && !start.wall.After(win.hi) {
		insts = append(insts, instance{wall: start.wall})
	}
	recurring := len(rules) > 0
	for _, r := range rules {
		list, capped, err := expandRule(r.spec, start.wall, r.until, win)
		switch {
		case errors.Is(err, errRuleNeverMatches):
			x.warnf(m, r.line, "RRULE %q: %v", r.value, err)
		case err != nil:
			x.lossf(m, r.line, "RRULE %q: %v", r.value, err)
		}
		if capped {
			// The occurrences past the cap are reported (once) by emit.
			x.warnf(m, r.line, "RRULE %q: stopped after %d occurrences", r.value, len(list))
		}
		for _, w := range list {
			insts = append(insts, instance{wall: w})
		}
	}
	for i := range m.p.get("RDATE") {
		if x.rdates(m, i, ms, win, &insts) {
			recurring = true
		}
	}
	if len(insts) > 1 {
		slices.SortStableFunc(insts, func(a, b instance) int { return a.wall.Compare(b.wall) })
		insts = slices.CompactFunc(insts, func(a, b instance) bool {
			return a.wall.Equal(b.wall) && !b.hasEnd
		})
	}

	for _, in := range insts {
		at := in.at
		if at.IsZero() {
			at = localToUTC(loc, in.wall)
		}
		if ex.has(in.wall, at, start.date) {
			continue
		}
		var rid time.Time
		if recurring {
			rid = at
		}
		if o := matchOverride(byInstant, byWall, byDate, in.wall, at); o != nil {
			o.used = true
			if !x.emitOverride(o, rid, &n) {
				return rules, n, false
			}
			continue
		}
		occStart, occEnd, f := at, ms.end(in.wall, at), mf
		if in.hasEnd {
			occEnd = in.end
		}
		// RANGE=THISANDFUTURE: later instances move by the override's
		// offset, take its length and its properties (RFC 5545 3.8.4.4).
		for i := len(future) - 1; i >= 0; i-- {
			if o := future[i]; o.ridAt.Before(at) {
				occStart = at.Add(o.span.start.instant().Sub(o.ridAt))
				occEnd = o.span.end(wallIn(occStart, o.span.start.loc), occStart)
				f = &o.f
				break
			}
		}
		if !x.emit(m, f, rid, occStart, occEnd, start.date, loc, &n) {
			return rules, n, false
		}
	}
	return rules, n, true
}

// rule is a parsed RRULE of a series.
type rule struct {
	spec  ruleSpec
	until civil
	value string
	line  int
}

func (x *expander) rules(m *vevent) []rule {
	var out []rule
	start := m.p.get("DTSTART")
	if len(start) == 0 {
		return nil
	}
	var s dtv
	for i, p := range m.p.get("RRULE") {
		line := m.line("RRULE", i)
		if strings.TrimSpace(p.Value) == "" {
			x.warnf(m, line, "empty RRULE ignored")
			continue
		}
		spec, err := x.parseRRule(p.Value)
		if err != nil {
			x.lossf(m, line, "RRULE %q ignored: %v", p.Value, err)
			continue
		}
		if s.loc == nil {
			if s, err = x.dt(m, &start[0], start[0].Value, 0); err != nil {
				return nil
			}
		}
		out = append(out, rule{spec: spec, until: x.untilWall(spec, s), value: p.Value, line: line})
	}
	return out
}

// parsedRule is the result of parseRRule.
type parsedRule struct {
	spec ruleSpec
	err  error
}

// parseRRule is parseRRule once per value and feed: a feed's series share
// a few rules (FREQ=WEEKLY;BYDAY=MO). Nothing writes to a ruleSpec's
// slices once parsed (expandRule and rrule-go replace them, never modify
// them), so the series share them too.
func (x *expander) parseRRule(v string) (ruleSpec, error) {
	if r, ok := x.specs[v]; ok {
		return r.spec, r.err
	}
	spec, err := parseRRule(v)
	if x.specs == nil {
		x.specs = make(map[string]parsedRule)
	}
	x.specs[v] = parsedRule{spec, err}
	return spec, err
}

func allEndBefore(rules []rule, start civil) bool {
	for _, r := range rules {
		if r.until.IsZero() || !r.until.Before(start) {
			return false
		}
	}
	return true
}

// produces reports whether the series has the instance an override names.
func (x *expander) produces(m *vevent, start dtv, rules []rule, o *override) bool {
	w := wallIn(o.ridAt, start.loc)
	if o.rid.date || start.date || o.rid.floating {
		w = o.rid.wall
	}
	same := func(a civil) bool {
		if start.date || o.rid.date {
			return dateKey(a) == dateKey(w)
		}
		return a.Equal(w)
	}
	if same(start.wall) {
		return true
	}
	lo, hi := w, w
	if start.date || o.rid.date {
		lo, hi = truncDay(w), truncDay(w).Add(24*time.Hour-time.Second)
	}
	win := ruleWindow{lo: lo, hi: hi, from: lo, to: hi.Add(time.Second), limit: 1}
	for _, r := range rules {
		if list, _, _ := expandRule(r.spec, start.wall, r.until, win); slices.ContainsFunc(list, same) {
			return true
		}
	}
	var insts []instance
	for i := range m.p.get("RDATE") {
		x.rdates(m, i, span{start: start}, win, &insts)
	}
	return slices.ContainsFunc(insts, func(in instance) bool { return same(in.wall) })
}

func matchOverride(byInstant, byWall, byDate map[int64]*override, wall civil, at time.Time) *override {
	if o := byInstant[at.Unix()]; o != nil && !o.used {
		return o
	}
	if o := byWall[wall.Unix()]; o != nil && !o.used {
		return o
	}
	if o := byDate[dateKey(wall).v]; o != nil && !o.used {
		return o
	}
	return nil
}

// untilWall returns the rule's UNTIL on the series' wall clock. A DATE
// UNTIL includes that whole day; a UTC UNTIL is converted to the series'
// zone (RFC 5545 3.3.10).
func (x *expander) untilWall(spec ruleSpec, start dtv) civil {
	if !spec.hasUntil {
		return civil{}
	}
	u := spec.until
	switch {
	case u.kind == kindDate && !start.date:
		return u.wall.Add(24*time.Hour - time.Second)
	case u.kind == kindUTC:
		return wallIn(u.wall, start.loc)
	}
	return u.wall
}

// rdates adds the instances of the i-th RDATE property: DATE, DATE-TIME
// and PERIOD values, in any zone. It reports whether the property had a
// usable value.
func (x *expander) rdates(m *vevent, i int, ms span, win ruleWindow, insts *[]instance) bool {
	p := &m.p.get("RDATE")[i]
	line := m.line("RDATE", i)
	start := ms.start
	any := false
	for v := range strings.SplitSeq(p.Value, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		sv, ev, isPeriod := strings.Cut(v, "/")
		d, err := x.dt(m, p, sv, line)
		if err != nil {
			x.lossf(m, line, "%v, ignored", err) // err names RDATE
			continue
		}
		any = true
		in := instance{}
		switch {
		case start.date:
			in.wall = truncDay(d.wall)
			if !d.date && !d.floating {
				in.wall = truncDay(wallIn(d.instant(), start.loc))
			}
		case d.date:
			hh, mm, ss := start.wall.Clock()
			in.wall = d.wall.Add(time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute + time.Duration(ss)*time.Second)
		case d.floating:
			in.wall = d.wall
		default:
			in.at = d.instant()
			in.wall = wallIn(in.at, start.loc)
		}
		if in.wall.Before(win.lo) || in.wall.After(win.hi) {
			continue
		}
		if isPeriod {
			at := in.at
			if at.IsZero() {
				at = localToUTC(start.loc, in.wall)
			}
			if dur, err := parseDuration(ev); err == nil && !dur.negative() {
				in.end = span{start: dtv{loc: start.loc}, dur: dur}.end(in.wall, at)
				in.hasEnd = true
			} else if e, err := x.dt(m, p, ev, line); err == nil && !e.instant().Before(at) {
				if e.floating && !e.date {
					e.loc = start.loc
				}
				in.end = e.instant()
				in.hasEnd = true
			} else {
				x.warnf(m, line, "RDATE: invalid period %q, using the event's length", v)
			}
		}
		*insts = append(*insts, in)
	}
	return any
}

func truncDay(w civil) civil {
	y, m, d := w.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// emitOverride emits an override at its own time.
func (x *expander) emitOverride(o *override, rid time.Time, n *int) bool {
	if rid.IsZero() {
		rid = o.ridAt
	}
	s := o.span
	at := s.start.instant()
	return x.emit(o.ev, &o.f, rid, at, s.end(s.start.wall, at), s.start.date, s.start.loc, n)
}

// inWindow reports whether an occurrence from start to end (not before
// it) is in the window: it overlaps it, or, without length, starts in it.
func (x *expander) inWindow(start, end time.Time) bool {
	if start.Equal(end) {
		return !start.Before(x.opt.From) && start.Before(x.opt.To)
	}
	return start.Before(x.opt.To) && end.After(x.opt.From)
}

// emit adds an occurrence if it overlaps the window. It returns false when
// the event hit MaxPerEvent.
func (x *expander) emit(ev *vevent, lf *lazyFields, rid, start, end time.Time, allDay bool, loc *time.Location, n *int) bool {
	if end.Before(start) {
		end = start
	}
	if !x.inWindow(start, end) {
		return true
	}
	if *n >= x.opt.MaxPerEvent {
		x.lossf(ev, ev.line("DTSTART", 0), "more than %d occurrences in the window; the rest are dropped", x.opt.MaxPerEvent)
		return false
	}
	*n++
	f := lf.get()
	status := f.status
	if ev.root.method == "CANCEL" {
		status = "CANCELLED"
	}
	if !rid.IsZero() {
		rid = rid.UTC()
	}
	x.res.Occurrences = append(x.res.Occurrences, Occurrence{
		UID:          ev.uid,
		RecurrenceID: rid,
		Summary:      f.summary,
		Location:     f.location,
		Description:  f.description,
		Start:        start.UTC(),
		End:          end.UTC(),
		AllDay:       allDay,
		Status:       status,
		Transparent:  f.transp == 2,
		Organizer:    f.organizer,
		Attendees:    f.attendees,
		MeetingKeys:  f.keys,
	})
	if x.locs != nil {
		*x.locs = append(*x.locs, loc)
	}
	return true
}
