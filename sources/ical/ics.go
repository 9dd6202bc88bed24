package ical

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	goical "github.com/emersion/go-ical"
)

// ExpandOptions controls expansion.
type ExpandOptions struct {
	// From and To are the window: occurrences overlapping [From, To) are
	// returned; a zero-length occurrence is returned when From <= start < To.
	From, To time.Time
	// Zone reads floating times when the feed has no X-WR-TIMEZONE, and
	// stands in for TZIDs that cannot be resolved (with a warning).
	// nil means UTC.
	Zone *time.Location
	// MaxPerEvent caps the occurrences of one VEVENT (with its overrides)
	// within the window; 0 means 1000. Exceeding it stops that event with a
	// warning.
	MaxPerEvent int
	// MaxEvents and MaxOccurrences cap the whole feed: its VEVENTs, and its
	// occurrences within the window. 0 means no cap. ParseExpand refuses a
	// feed over a cap with an error wrapping ErrOverLimit, and stops as
	// soon as it sees the excess (the events are counted before the
	// calendar is decoded), so an oversized feed costs little. MaxEvents
	// counts every VEVENT, also those that end before the window and that
	// ParseExpand therefore does not decode.
	MaxEvents, MaxOccurrences int

	// decodeAll turns off ParseExpand's skipping of VEVENTs that end
	// before the window (skip.go), for the tests that compare.
	decodeAll bool
}

// ErrOverLimit is wrapped by the errors of a feed over one of its caps.
var ErrOverLimit = errors.New("over the limit")

// Result is what ParseExpand found in a feed.
type Result struct {
	Occurrences []Occurrence // sorted by Start, then UID, then RecurrenceID
	// Warnings are human-readable and name the line and UID, e.g.
	// `line 42: UID "abc": unknown TZID "Foo", using UTC`.
	Warnings []string
	// Dropped are the warnings (also in Warnings) about calendar data that
	// was lost: a VEVENT or override that could not be read and was
	// skipped, a recurrence rule or date that was ignored, an end that could
	// not be read (the event makes no one busy), occurrences beyond
	// MaxPerEvent. Each names the line and UID. Unlike the other warnings
	// (repairs, fallbacks) they mean meetings are missing: callers report
	// them where an operator sees them.
	Dropped []string
	Events  int    // VEVENTs read, also those skipped undecoded
	Method  string // calendar METHOD, upper-case

	// recovered counts the panics recovered into a "cannot expand"
	// warning, and the skipped VEVENTs that could not be decoded when
	// needed after all. Production carries on; the tests require 0.
	recovered int
	// skipped counts the VEVENTs left undecoded because they cannot
	// reach the window (skip.go), for the tests.
	skipped int
}

// DefaultMaxPerEvent is the MaxPerEvent used when it is 0.
const DefaultMaxPerEvent = 1000

// ParseExpand parses an iCalendar feed and expands its events in the window.
// It fails, naming the line, on input that is not iCalendar or that is
// truncated (no END:VCALENDAR); everything else that real clients get wrong
// is repaired or skipped with a warning. It never panics.
//
// A VEVENT that ends well before the window, is no recurrence and shares
// its UID with no other is recognised from its time lines and not decoded;
// the result is the same as with every VEVENT decoded (skip.go).
func ParseExpand(data []byte, opt ExpandOptions) (*Result, error) {
	var from time.Time
	if !opt.decodeAll {
		from = opt.From
	}
	cal, err := parse(data, scanFeed, opt.MaxEvents, from)
	if err != nil {
		return nil, err
	}
	res, _, err := cal.expand(opt, false)
	return res, err
}

// Calendar is a parsed feed, ready for Expand. It holds the parse tree (of
// what Expand reads: the lean decoder's, see decodeMode): keep the Result,
// not the Calendar.
type Calendar struct {
	roots    []*calRoot
	warnings []string
}

type calRoot struct {
	cal  *goical.Calendar
	info *scanCal
	data []byte // the scanned feed, when VEVENTs were left undecoded
	// checked: data is the scanner's output (scanResult.checked).
	checked bool
	// events are the properties of the lean VEVENTs among cal.Children,
	// by index (nil for the others): a lean decoder leaves their Props nil.
	events []*eventProps
	method string
	xwr    string
	vtz    map[string]*goical.Component
}

