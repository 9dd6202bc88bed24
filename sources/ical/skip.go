package ical

import (
	"bytes"
	"hash/maphash"
	"strings"
	"time"

	goical "github.com/emersion/go-ical"
)

// Published calendars carry every past meeting: thousands of VEVENTs,
// megabytes a person, of which a 36 h window needs a handful. ParseExpand
// recognises the VEVENTs that cannot reach its window from the lines the
// scanner reads anyway and does not decode them: their DESCRIPTIONs,
// ATTENDEE lists and X- properties are most of the bytes and most of the
// work. The result is exactly what decoding everything gives
// (TestSkipChangesNothing): a VEVENT is skipped only when it could neither
// produce an occurrence nor a warning, nor change what another VEVENT
// produces.
//
// It takes three steps:
//
//  1. The scanner records, for each VEVENT directly inside a VCALENDAR, its
//     offsets, a hash of its UID and its DTSTART, DTEND and DURATION,
//     parsed as Expand parses them but with no zone resolved
//     (eventLines).
//  2. Before decoding, deferPast marks the VEVENTs that end, by their wall
//     clock, more than skipSlack before the window (a zone moves an
//     instant by less than a day from its wall clock), have a UID no other
//     VEVENT of the feed has, and no RRULE, RDATE, EXDATE or RECURRENCE-ID.
//     A UID seen twice (a master and its overrides, in any order, or
//     revisions by SEQUENCE) keeps all its VEVENTs. Any time line that
//     cannot be read keeps its VEVENT too, so that the warnings about it
//     stay. The decoder steps over the marked VEVENTs (deferredVEVENT
//     stands in for each).
//  3. Expand resolves the zones of each marked VEVENT, unless that would
//     warn (an unknown TZID, an unusable VTIMEZONE, X-WR-TIMEZONE), and
//     computes its span as span does. If it overlaps the window after all,
//     or its times warn, it is decoded then from its offsets; otherwise it
//     is dropped. So the decision is exact for the window Expand is given,
//     whatever window marked it.
//
// A skipped VEVENT still counts: in Result.Events and against
// ExpandOptions.MaxEvents, which are counted before anything is decoded.
// The decision is made again by every ParseExpand, from the bytes; nothing
// of it is kept, so a stored copy expanded later for a later window (or an
// earlier one) decides afresh.

// skipSlack is how far before the window a VEVENT's wall-clock end must
// lie for parse to leave it undecoded: more than any UTC offset (under a
// day), which is all that lies between a wall clock and its instant. Step
// 3 decides exactly; the slack keeps the VEVENTs that might reach the
// window out of step 2, so that they are decoded in one go with the rest.
const skipSlack = 48 * time.Hour

// Durations beyond these are not skipped on (nor do they occur).
const (
	maxSkipDays  = 10000
	maxSkipExact = 10000 * 24 * time.Hour
)

// eventLines is what the scanner reads of a VEVENT for skipping it.
type eventLines struct {
	// begin and end are the offsets in scanResult.data of its BEGIN line
	// and of its END line (0: it has none of its own).
	begin, end  int
	uid         uint64   // hash of the trimmed UID (evUID)
	start, stop timeLine // DTSTART (evStart), DTEND (evStop)
	dur         icalDuration
	flags       uint16
}

// timeLine is a DATE or DATE-TIME property before its zone is resolved.
type timeLine struct {
	raw  rawDT
	tzid string // its TZID parameter, for a floating DATE-TIME; "" none
}

const (
	evUID      = 1 << iota // a UID that is not blank
	evUIDSeen              // the first UID line was read
	evStart                // DTSTART read
	evStop                 // DTEND read
	evDur                  // DURATION read
	evKeep                 // never skip: recurrence, override, or a line that cannot be read
	evDeferred             // not decoded (deferPast)
)

// uidSeed hashes UIDs. Two UIDs with one hash only keep VEVENTs decoded.
var uidSeed = maphash.MakeSeed()

