package ical

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	goical "github.com/emersion/go-ical"
)

// icsDecoder decodes the calendars of a scanned feed into go-ical's types.
// It is go-ical's Decoder, step for step (the same grammar, the same
// results and errors on the same bytes: TestDecoderMatchesGoICAL and
// FuzzDecoderMatchesGoICAL hold it to that), written for a feed already in
// memory; a lean one (ParseExpand's) builds only what Expand reads
// (decodeMode). go-ical's reads through bufio a rune at a time, allocates a map
// for the parameters of every line and builds parameter values one byte at
// a time; at 10,000 feeds of 90 KB its decode was most of the first pass's
// CPU (BENCHMARKS.md).
//
// Each unfolded line is one string of its own (in a lean decoder, the kept
// lines of one component are one string), so a value kept from it (a
// SUMMARY in an occurrence) holds on to its line or its VEVENT's kept
// lines, never to the whole feed.
// A property without parameters has nil Params (reading a nil map is fine;
// nothing here writes to them).
type icsDecoder struct {
	data    []byte
	pos     int
	scratch []byte
	// props holds the properties of the components being decoded, the
	// innermost last; each component takes its own when it ends (one
	// allocation for its properties, not one per property name).
	props []goical.Prop
	// top are the scanned components of the calendar Decode reads next;
	// those deferred (skip.go) are not decoded: deferredVEVENT stands in
	// for each. nil decodes everything, as go-ical does.
	top []scanComp
	// lean decodes only what Expand reads (decodeMode); off, the decoder
	// builds go-ical's tree, for the tests that hold it to go-ical's.
	lean bool
	// checked: data is the scanner's (scanResult.checked), so a line left
	// out needs no check that it would decode.
	checked bool

	// The lean decoder's buffers. text holds the kept lines of the
	// components being decoded and spans their ends in it, the innermost
	// component's last: a component's kept lines become one string when
	// it ends, not one string each.
	text  []byte
	spans []int
	// params shares one Params map among the lines of a feed with the
	// same kept parameters (TZID=Europe/London, PARTSTAT=ACCEPTED): Expand
	// only reads them. key, vals and pnames are decodeLeanLine's scratch.
	params map[string]goical.Params
	key    []byte
	vals   []string
	pnames []string
	pcount []int
	// event is the properties of the lean VEVENT decoded last, and events
	// those of the calendar's children, by index (nil: not a lean VEVENT).
	event  *eventProps
	events []*eventProps
}

// eventProps are the properties a lean decoder keeps of a VEVENT, by name:
// a dozen names, which a list finds faster than a map is built (the
// VEVENT's Props stay nil).
type eventProps struct {
	names []nameEnd
	props []goical.Prop
	buf   [12]nameEnd // names, for most components
}

// nameEnd is a property name, whose properties end at props[end].
type nameEnd struct {
	name string
	end  int
}

// compProps reads the properties of a VEVENT: a lean decoder's list, or
// its component's map.
type compProps struct {
	m goical.Props
	e *eventProps
}

// get returns the properties named name, as Props[name].
func (p compProps) get(name string) []goical.Prop {
	if p.e == nil {
		return p.m[name]
	}
	start := 0
	for _, n := range p.e.names {
		if n.name == name {
			return p.e.props[start:n.end:n.end]
		}
		start = n.end
	}
	return nil
}

// value is the value of the first property named name, or "".
func (p compProps) value(name string) string {
	if ps := p.get(name); len(ps) > 0 {
		return ps[0].Value
	}
	return ""
}

// all yields each name with its properties, in no particular order.
func (p compProps) all(yield func(string, []goical.Prop) bool) {
	if p.e == nil {
		for name, ps := range p.m {
			if !yield(name, ps) {
				return
			}
		}
		return
	}
	start := 0
	for _, n := range p.e.names {
		if !yield(n.name, p.e.props[start:n.end:n.end]) {
			return
		}
		start = n.end
	}
}

// decodeMode is what a component keeps of what it reads. Expand reads
// little of a feed: of the VCALENDAR its METHOD and X-WR-TIMEZONE, its
// VTIMEZONEs, and of each VEVENT the properties readFields, span and the
// recurrence read, with four parameters. Most of a real feed's lines are
// none of these (DTSTAMP, X-MICROSOFT-*, X-ALT-DESC, the VALARMs, the
// parameters of ATTENDEE); a lean decoder builds nothing of them. It checks
// that they would decode, unless the scanner wrote them (checked), so that
// it fails where go-ical's decoder would.
type decodeMode int8