// Parse reads an iCalendar feed with go-ical, after the line-level repairs
// described on scanFeed.
func Parse(data []byte) (*Calendar, error) {
	return parse(data, scanFeed, 0, time.Time{})
}

// panicError is a panic of go-ical (or of the scanner) recovered into an
// error. The scanner should repair or drop every line go-ical panics on, so
// the tests treat one as a failure (errors.As), while production reports it
// as a parse error of that feed and carries on.
type panicError struct {
	line int
	val  any
}

func (e *panicError) Error() string {
	return fmt.Sprintf("line %d: malformed calendar: %v", e.line, e.val)
}

// parse is Parse with the line-level pass as a parameter, so that a test can
// hand go-ical a line the scanner would have repaired, refusing a feed of
// more than maxEvents VEVENTs (0: no cap) before decoding it. Unless from is
// zero, it leaves undecoded the VEVENTs that cannot reach a window starting
// at from (skip.go).
func parse(data []byte, scan func([]byte) (*scanResult, error), maxEvents int, from time.Time) (cal *Calendar, err error) {
	line := 1
	defer func() {
		// go-ical panics on some malformed lines; the scanner should have
		// caught them all, but a feed must never take the worker down.
		if r := recover(); r != nil {
			cal, err = nil, &panicError{line: line, val: r}
		}
	}()
	sc, err := scan(data)
	if err != nil {
		return nil, err
	}
	if maxEvents > 0 {
		n := 0
		for i := range sc.cals {
			for _, c := range sc.cals[i].comps {
				if c.name == "VEVENT" {
					n++
				}
			}
		}
		if n > maxEvents {
			return nil, fmt.Errorf("%d VEVENTs, more than the %d allowed: %w", n, maxEvents, ErrOverLimit)
		}
	}
	deferred := !from.IsZero() && deferPast(sc, from)
	cal = &Calendar{warnings: sc.warnings}
	dec := newICSDecoder(sc.data)
	dec.lean, dec.checked = true, sc.checked
	for i := range sc.cals {
		line = sc.cals[i].line
		if deferred {
			dec.top = sc.cals[i].comps
		}
		c, derr := dec.Decode()
		if derr != nil {
			if errors.Is(derr, io.EOF) {
				derr = errors.New("unexpected end of file")
			}
			return nil, fmt.Errorf("line %d: %w", line, derr)
		}
		root := &calRoot{cal: c, info: &sc.cals[i], vtz: map[string]*goical.Component{}}
		if deferred {
			root.data, root.checked = sc.data, sc.checked
		}
		root.events, dec.events = dec.events, nil
		root.method = toUpperASCII(strings.TrimSpace(propValue(c.Component, "METHOD")))
		root.xwr = strings.TrimSpace(propValue(c.Component, "X-WR-TIMEZONE"))
		for _, child := range c.Children {
			if child.Name == "VTIMEZONE" {
				if id := strings.TrimSpace(propValue(child, "TZID")); id != "" {
					root.vtz[id] = child
					root.vtz[unescapeText(id)] = child
				}
			}
		}
		cal.roots = append(cal.roots, root)
	}
	return cal, nil
}

// Method returns the calendar's METHOD, upper-case.
func (c *Calendar) Method() string {
	if len(c.roots) == 0 {
		return ""
	}
	return c.roots[0].method
}

// vevent is one VEVENT with what identifies it.
type vevent struct {
	c     *goical.Component
	p     compProps // its properties
	sc    *scanComp
	root  *calRoot
	index int
	uid   string
	seq   int
	f     lazyFields // its fields, as a series (expandGroup)
}

func (ev *vevent) line(prop string, n int) int {
	if ev.sc == nil {
		return 0
	}
	return ev.sc.lineOf(prop, n)
}

type group struct {
	masters, overrides []*vevent
	one                [1]*vevent // masters, for most groups
}