// eventLine records a property line of a VEVENT (directly inside its
// VCALENDAR). Only the first of each property counts, as in Expand.
func (s *scanner) eventLine(e *eventLines, name, logical []byte, nameEnd, valStart int) {
	switch string(name) {
	case "UID":
		if e.flags&evUIDSeen == 0 {
			e.flags |= evUIDSeen
			if v := bytes.TrimSpace(logical[valStart:]); len(v) > 0 {
				e.uid = maphash.Bytes(uidSeed, v)
				e.flags |= evUID
			} else {
				e.flags |= evKeep
			}
		}
	case "DTSTART":
		if e.flags&evStart == 0 {
			e.flags |= evStart
			if !s.timeLine(&e.start, logical, nameEnd, valStart) {
				e.flags |= evKeep
			}
		}
	case "DTEND":
		if e.flags&evStop == 0 {
			e.flags |= evStop
			if !s.timeLine(&e.stop, logical, nameEnd, valStart) {
				e.flags |= evKeep
			}
		}
	case "DURATION":
		if e.flags&evDur == 0 {
			e.flags |= evDur
			d, err := parseDuration(string(logical[valStart:]))
			if err != nil || d.negative() || d.days > maxSkipDays || d.exact > maxSkipExact {
				e.flags |= evKeep
			}
			e.dur = d
		}
	case "RRULE", "RDATE", "EXDATE", "RECURRENCE-ID":
		e.flags |= evKeep
	}
}

// timeLine reads a DTSTART or DTEND line as dt would, without resolving
// its zone. It reports false when the line cannot be read.
func (s *scanner) timeLine(t *timeLine, logical []byte, nameEnd, valStart int) bool {
	params := logical[nameEnd : valStart-1]
	v, found, ok := paramValue(params, "VALUE")
	if !ok {
		return false
	}
	r, err := parseDT(string(logical[valStart:]), found && bytes.EqualFold(v, []byte("DATE")))
	if err != nil {
		return false
	}
	t.raw = r
	if r.kind == kindFloating {
		tz, found, ok := paramValue(params, "TZID")
		if !ok {
			return false
		}
		if found && len(bytes.TrimSpace(tz)) > 0 {
			t.tzid = s.intern(tz)
		}
	}
	return true
}

func (s *scanner) intern(b []byte) string {
	if t, ok := s.tzids[string(b)]; ok {
		return t
	}
	if s.tzids == nil {
		s.tzids = make(map[string]string)
	}
	t := string(b)
	s.tzids[t] = t
	return t
}

// paramValue returns the first value of the parameter want (upper-case)
// in params, the part of a content line between its name and the colon
// before its value, as checkContentLine accepted it. It decodes as
// decodeParam does; ok is false where it cannot tell the same: a parameter
// name that is not ASCII (strings.ToUpper could turn it into want).
func paramValue(params []byte, want string) (val []byte, found, ok bool) {
	for len(params) > 0 {
		if params[0] != ';' {
			return nil, false, false
		}
		params = params[1:]
		eq := bytes.IndexByte(params, '=')
		if eq <= 0 {
			return nil, false, false
		}
		name := params[:eq]
		for _, c := range name {
			if c >= 0x80 {
				return nil, false, false
			}
		}
		match := !found && len(name) == len(want) && bytes.EqualFold(name, []byte(want))
		params = params[eq+1:]
		for first := true; ; first = false {
			var v []byte
			if len(params) > 0 && params[0] == '"' {
				q := bytes.IndexByte(params[1:], '"')
				if q < 0 {
					return nil, false, false
				}
				v, params = params[1:1+q], params[2+q:]
			} else {
				e := indexParamEnd(params)
				if e < 0 {
					e = len(params)
				} else if params[e] == '"' || params[e] == ':' {
					return nil, false, false
				}
				v, params = params[:e], params[e:]
			}
			if match && first {
				val, found = v, true
			}
			if len(params) == 0 || params[0] != ',' {
				break
			}
			params = params[1:]
		}
	}
	return val, found, true
}