const (
	modeAll   decodeMode = iota // everything, as go-ical
	modeCal                     // a VCALENDAR, lean
	modeEvent                   // a VEVENT directly inside a VCALENDAR, lean
	modeDrop                    // nothing but the component's name
)

// child is the mode of a child component named name (upper-case).
func (m decodeMode) child(name string) decodeMode {
	switch m {
	case modeAll:
		return modeAll
	case modeCal:
		switch name {
		case "VEVENT":
			return modeEvent
		case "VTIMEZONE":
			return modeAll // vtzLocation reads all of it
		}
	}
	return modeDrop
}

// keepsChildren reports whether a component of this mode keeps its child
// components. A lean VCALENDAR keeps every child, so that its children
// stay aligned with the scanner's components; nothing reads the children
// of a VEVENT (its VALARMs).
func (m decodeMode) keepsChildren() bool { return m == modeAll || m == modeCal }

// keeps reports whether a component of this mode keeps the property
// named name (upper-case ASCII) on the content line l.
func (m decodeMode) keeps(name, l []byte) bool {
	switch m {
	case modeAll:
		return true
	case modeCal:
		switch string(name) {
		case "METHOD", "X-WR-TIMEZONE":
			return true
		}
	case modeEvent:
		switch string(name) {
		case "UID", "SEQUENCE", "RECURRENCE-ID", "DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE",
			"SUMMARY", "LOCATION", "DESCRIPTION", "STATUS", "ORGANIZER", "ATTENDEE", "TRANSP",
			"X-MICROSOFT-CDO-BUSYSTATUS", "URL", "CONFERENCE":
			return true
		}
		// eventKeys reads every X- property, for meeting keys: those
		// that mention neither vendor have none.
		return bytes.HasPrefix(name, []byte("X-")) && mentionsVendor(l)
	}
	return false
}

// leanParams reports whether a lean decoder keeps the parameter named
// name (upper-case): those that Expand reads.
func leanParams(name string) bool {
	switch name {
	case "VALUE", "TZID", "RANGE", "PARTSTAT":
		return true
	}
	return false
}

// mentionsVendor reports whether b holds "zoom" or "webex" in any ASCII
// case: where appendKeys looks further.
func mentionsVendor(b []byte) bool {
	for i, c := range b {
		switch c | 0x20 {
		case 'z':
			if hasFoldAt(b, i, "zoom") {
				return true
			}
		case 'w':
			if hasFoldAt(b, i, "webex") {
				return true
			}
		}
	}
	return false
}

// hasFoldAt reports whether b[i:] starts with the lower-case needle, in
// any ASCII case (as indexFold matches).
func hasFoldAt(b []byte, i int, needle string) bool {
	if len(b)-i < len(needle) {
		return false
	}
	for k := 0; k < len(needle); k++ {
		if lowerASCII(b[i+k]) != needle[k] {
			return false
		}
	}
	return true
}

func newICSDecoder(data []byte) *icsDecoder { return &icsDecoder{data: data} }

// readLine returns the next physical line without its line end ("\n" or
// "\r\n", as bufio.Reader.ReadLine) and io.EOF when none is left.
func (d *icsDecoder) readLine() ([]byte, error) {
	if d.pos >= len(d.data) {
		return nil, io.EOF
	}
	rest := d.data[d.pos:]
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		d.pos = len(d.data)
		return rest, nil
	}
	d.pos += i + 1
	line := rest[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, nil
}

// readContinuedLine returns the next logical line, unfolded: a physical
// line that starts with a space or a tab continues the one before it. The
// line is valid until the next call.
func (d *icsDecoder) readContinuedLine() ([]byte, error) {
	first, err := d.readLine()
	if err != nil {
		return nil, err
	}
	if d.pos >= len(d.data) || (d.data[d.pos] != ' ' && d.data[d.pos] != '\t') {
		return first, nil
	}
	buf := append(d.scratch[:0], first...)
	for d.pos < len(d.data) && (d.data[d.pos] == ' ' || d.data[d.pos] == '\t') {
		d.pos++
		l, err := d.readLine()
		if err != nil {
			return nil, err
		}
		buf = append(buf, l...)
	}
	d.scratch = buf
	return buf, nil
}