// Expand expands every VEVENT of the calendar in the window. It does not
// modify the Calendar. VEVENTs that share a UID without RECURRENCE-ID are
// one event when they are revisions of it (the highest SEQUENCE wins, then
// the last with the same DTSTART) and distinct events, with a warning,
// when they have the highest SEQUENCE but different DTSTARTs. Past opt.MaxOccurrences it stops, with a warning.
func (c *Calendar) Expand(opt ExpandOptions) *Result {
	res, _, err := c.expand(opt, false)
	if err != nil {
		res.Warnings = append(res.Warnings, err.Error())
	}
	return res
}

// expand is Expand, also returning each occurrence's zone when withLocs,
// and an error wrapping ErrOverLimit past opt.MaxOccurrences (with what was
// expanded until then).
func (c *Calendar) expand(opt ExpandOptions, withLocs bool) (*Result, []*time.Location, error) {
	if opt.MaxPerEvent <= 0 {
		opt.MaxPerEvent = DefaultMaxPerEvent
	}
	def := opt.Zone
	if def == nil {
		def = time.UTC
	}
	x := &expander{
		opt:   opt,
		def:   def,
		res:   &Result{Method: c.Method(), Warnings: slices.Clone(c.warnings)},
		zones: map[*calRoot]map[string]*time.Location{},
		float: map[*calRoot]*time.Location{},
	}
	// The VEVENTs and their groups, allocated together: a slice each for
	// those decoded (deferred ones that must be decoded after all, past
	// the capacity, come one by one).
	n := 0
	for _, root := range c.roots {
		for _, child := range root.cal.Children {
			if child.Name == "VEVENT" && child != deferredVEVENT {
				n++
			}
		}
	}
	evs, gs := make([]vevent, 0, n), make([]group, 0, n)
	groups := make(map[string]*group, n)
	var order []*group
	idx := 0
	for _, root := range c.roots {
		for i, child := range root.cal.Children {
			if child.Name != "VEVENT" {
				continue
			}
			var sc *scanComp
			if i < len(root.info.comps) && root.info.comps[i].name == "VEVENT" {
				sc = &root.info.comps[i]
			}
			var ep *eventProps
			if i < len(root.events) {
				ep = root.events[i]
			}
			if child == deferredVEVENT {
				// Left undecoded by parse: dropped, unless it reaches
				// this window after all or its times warn.
				if !x.mustDecode(root, &sc.ev) {
					x.res.skipped++
					idx++
					continue
				}
				c, cp, err := decodeEventAt(root.data, sc.ev.begin, root.checked)
				if err != nil {
					// The scanner let through a line the decoder refuses:
					// a bug, as a panic would be.
					x.res.recovered++
					x.lossf(&vevent{root: root}, sc.line, "VEVENT skipped: %v", err)
					idx++
					continue
				}
				child, ep = c, cp
			}
			var ev *vevent
			if len(evs) < cap(evs) {
				evs = evs[:len(evs)+1]
				ev = &evs[len(evs)-1]
			} else {
				ev = new(vevent)
			}
			*ev = vevent{c: child, p: compProps{child.Props, ep}, root: root, index: idx, sc: sc}
			idx++
			ev.uid = strings.TrimSpace(ev.p.value("UID"))
			if s := ev.p.value("SEQUENCE"); s != "" {
				ev.seq, _ = strconv.Atoi(strings.TrimSpace(s))
			}
			key := ev.uid
			if key == "" {
				key = "\x00" + strconv.Itoa(ev.index)
			}
			g := groups[key]
			if g == nil {
				if len(gs) < cap(gs) {
					gs = gs[:len(gs)+1]
					g = &gs[len(gs)-1]
				} else {
					g = new(group)
				}
				g.masters = g.one[:0]
				groups[key] = g
				order = append(order, g)
			}
			if len(ev.p.get("RECURRENCE-ID")) > 0 {
				g.overrides = append(g.overrides, ev)
			} else {
				g.masters = append(g.masters, ev)
			}
		}
	}
	x.res.Events = idx
	var locs []*time.Location
	if withLocs {
		x.locs = &locs
	}
	var over error
	for _, g := range order {
		x.expandGroup(g)
		if n := len(x.res.Occurrences); opt.MaxOccurrences > 0 && n > opt.MaxOccurrences {
			over = fmt.Errorf("more than %d occurrences in the window: %w", opt.MaxOccurrences, ErrOverLimit)
			break
		}
	}
	occ := x.res.Occurrences
	less := func(a, b *Occurrence) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		if c := cmp.Compare(a.UID, b.UID); c != 0 {
			return c
		}
		return a.RecurrenceID.Compare(b.RecurrenceID)
	}
	if len(occ) < 2 {
		return x.res, locs, over
	}
	// Sorted by index: an Occurrence is too big to move about.
	perm := make([]int32, len(occ))
	for i := range perm {
		perm[i] = int32(i)
	}
	slices.SortStableFunc(perm, func(i, j int32) int { return less(&occ[i], &occ[j]) })
	sorted := make([]Occurrence, len(occ))
	for i, j := range perm {
		sorted[i] = occ[j]
	}
	x.res.Occurrences = sorted
	if !withLocs {
		return x.res, nil, over
	}
	sortedLocs := make([]*time.Location, len(occ))
	for i, j := range perm {
		sortedLocs[i] = locs[j]
	}
	return x.res, sortedLocs, over
}