// deferPast marks the VEVENTs of sc that cannot reach a window starting at
// from (step 2 above) and reports whether it marked any.
func deferPast(sc *scanResult, from time.Time) bool {
	n := 0
	for i := range sc.cals {
		for j := range sc.cals[i].comps {
			if c := &sc.cals[i].comps[j]; c.name == "VEVENT" && c.ev.flags&evUID != 0 {
				n++
			}
		}
	}
	if n == 0 {
		return false
	}
	uids := make(map[uint64]int32, n)
	for i := range sc.cals {
		for j := range sc.cals[i].comps {
			if c := &sc.cals[i].comps[j]; c.name == "VEVENT" && c.ev.flags&evUID != 0 {
				uids[c.ev.uid]++
			}
		}
	}
	any := false
	for i := range sc.cals {
		for j := range sc.cals[i].comps {
			c := &sc.cals[i].comps[j]
			if c.name == "VEVENT" && c.ev.endsBefore(from) && uids[c.ev.uid] == 1 {
				c.ev.flags |= evDeferred
				any = true
			}
		}
	}
	return any
}

// endsBefore reports whether e can be skipped by its own lines and ends,
// by its wall clock, more than skipSlack before from.
func (e *eventLines) endsBefore(from time.Time) bool {
	const need = evUID | evStart
	if e.flags&(need|evKeep) != need || e.end <= e.begin {
		return false
	}
	last := e.start.raw.wall
	switch {
	case e.flags&evStop != 0:
		// DTEND before DTSTART is swapped: the later of the two ends it.
		if e.stop.raw.wall.After(last) {
			last = e.stop.raw.wall
		}
	case e.flags&evDur != 0:
		last = last.AddDate(0, 0, e.dur.days).Add(e.dur.exact)
	case e.start.raw.kind == kindDate:
		last = last.AddDate(0, 0, 1)
	}
	return last.Add(skipSlack).Before(from)
}

// deferredVEVENT stands in the parse tree for a VEVENT that was not
// decoded. It is never modified.
var deferredVEVENT = &goical.Component{Name: goical.CompEvent}

// skipEvent moves the decoder past the deferred VEVENT e when it is what
// comes next (after blank lines, which go-ical skips too), and reports
// whether it did.
func (d *icsDecoder) skipEvent(e *eventLines) bool {
	if d.pos > e.begin || e.end <= e.begin || e.end >= len(d.data) {
		return false
	}
	for i := d.pos; i < e.begin; i++ {
		switch d.data[i] {
		case '\n':
		case '\r':
			if i+1 >= e.begin || d.data[i+1] != '\n' {
				return false
			}
		default:
			return false
		}
	}
	if !hasPrefixFold(d.data[e.begin:], "BEGIN:") || !hasPrefixFold(d.data[e.end:], "END") ||
		len(d.data) < e.end+4 || d.data[e.end+3] != ':' && d.data[e.end+3] != ';' {
		return false
	}
	// Past the END line, with its folds.
	d.pos = e.end
	d.readLine()
	for d.pos < len(d.data) && (d.data[d.pos] == ' ' || d.data[d.pos] == '\t') {
		d.pos++
		d.readLine()
	}
	return true
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

// decodeEventAt decodes the component whose BEGIN line is at offset off of
// data, as the (lean) decoder would have in its place, with its lean
// properties (nil for a component that is not a VEVENT).
func decodeEventAt(data []byte, off int, checked bool) (*goical.Component, *eventProps, error) {
	d := &icsDecoder{data: data, pos: off, lean: true, checked: checked}
	prop, err := d.decodeContentLine()
	if err != nil {
		return nil, nil, err
	}
	name := strings.ToUpper(prop.Value)
	c, err := d.decodeComponentBody(name, nil, modeCal.child(name))
	return c, d.event, err
}

// mustDecode reports whether the deferred VEVENT e has to be decoded after
// all (step 3 above): it overlaps x's window, or reading its times warns.
func (x *expander) mustDecode(root *calRoot, e *eventLines) bool {
	start, ok := x.locate(root, nil, e.start.raw, e.start.tzid, 0)
	if !ok {
		return true
	}
	s := span{start: start}
	switch {
	case e.flags&evStop != 0:
		end, ok := x.locate(root, nil, e.stop.raw, e.stop.tzid, 0)
		if !ok {
			return true
		}
		if s.dur = between(start, end); s.dur.negative() {
			return true // span warns that it swapped them
		}
	case e.flags&evDur != 0:
		s.dur = e.dur
	default:
		s = x.defaultSpan(s)
	}
	at := start.instant()
	end := s.end(start.wall, at)
	if end.Before(at) {
		end = at // as emit
	}
	return x.inWindow(at, end)
}