// nextLine returns the next logical line that is not empty (go-ical skips
// empty lines).
func (d *icsDecoder) nextLine() ([]byte, error) {
	for {
		l, err := d.readContinuedLine()
		if err != nil {
			return nil, err
		}
		if len(l) > 0 {
			return l, nil
		}
	}
}

func (d *icsDecoder) decodeContentLine() (goical.Prop, error) {
	l, err := d.nextLine()
	if err != nil {
		return goical.Prop{}, err
	}
	return decodeContentLine(string(l), nil)
}

// leanLine is what a lean component does with a content line.
type leanLine int8

const (
	lineSkip   leanLine = iota // a property it does not keep, on a line that decodes
	lineKeep                   // a property it keeps (decoded when the component ends)
	lineDecode                 // BEGIN, END, or a line to decode now: an error, or a name that is not ASCII
)

// classify says what a component of lean mode m does with the content
// line l; checked, l is known to decode (scanResult.checked).
func (m decodeMode) classify(l []byte, checked bool) leanLine {
	i := indexNameEnd(l)
	if i <= 0 || !isASCII(l[:i]) {
		// An error, or a name strings.ToUpper might turn into BEGIN or
		// into one kept.
		return lineDecode
	}
	var nb [64]byte
	name := upperName(nb[:0], l[:i])
	switch string(name) {
	case "BEGIN", "END":
		return lineDecode
	}
	if !checked {
		if _, _, problem := checkContentLine(l); problem != "" {
			return lineDecode
		}
	}
	if m.keeps(name, l) {
		return lineKeep
	}
	return lineSkip
}

// decodeContentLine decodes a content line. keepParam, unless nil, says
// which parameters to keep.
func decodeContentLine(s string, keepParam func(string) bool) (goical.Prop, error) {
	i := indexNameEnd(s)
	if i < 0 {
		return goical.Prop{}, errors.New("ical: malformed content line: missing colon")
	} else if i == 0 {
		return goical.Prop{}, errors.New("ical: malformed content line: empty property name")
	}
	p := goical.Prop{Name: strings.ToUpper(s[:i])}
	s = s[i:]
	for len(s) > 0 && s[0] == ';' {
		s = s[1:]
		var (
			name   string
			values []string
			err    error
		)
		name, values, s, err = decodeParam(s, keepParam, nil)
		if err != nil {
			return goical.Prop{}, err
		}
		if keepParam != nil && !keepParam(name) {
			continue
		}
		if p.Params == nil {
			p.Params = make(goical.Params, 1)
		}
		p.Params[name] = append(p.Params[name], values...)
	}
	if len(s) == 0 || s[0] != ':' {
		return goical.Prop{}, errors.New("ical: malformed property: expected colon")
	}
	p.Value = s[1:]
	return p, nil
}

// decodeParam decodes NAME=VALUE[,VALUE]... at the start of s and returns
// what follows. The values are appended to values, if keep (unless nil)
// keeps the parameter.
func decodeParam(s string, keep func(string) bool, values []string) (name string, _ []string, rest string, err error) {
	i := strings.IndexByte(s, '=')
	if i < 0 {
		return "", nil, "", errors.New("ical: malformed param: missing equal sign")
	} else if i == 0 {
		return "", nil, "", errors.New("ical: malformed param: empty param name")
	}
	name = strings.ToUpper(s[:i])
	kept := keep == nil || keep(name)
	s = s[i+1:]
	for {
		var v string
		if len(s) > 0 && s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return "", nil, "", errors.New("ical: malformed param value: unterminated quoted string")
			}
			v, s = s[1:1+end], s[2+end:]
		} else {
			end := indexParamEnd(s)
			if end < 0 {
				end = len(s)
			} else if s[end] == '"' {
				return "", nil, "", errors.New("ical: malformed param value: illegal double-quote")
			}
			v, s = s[:end], s[end:]
		}
		if kept {
			values = append(values, v)
		}
		if len(s) == 0 {
			// go-ical indexes past the end here (a panic); the scanner
			// drops such lines before they get here.
			return "", nil, "", errors.New("ical: malformed param: line ends after a parameter value")
		}
		switch c := s[0]; c {
		case ',':
			s = s[1:]
		case ';', ':':
			return name, values, s, nil
		default:
			return "", nil, "", fmt.Errorf("ical: unexpected character %q after decoding param value", c)
		}
	}
}