type expander struct {
	opt   ExpandOptions
	def   *time.Location
	res   *Result
	zones map[*calRoot]map[string]*time.Location
	float map[*calRoot]*time.Location
	// locs records each occurrence's zone, for tests that compare local
	// wall-clock times; nil in production.
	locs *[]*time.Location
	// specs are the RRULEs parsed so far, by value (parseRRule).
	specs map[string]parsedRule
}

func (x *expander) warnf(ev *vevent, line int, format string, args ...any) {
	x.res.Warnings = append(x.res.Warnings, warning(ev, line, format, args...))
}

// lossf is warnf for calendar data that is lost (Result.Dropped).
func (x *expander) lossf(ev *vevent, line int, format string, args ...any) {
	msg := warning(ev, line, format, args...)
	x.res.Warnings = append(x.res.Warnings, msg)
	x.res.Dropped = append(x.res.Dropped, msg)
}

func warning(ev *vevent, line int, format string, args ...any) string {
	msg := fmt.Sprintf(format, args...)
	if ev != nil && ev.uid != "" {
		msg = fmt.Sprintf("UID %q: %s", ev.uid, msg)
	}
	if line > 0 {
		msg = fmt.Sprintf("line %d: %s", line, msg)
	}
	return msg
}

// zone resolves a TZID once per feed: IANA name, Windows name, the feed's
// VTIMEZONE, an Outlook display name or offset label, then the default
// zone with a warning.
func (x *expander) zone(ev *vevent, tzid string, line int) *time.Location {
	m := x.zoneCache(ev.root)
	if loc, ok := m[tzid]; ok {
		return loc
	}
	loc, vtzErr, unknown := x.lookupZone(ev.root, tzid)
	if vtzErr != nil {
		x.warnf(ev, line, "VTIMEZONE %q: %v", tzid, vtzErr)
	}
	if unknown {
		x.warnf(ev, line, "unknown TZID %q, using %s", tzid, loc)
	}
	m[tzid] = loc
	return loc
}

// quietZone is zone for a VEVENT that may be skipped: false, and nothing
// cached, where zone would warn.
func (x *expander) quietZone(root *calRoot, tzid string) (*time.Location, bool) {
	m := x.zoneCache(root)
	if loc, ok := m[tzid]; ok {
		return loc, true
	}
	loc, vtzErr, unknown := x.lookupZone(root, tzid)
	if vtzErr != nil || unknown {
		return nil, false
	}
	m[tzid] = loc
	return loc, true
}

func (x *expander) zoneCache(root *calRoot) map[string]*time.Location {
	m := x.zones[root]
	if m == nil {
		m = map[string]*time.Location{}
		x.zones[root] = m
	}
	return m
}

// lookupZone finds the zone of a TZID for zone: the VTIMEZONE's error
// when one named so cannot be used, and unknown when the default stands in.
func (x *expander) lookupZone(root *calRoot, tzid string) (loc *time.Location, vtzErr error, unknown bool) {
	loc = resolveNamedZone(tzid)
	if loc == nil {
		vc := root.vtz[tzid]
		if vc == nil {
			vc = root.vtz[strings.TrimSpace(tzid)]
		}
		if vc != nil {
			loc, vtzErr = vtzLocation(vc, tzid)
		}
	}
	if loc == nil {
		loc = resolveDisplayName(tzid)
	}
	if loc == nil {
		// The configured zone stands in for an unknown TZID (as khal's
		// default_timezone does). Without one, a UTC offset written in the
		// TZID ("GMT-05.00/-04.00", "UTC+01") beats plain UTC.
		loc, unknown = x.def, true
		if x.opt.Zone == nil {
			if off, ok := parseOffsetLabel(tzid); ok {
				loc = time.FixedZone(fmtOffset(off), off)
			}
		}
	}
	return loc, vtzErr, unknown
}

// floating returns the zone of floating and all-day values: X-WR-TIMEZONE,
// else the configured zone.
func (x *expander) floating(ev *vevent) *time.Location {
	if loc, ok := x.float[ev.root]; ok {
		return loc
	}
	loc := x.def
	if ev.root.xwr != "" {
		loc = x.zone(&vevent{root: ev.root}, ev.root.xwr, 0)
	}
	x.float[ev.root] = loc
	return loc
}

// quietFloating is floating for a VEVENT that may be skipped: false where
// floating would warn.
func (x *expander) quietFloating(root *calRoot) (*time.Location, bool) {
	if loc, ok := x.float[root]; ok {
		return loc, true
	}
	loc := x.def
	if root.xwr != "" {
		var ok bool
		if loc, ok = x.quietZone(root, root.xwr); !ok {
			return nil, false
		}
	}
	x.float[root] = loc
	return loc, true
}

// dtv is a resolved DATE or DATE-TIME value.
type dtv struct {
	wall     civil
	loc      *time.Location
	date     bool
	floating bool // no TZID and no Z (DATE values too)
}

func (d dtv) instant() time.Time { return localToUTC(d.loc, d.wall) }

func (x *expander) dt(ev *vevent, p *goical.Prop, value string, line int) (dtv, error) {
	wantDate := false
	if v := p.Params["VALUE"]; len(v) > 0 && strings.EqualFold(v[0], "DATE") {
		wantDate = true
	}
	r, err := parseDT(value, wantDate)
	if err != nil {
		return dtv{}, fmt.Errorf("%s: invalid value %q", p.Name, value)
	}
	var tzid string
	if tz := p.Params["TZID"]; len(tz) > 0 && strings.TrimSpace(tz[0]) != "" {
		tzid = tz[0]
	}
	d, _ := x.locate(ev.root, ev, r, tzid, line)
	return d, nil
}

// locate resolves a parsed value: a DATE or a floating DATE-TIME in the
// floating zone, a DATE-TIME with a TZID (tzid, not blank) in its zone.
// With ev nil it is quiet: false where resolving a zone would warn.
func (x *expander) locate(root *calRoot, ev *vevent, r rawDT, tzid string, line int) (dtv, bool) {
	d, ok := dtv{wall: r.wall}, true
	switch {
	case r.kind == kindUTC:
		d.loc = time.UTC
	case r.kind == kindDate || tzid == "":
		d.date, d.floating = r.kind == kindDate, true
		if ev == nil {
			d.loc, ok = x.quietFloating(root)
		} else {
			d.loc = x.floating(ev)
		}
	case ev == nil:
		d.loc, ok = x.quietZone(root, tzid)
	default:
		d.loc = x.zone(ev, tzid, line)
	}
	return d, ok
}

// span is when an event starts and how long it lasts.
type span struct {
	start dtv
	dur   icalDuration
}

// end returns the end of an instance starting at wall/at: days and weeks
// are nominal, the rest exact (RFC 5545 3.3.6).
func (s span) end(wall civil, at time.Time) time.Time {
	if s.dur.days == 0 {
		return at.Add(s.dur.exact)
	}
	return localToUTC(s.start.loc, wall.AddDate(0, 0, s.dur.days)).Add(s.dur.exact)
}