// decodeLeanLine is decodeContentLine(s, leanParams), with the Params
// maps shared (d.params).
func (d *icsDecoder) decodeLeanLine(s string) (goical.Prop, error) {
	i := indexNameEnd(s)
	if i < 0 || i == 0 {
		return decodeContentLine(s, leanParams) // its error
	}
	p := goical.Prop{Name: strings.ToUpper(s[:i])}
	s = s[i:]
	key, vals, pnames, pcount := d.key[:0], d.vals[:0], d.pnames[:0], d.pcount[:0]
	for len(s) > 0 && s[0] == ';' {
		s = s[1:]
		n := len(vals)
		var (
			name string
			err  error
		)
		name, vals, s, err = decodeParam(s, leanParams, vals)
		d.vals = vals // reused, grown
		if err != nil {
			return goical.Prop{}, err
		}
		if !leanParams(name) {
			continue
		}
		pnames, pcount = append(pnames, name), append(pcount, len(vals)-n)
		key = binary.AppendUvarint(key, uint64(len(name)))
		key = append(key, name...)
		key = binary.AppendUvarint(key, uint64(len(vals)-n))
		for _, v := range vals[n:] {
			key = binary.AppendUvarint(key, uint64(len(v)))
			key = append(key, v...)
		}
		d.key, d.pnames, d.pcount = key, pnames, pcount
	}
	if len(s) == 0 || s[0] != ':' {
		return goical.Prop{}, errors.New("ical: malformed property: expected colon")
	}
	p.Value = s[1:]
	if len(pnames) == 0 {
		return p, nil
	}
	if m, ok := d.params[string(key)]; ok {
		p.Params = m
		return p, nil
	}
	m := make(goical.Params, len(pnames))
	k := 0
	for j, name := range pnames {
		m[name] = append(m[name], vals[k:k+pcount[j]]...)
		k += pcount[j]
	}
	clear(vals) // let the line go
	if d.params == nil {
		d.params = make(map[string]goical.Params)
	}
	d.params[string(key)] = m
	p.Params = m
	return p, nil
}

// decodeComponentBody decodes a component after its BEGIN line. top are
// its children as the scanner saw them (the calendar's), or nil; mode is
// what it keeps.
func (d *icsDecoder) decodeComponentBody(name string, top []scanComp, mode decodeMode) (*goical.Component, error) {
	base, textBase, spanBase := len(d.props), len(d.text), len(d.spans)
	var keepParam func(string) bool
	if mode == modeCal || mode == modeEvent {
		keepParam = leanParams
	}
	var end goical.Prop
	var children []*goical.Component
	for {
		if k := len(children); k < len(top) && top[k].ev.flags&evDeferred != 0 && d.skipEvent(&top[k].ev) {
			children = append(children, deferredVEVENT)
			if mode == modeCal {
				d.events = append(d.events, nil)
			}
			continue
		}
		l, err := d.nextLine()
		if err != nil {
			return nil, err
		}
		if mode != modeAll {
			switch mode.classify(l, d.checked) {
			case lineSkip:
				continue
			case lineKeep:
				if mode != modeDrop {
					d.text = append(d.text, l...)
					d.spans = append(d.spans, len(d.text))
				}
				continue
			}
		}
		var prop goical.Prop
		if mode != modeAll && bytes.HasPrefix(l, []byte("BEGIN:")) {
			// The usual BEGIN and END lines: no string for the line.
			prop = goical.Prop{Name: "BEGIN", Value: knownName(l[len("BEGIN:"):])}
		} else if mode != modeAll && bytes.HasPrefix(l, []byte("END:")) {
			prop = goical.Prop{Name: "END", Value: knownName(l[len("END:"):])}
		} else if prop, err = decodeContentLine(string(l), keepParam); err != nil {
			return nil, err
		}
		if prop.Name == "BEGIN" {
			cname := strings.ToUpper(prop.Value)
			d.event = nil
			child, err := d.decodeComponentBody(cname, nil, mode.child(cname))
			if err != nil {
				return nil, err
			}
			if mode.keepsChildren() {
				children = append(children, child)
			}
			if mode == modeCal {
				d.events = append(d.events, d.event)
			}
			d.event = nil
			continue
		}
		if prop.Name == "END" {
			end = prop
			break
		}
		if mode != modeAll {
			// A name that is not ASCII: kept in its place, with the rest.
			if mode != modeDrop {
				d.text = append(d.text, l...)
				d.spans = append(d.spans, len(d.text))
			}
			continue
		}
		d.props = append(d.props, prop)
	}
	if !strings.EqualFold(end.Value, name) {
		return nil, fmt.Errorf("ical: malformed component: expected END property for %q, got %q", name, end.Value)
	}
	if mode != modeAll && len(d.spans) > spanBase {
		// The kept lines, decoded from one string.
		text := string(d.text[textBase:])
		from := textBase
		for _, to := range d.spans[spanBase:] {
			prop, err := d.decodeLeanLine(text[from-textBase : to-textBase])
			if err != nil {
				return nil, err
			}
			d.props = append(d.props, prop)
			from = to
		}
	}
	d.text, d.spans = d.text[:textBase], d.spans[:spanBase]
	if mode == modeEvent {
		e := newEventProps(d.props[base:])
		clear(d.props[base:])
		d.props = d.props[:base]
		d.event = e
		return &goical.Component{Name: name, Children: children}, nil
	}
	props := groupProps(d.props[base:])
	clear(d.props[base:]) // let the strings go with the tree
	d.props = d.props[:base]
	return &goical.Component{Name: name, Props: props, Children: children}, nil
}

// groupProps is the Props of a component's properties, in file order:
// one slice for all of them, each name's a part of it.
func groupProps(list []goical.Prop) goical.Props {
	if len(list) == 0 {
		return make(goical.Props)
	}
	e := newEventProps(list)
	if e == nil {
		return groupPropsMap(list)
	}
	props := make(goical.Props, len(e.names))
	start := 0
	for _, n := range e.names {
		props[n.name] = e.props[start:n.end:n.end]
		start = n.end
	}
	return props
}

// newEventProps lays out list name by name, in file order within a name,
// or returns nil for a component of more than 255 property names.
func newEventProps(list []goical.Prop) *eventProps {
	// A component has a few dozen properties at most, of fewer names:
	// number the names, then lay the properties out name by name.
	var idBuf [32]uint8
	var nameBuf [16]string
	names, ids := nameBuf[:0], idBuf[:0]
	if len(list) > len(idBuf) {
		ids = make([]uint8, 0, len(list))
	}
	for i := range list {
		id := -1
		for k, n := range names {
			if n == list[i].Name {
				id = k
				break
			}
		}
		if id < 0 {
			if len(names) == 255 {
				return nil
			}
			id = len(names)
			names = append(names, list[i].Name)
		}
		ids = append(ids, uint8(id))
	}
	e := &eventProps{props: make([]goical.Prop, len(list))}
	e.names = e.buf[:0]
	if len(names) > len(e.buf) {
		e.names = make([]nameEnd, 0, len(names))
	}
	n := 0
	for k, name := range names {
		for i := range list {
			if int(ids[i]) == k {
				e.props[n] = list[i]
				n++
			}
		}
		e.names = append(e.names, nameEnd{name, n})
	}
	return e
}

// groupPropsMap is groupProps for a component of many property names.
func groupPropsMap(list []goical.Prop) goical.Props {
	props := make(goical.Props)
	for _, p := range list {
		props[p.Name] = append(props[p.Name], p)
	}
	return props
}

// Decode decodes the next calendar, as goical.Decoder.Decode.
func (d *icsDecoder) Decode() (*goical.Calendar, error) {
	d.props, d.text, d.spans = d.props[:0], d.text[:0], d.spans[:0]
	d.event, d.events = nil, nil
	prop, err := d.decodeContentLine()
	if err != nil {
		return nil, err
	}
	if prop.Name != "BEGIN" {
		return nil, fmt.Errorf("ical: malformed component: expected BEGIN property, got %q", prop.Name)
	}
	top := d.top
	d.top = nil
	if d.lean && len(top) > 0 {
		// One for each child: no more allocations for the deferred
		// VEVENTs of a long history than for a few.
		d.events = make([]*eventProps, 0, len(top))
	}
	mode := modeAll
	if d.lean {
		mode = modeCal
	}
	comp, err := d.decodeComponentBody(strings.ToUpper(prop.Value), top, mode)
	if err != nil {
		return nil, err
	}
	if comp.Name != goical.CompCalendar {
		return nil, fmt.Errorf("ical: invalid toplevel component name: expected %q, got %q", goical.CompCalendar, comp.Name)
	}
	return &goical.Calendar{Component: comp}, nil
}