// upper is a bound on the duration, for widening the expansion window.
func (s span) upper() time.Duration {
	return time.Duration(s.dur.days)*25*time.Hour + s.dur.exact
}

func (x *expander) span(ev *vevent) (span, error) {
	var s span
	ps := ev.p.get("DTSTART")
	if len(ps) == 0 {
		return s, errors.New("no DTSTART")
	}
	start, err := x.dt(ev, &ps[0], ps[0].Value, ev.line("DTSTART", 0))
	if err != nil {
		return s, err
	}
	s.start = start
	if pe := ev.p.get("DTEND"); len(pe) > 0 {
		end, err := x.dt(ev, &pe[0], pe[0].Value, ev.line("DTEND", 0))
		if err != nil {
			x.endIgnored(ev, ev.line("DTEND", 0), s, err.Error())
			return x.defaultSpan(s), nil
		}
		s.dur = between(start, end)
		if s.dur.negative() {
			// DTEND before DTSTART: swapped, as python-recurring-ical-events
			// and the goical.js oracle do.
			x.warnf(ev, ev.line("DTEND", 0), "DTEND before DTSTART, swapped")
			s.start = end
			s.dur.days, s.dur.exact = -s.dur.days, -s.dur.exact
		}
		return s, nil
	}
	if pd := ev.p.get("DURATION"); len(pd) > 0 {
		d, err := parseDuration(pd[0].Value)
		if err != nil || d.negative() {
			x.endIgnored(ev, ev.line("DURATION", 0), s, fmt.Sprintf("invalid DURATION %q", pd[0].Value))
			return x.defaultSpan(s), nil
		}
		s.dur = d
		return s, nil
	}
	return x.defaultSpan(s), nil
}

// between is the length of an event from its DTSTART to its DTEND: whole
// days between two DATEs, else exact.
func between(start, end dtv) icalDuration {
	if start.date && end.date {
		return icalDuration{days: int(end.wall.Sub(start.wall) / (24 * time.Hour))}
	}
	return icalDuration{exact: end.instant().Sub(start.instant())}
}

// endIgnored reports an end that cannot be read. A DATE event keeps its
// default day; a DATE-TIME event is left without length, so it makes no one
// busy: that is data lost.
func (x *expander) endIgnored(ev *vevent, line int, s span, problem string) {
	if s.start.date {
		x.warnf(ev, line, "%s, ignored", problem)
		return
	}
	x.lossf(ev, line, "%s, ignored: the event has no length and makes no one busy", problem)
}

// defaultSpan: without DTEND or DURATION a DATE lasts one day and a
// DATE-TIME has no length (RFC 5545 3.6.1).
func (x *expander) defaultSpan(s span) span {
	s.dur = icalDuration{}
	if s.start.date {
		s.dur.days = 1
	}
	return s
}

// fields are the descriptive properties of a VEVENT.
type fields struct {
	summary, location, description string
	status                         string
	organizer                      string
	attendees                      []Attendee
	keys                           []string // MeetingKeys of the VEVENT
	transp                         int8     // 0 unset, 1 opaque, 2 transparent
	has                            uint8
}

const (
	hasSummary = 1 << iota
	hasLocation
	hasDescription
	hasOrganizer
	hasAttendees
)

func readFields(c compProps) fields {
	var f fields
	if p := c.get("SUMMARY"); len(p) > 0 {
		f.summary, f.has = unescapeText(p[0].Value), f.has|hasSummary
	}
	if p := c.get("LOCATION"); len(p) > 0 {
		f.location, f.has = unescapeText(p[0].Value), f.has|hasLocation
	}
	if p := c.get("DESCRIPTION"); len(p) > 0 {
		f.description, f.has = unescapeText(p[0].Value), f.has|hasDescription
	}
	if p := c.get("STATUS"); len(p) > 0 {
		f.status = toUpperASCII(strings.TrimSpace(p[0].Value))
	}
	if p := c.get("ORGANIZER"); len(p) > 0 {
		f.organizer, f.has = calAddress(p[0].Value), f.has|hasOrganizer
	}
	if ps := c.get("ATTENDEE"); len(ps) > 0 {
		f.has |= hasAttendees
		f.attendees = make([]Attendee, len(ps))
		for i := range ps {
			f.attendees[i].Email = calAddress(ps[i].Value)
			if v := ps[i].Params["PARTSTAT"]; len(v) > 0 {
				f.attendees[i].PartStat = toUpperASCII(strings.TrimSpace(v[0]))
			}
		}
	}
	f.keys = eventKeys(c)
	if p := c.get("TRANSP"); len(p) > 0 {
		f.transp = 1
		if strings.EqualFold(strings.TrimSpace(p[0].Value), "TRANSPARENT") {
			f.transp = 2
		}
	}
	if p := c.get("X-MICROSOFT-CDO-BUSYSTATUS"); len(p) > 0 && strings.EqualFold(strings.TrimSpace(p[0].Value), "FREE") {
		f.transp = 2
	}
	return f
}

// inherit fills what an override leaves out from its master.
func (f fields) inherit(m *fields) fields {
	if m == nil {
		return f
	}
	if f.has&hasSummary == 0 {
		f.summary = m.summary
	}
	if f.has&hasLocation == 0 {
		f.location = m.location
	}
	if f.has&hasDescription == 0 {
		f.description = m.description
	}
	if f.has&hasOrganizer == 0 {
		f.organizer = m.organizer
	}
	if f.has&hasAttendees == 0 {
		f.attendees = m.attendees
	}
	if f.keys == nil {
		f.keys = m.keys
	}
	if f.transp == 0 {
		f.transp = m.transp
	}
	if f.status == "" || m.status == "CANCELLED" {
		// A cancelled series cancels every instance (docs/configuration.md).
		f.status = m.status
	}
	return f
}

// masters returns the VEVENTs among those of one UID without RECURRENCE-ID
// that count, in file order.
//
// A higher SEQUENCE is a later revision of the same event and supersedes
// the lower ones (RFC 5545 3.8.7.4). Copies with the highest SEQUENCE and
// the same DTSTART are one event: the last in the file wins. Copies with the
// highest SEQUENCE and different DTSTARTs are not revisions of one another
// (nothing says which is newer): an exporter gave several meetings one UID,
// so each counts, with a warning.
func (x *expander) masters(list []*vevent) []*vevent {
	if len(list) <= 1 {
		return list
	}
	top := list[0].seq
	for _, ev := range list[1:] {
		top = max(top, ev.seq)
	}
	var kept []*vevent
	byStart := make(map[string]int, len(list))
	older, same := 0, 0
	for _, ev := range list {
		if ev.seq < top {
			older++
			continue
		}
		k := startKey(ev)
		if i, ok := byStart[k]; ok {
			kept[i] = ev
			same++
			continue
		}
		byStart[k] = len(kept)
		kept = append(kept, ev)
	}
	first := kept[0]
	line := first.line("DTSTART", 0)
	if older > 0 {
		x.warnf(first, line, "%d VEVENTs with this UID and no RECURRENCE-ID: SEQUENCE %d supersedes %d older", len(list), top, older)
	}
	if same > 0 {
		x.warnf(first, line, "%d VEVENTs with this UID, SEQUENCE %d and the same DTSTART: the last in the file counts", same+1, top)
	}
	if len(kept) > 1 {
		x.warnf(first, line, "%d VEVENTs with this UID and SEQUENCE %d but different DTSTARTs: each counts as a meeting of its own", len(kept), top)
	}
	return kept
}

// startKey is a VEVENT's DTSTART as written, for telling copies apart.
func startKey(ev *vevent) string {
	ps := ev.p.get("DTSTART")
	if len(ps) == 0 {
		return ""
	}
	var tz, val string
	if v := ps[0].Params["TZID"]; len(v) > 0 {
		tz = v[0]
	}
	if v := ps[0].Params["VALUE"]; len(v) > 0 {
		val = toUpperASCII(v[0])
	}
	return tz + "\x00" + val + "\x00" + strings.TrimSpace(ps[0].Value)
}
