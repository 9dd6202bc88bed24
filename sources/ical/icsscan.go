package ical

import (
	"bytes"
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// The scanner is a line-level pass over a feed before go-ical decodes it. It
// mirrors go-ical's content-line grammar exactly, so that every line go-ical
// would refuse (or panic on) is found here first, with its line number, and
// either repaired the way real clients repair it or dropped with a warning.
// It also checks the BEGIN/END structure (a feed without END:VCALENDAR is
// truncated), and records the line of each component and of the properties
// that later errors and warnings name.
//
// A clean feed is not copied: go-ical reads the caller's bytes.

// maxParamSection bounds the part of a content line before the value.
// go-ical builds parameter values one byte at a time (quadratic); real
// parameters are short.
const maxParamSection = 4096

type scanResult struct {
	data     []byte
	cals     []scanCal
	warnings []string
	// checked: every content line of data passes checkContentLine, as the
	// scanner repaired or dropped the others (the decoder need not check
	// again the lines it leaves out).
	checked bool
}

type scanCal struct {
	line  int
	comps []scanComp // components directly inside VCALENDAR, in order
}

type scanComp struct {
	name  string
	line  int
	props []propLine // VEVENT only: the lines of the properties we read
	// VEVENT only: where it is and what its time lines say, so that one
	// that cannot reach the window is skipped without decoding it
	// (skip.go).
	ev eventLines
	// propStart is the index of the first of props in scanner.props while
	// the scan is under way.
	propStart int
}

type propLine struct {
	name string
	line int
}

// lineOf returns the line of the n-th (0-based) property name in c, or the
// component's line.
func (c *scanComp) lineOf(name string, n int) int {
	if c == nil {
		return 0
	}
	for _, p := range c.props {
		if p.name == name {
			if n == 0 {
				return p.line
			}
			n--
		}
	}
	return c.line
}

func (c *scanComp) takeProps(all []propLine, end int) {
	if end > c.propStart {
		c.props = all[c.propStart:end:end]
	}
}

type frame struct {
	name      string
	line      int
	synthetic bool
}

type scanner struct {
	data    []byte
	out     []byte // nil until the first repair
	rewrite bool
	stack   []frame
	cals    []scanCal
	seenCal bool
	// props holds the propLines of every VEVENT, one after the other;
	// finish hands each scanComp its part (one allocation for the feed,
	// not one per VEVENT).
	props []propLine
	// tzids interns the TZID parameters of the time lines.
	tzids map[string]string
	// prevText: the last content line was a TEXT property, so a stray text
	// line is an unfolded continuation of it.
	prevText bool
	notes    map[string]*note
}

type note struct {
	first, count int
	seq          int // notes of one line are listed in the order found
	msg          string
}

var bom = []byte("\xef\xbb\xbf")

func scanFeed(in []byte) (*scanResult, error) {
	data := in
	if bytes.HasPrefix(data, bom) {
		data = data[len(bom):]
	}
	badUTF8 := !utf8.Valid(data)
	if badUTF8 {
		data = bytes.ToValidUTF8(data, []byte("\uFFFD"))
	}
	// Lone CR line endings (old Mac): go-ical splits on LF only, so they
	// become LFs. The lines are read as if there were none, and read again
	// when the CRs are more than the lines they end.
	crs := bytes.Count(data, []byte{'\r'})
	res, crlf, err := scanLines(data, badUTF8)
	if crs > 0 && (err == nil && crlf != crs || err != nil && hasLoneCR(data)) {
		data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
		data = bytes.ReplaceAll(data, []byte("\r"), []byte("\n"))
		res, _, err = scanLines(data, badUTF8)
	}
	return res, err
}

// scanLines is scanFeed after the repairs of the whole feed. It also
// returns the number of lines that end in CR LF.
func scanLines(data []byte, badUTF8 bool) (*scanResult, int, error) {
	s := &scanner{data: data}
	if badUTF8 {
		s.note(1, "utf8", "invalid UTF-8 replaced")
	}
	var scratch []byte
	pos, lineNo, crlf := 0, 0, 0
	for pos < len(data) {
		start, startLine := pos, lineNo+1
		end := bytes.IndexByte(data[pos:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += pos
			if end > pos && data[end-1] == '\r' {
				crlf++
			}
		}
		phys := trimCR(data[pos:end])
		pos = min(end+1, len(data))
		lineNo++
		logical := phys
		folded := false
		for pos < len(data) && (data[pos] == ' ' || data[pos] == '\t') {
			e := bytes.IndexByte(data[pos:], '\n')
			if e < 0 {
				e = len(data)
			} else {
				e += pos
				if data[e-1] == '\r' {
					crlf++
				}
			}
			if !folded {
				scratch = append(scratch[:0], phys...)
				folded = true
			}
			scratch = append(scratch, trimCR(data[pos+1:e])...)
			pos = min(e+1, len(data))
			lineNo++
		}
		if folded {
			logical = scratch
		}
		if err := s.line(logical, data[start:pos], start, startLine); err != nil {
			return nil, crlf, err
		}
	}
	if err := s.finish(lineNo); err != nil {
		return nil, crlf, err
	}
	res := &scanResult{data: data, cals: s.cals, warnings: s.noteList(), checked: true}
	if s.rewrite {
		res.data = s.out
	}
	return res, crlf, nil
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// startRewrite switches to copying: everything before offset is kept as is.
func (s *scanner) startRewrite(offset int) {
	if s.rewrite {
		return
	}
	s.rewrite = true
	s.out = make([]byte, 0, len(s.data)+128)
	s.out = append(s.out, s.data[:offset]...)
}

func (s *scanner) emit(raw []byte) {
	if s.rewrite {
		s.out = append(s.out, raw...)
		if n := len(raw); n == 0 || raw[n-1] != '\n' {
			s.out = append(s.out, '\n')
		}
	}
}

func (s *scanner) note(line int, kind, msg string) {
	if s.notes == nil {
		s.notes = make(map[string]*note)
	}
	if n := s.notes[kind]; n != nil {
		n.count++
		return
	}
	s.notes[kind] = &note{first: line, count: 1, seq: len(s.notes), msg: msg}
}

func (s *scanner) noteList() []string {
	if len(s.notes) == 0 {
		return nil
	}
	list := make([]*note, 0, len(s.notes))
	for _, n := range s.notes {
		list = append(list, n)
	}
	slices.SortFunc(list, func(a, b *note) int { return cmp.Or(cmp.Compare(a.first, b.first), cmp.Compare(a.seq, b.seq)) })
	out := make([]string, len(list))
	for i, n := range list {
		out[i] = fmt.Sprintf("line %d: %s", n.first, n.msg)
		if n.count > 1 {
			out[i] += fmt.Sprintf(" (%d lines)", n.count)
		}
	}
	return out
}

// line handles one logical (unfolded) line. raw is its original bytes with
// folds and line ending, at byte offset off.
func (s *scanner) line(logical, raw []byte, off, lineNo int) error {
	if len(logical) == 0 {
		s.emit(raw) // go-ical skips empty lines
		return nil
	}
	nameEnd, valStart, problem := checkContentLine(logical)
	if problem == "" && valStart > maxParamSection {
		problem = "parameters too long"
	}
	if problem == "" && !validName(logical[:nameEnd]) {
		// "Meeting ID: 834 1234 5678": go-ical would take it for a property
		// named "MEETING ID"; it is text that lost its fold.
		return s.stray(logical, raw, off, lineNo)
	}
	if problem != "" {
		if nameEnd <= 0 || !validName(logical[:nameEnd]) {
			return s.stray(logical, raw, off, lineNo)
		}
		fixed := repairParams(logical)
		if fixed == nil {
			if len(s.stack) == 0 {
				return notICS(lineNo, logical)
			}
			s.startRewrite(off)
			s.note(lineNo, "drop:"+problem, "malformed content line dropped: "+problem)
			return nil
		}
		s.startRewrite(off)
		s.note(lineNo, "quote", "misplaced quote in a parameter repaired")
		logical = fixed
		raw = nil
		nameEnd, valStart, _ = checkContentLine(logical)
	}
	var nb [64]byte // X- names run to 30 and more
	name := upperName(nb[:0], logical[:nameEnd])
	value := logical[valStart:]
	switch string(name) {
	case "BEGIN":
		return s.begin(logical, raw, value, off, lineNo)
	case "END":
		return s.end(logical, raw, value, off, lineNo)
	}
	if len(s.stack) == 0 {
		if !s.seenCal {
			return notICS(lineNo, logical)
		}
		s.startRewrite(off)
		s.note(lineNo, "outside", "property outside VCALENDAR ignored")
		return nil
	}
	s.prevText = isTextProp(name)
	if len(s.stack) == 2 && s.stack[1].name == "VEVENT" {
		if p := internProp(name); p != "" {
			s.props = appendDoubling(s.props, propLine{p, lineNo})
		}
		cal := &s.cals[len(s.cals)-1]
		s.eventLine(&cal.comps[len(cal.comps)-1].ev, name, logical, nameEnd, valStart)
	}
	s.emitLine(logical, raw)
	return nil
}

func (s *scanner) emitLine(logical, raw []byte) {
	if raw != nil {
		s.emit(raw)
		return
	}
	s.out = append(s.out, logical...)
	s.out = append(s.out, '\n')
}

// stray handles a line that is not a content line: an unfolded continuation
// of a DESCRIPTION (Outlook), or junk.
func (s *scanner) stray(logical, raw []byte, off, lineNo int) error {
	if len(s.stack) == 0 {
		if !s.seenCal {
			return notICS(lineNo, logical)
		}
		s.startRewrite(off)
		s.note(lineNo, "outside", "text outside VCALENDAR ignored")
		return nil
	}
	s.startRewrite(off)
	// Blank lines between the text and its continuation go.
	for n := len(s.out); n >= 2 && s.out[n-1] == '\n' && (s.out[n-2] == '\n' || s.out[n-2] == '\r'); n = len(s.out) {
		s.out = bytes.TrimRight(s.out, "\r\n")
		s.out = append(s.out, '\n')
		if len(s.out) == n {
			break
		}
	}
	if s.prevText && len(s.out) > 0 {
		// Fold it into the previous property as a new line of text.
		s.out = append(s.out, ' ', '\\', 'n')
		s.out = append(s.out, logical...)
		s.out = append(s.out, '\n')
		s.note(lineNo, "join", "line without a property name joined to the text before it")
		return nil
	}
	s.note(lineNo, "stray", "line without a property name ignored")
	return nil
}

func notICS(lineNo int, logical []byte) error {
	show := string(logical)
	if len(show) > 40 {
		show = show[:40] + "..."
	}
	return fmt.Errorf("line %d: not an iCalendar feed: expected BEGIN:VCALENDAR, got %q", lineNo, show)
}

func (s *scanner) begin(logical, raw, value []byte, off, lineNo int) error {
	comp := compName(value)
	if comp == "" {
		return fmt.Errorf("line %d: BEGIN without a component name", lineNo)
	}
	if !bytes.Equal(bytes.TrimSpace(value), value) {
		s.startRewrite(off)
		raw = nil
		logical = []byte("BEGIN:" + comp)
	}
	switch {
	case len(s.stack) == 0:
		if comp != "VCALENDAR" {
			// A bare component without the VCALENDAR wrapper.
			s.startRewrite(off)
			s.out = append(s.out, "BEGIN:VCALENDAR\n"...)
			s.stack = append(s.stack, frame{name: "VCALENDAR", line: lineNo, synthetic: true})
			s.cals = append(s.cals, scanCal{line: lineNo})
			s.note(lineNo, "wrapper", "component outside VCALENDAR wrapped in one")
		} else {
			s.cals = append(s.cals, scanCal{line: lineNo})
		}
		s.seenCal = true
	case len(s.stack) == 1 && comp == "VCALENDAR" && s.stack[0].synthetic:
		s.out = append(s.out, "END:VCALENDAR\n"...)
		s.stack = s.stack[:0]
		s.cals = append(s.cals, scanCal{line: lineNo})
	}
	if len(s.stack) == 1 {
		cal := &s.cals[len(s.cals)-1]
		cal.comps = appendDoubling(cal.comps, scanComp{name: comp, line: lineNo, propStart: len(s.props)})
		if comp == "VEVENT" {
			cal.comps[len(cal.comps)-1].ev.begin = s.outPos(off)
		}
	}
	if len(s.stack) >= 64 {
		return fmt.Errorf("line %d: components nested too deeply", lineNo)
	}
	s.stack = append(s.stack, frame{name: comp, line: lineNo})
	s.prevText = false
	s.emitLine(logical, raw)
	return nil
}

// outPos is the offset in the scanned feed at which the line at offset off
// of the input is written.
func (s *scanner) outPos(off int) int {
	if s.rewrite {
		return len(s.out)
	}
	return off
}

// compName returns the upper-case name of the component a BEGIN or END
// line names, without allocating for the usual ones.
func compName(value []byte) string {
	v := bytes.TrimSpace(value)
	var buf [16]byte
	if len(v) > len(buf) || !isASCII(v) {
		return strings.ToUpper(string(v))
	}
	return knownName(upperName(buf[:0], v))
}

// knownName is string(v), without allocating for the usual component
// names.
func knownName(v []byte) string {
	switch string(v) {
	case "VCALENDAR":
		return "VCALENDAR"
	case "VEVENT":
		return "VEVENT"
	case "VALARM":
		return "VALARM"
	case "VTIMEZONE":
		return "VTIMEZONE"
	case "STANDARD":
		return "STANDARD"
	case "DAYLIGHT":
		return "DAYLIGHT"
	case "VTODO":
		return "VTODO"
	}
	return string(v)
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// appendDoubling is append that doubles the capacity when it grows, where
// append grows large slices by a quarter: the scanner's slices grow to one
// element a component, and this allocates half as much on the way.
func appendDoubling[T any](s []T, v T) []T {
	if len(s) == cap(s) {
		s = slices.Grow(s, max(len(s), 8))
	}
	return append(s, v)
}

func (s *scanner) end(logical, raw, value []byte, off, lineNo int) error {
	comp := compName(value)
	if !bytes.Equal(bytes.TrimSpace(value), value) {
		s.startRewrite(off)
		raw = nil
		logical = []byte("END:" + comp)
	}
	s.prevText = false
	depth := -1
	for i := len(s.stack) - 1; i >= 0; i-- {
		if s.stack[i].name == comp {
			depth = i
			break
		}
	}
	if depth < 0 {
		s.startRewrite(off)
		s.note(lineNo, "end:"+comp, fmt.Sprintf("END:%s without BEGIN ignored", comp))
		return nil
	}
	if depth != len(s.stack)-1 {
		// Close what was left open (e.g. a VALARM missing its END).
		top := s.stack[len(s.stack)-1]
		s.startRewrite(off)
		for i := len(s.stack) - 1; i > depth; i-- {
			s.out = append(s.out, "END:"+s.stack[i].name+"\n"...)
		}
		s.note(lineNo, "unclosed", fmt.Sprintf("END:%s closes BEGIN:%s of line %d", comp, top.name, top.line))
	}
	if depth == 1 && comp == "VEVENT" {
		// The start of the END line, not its end: stray() may later trim
		// the line ending after it.
		cal := &s.cals[len(s.cals)-1]
		cal.comps[len(cal.comps)-1].ev.end = s.outPos(off)
	}
	s.stack = s.stack[:depth]
	s.emitLine(logical, raw)
	return nil
}

func (s *scanner) finish(lastLine int) error {
	// Each component's properties run up to the next component's.
	var prev *scanComp
	for i := range s.cals {
		for j := range s.cals[i].comps {
			c := &s.cals[i].comps[j]
			if prev != nil {
				prev.takeProps(s.props, c.propStart)
			}
			prev = c
		}
	}
	if prev != nil {
		prev.takeProps(s.props, len(s.props))
	}
	if !s.seenCal {
		return fmt.Errorf("line %d: not an iCalendar feed: no BEGIN:VCALENDAR", max(lastLine, 1))
	}
	if len(s.stack) == 1 && s.stack[0].synthetic {
		s.startRewrite(len(s.data))
		if n := len(s.out); n > 0 && s.out[n-1] != '\n' {
			s.out = append(s.out, '\n')
		}
		s.out = append(s.out, "END:VCALENDAR\n"...)
		s.stack = s.stack[:0]
	}
	if len(s.stack) > 0 {
		top := s.stack[len(s.stack)-1]
		return fmt.Errorf("line %d: truncated feed: END:%s missing for BEGIN:%s of line %d (no END:VCALENDAR)",
			lastLine, top.name, top.name, top.line)
	}
	return nil
}

// checkContentLine mirrors go-ical's lineDecoder.decodeContentLine: it
// returns the end of the name and the start of the value, or the problem
// go-ical would report (or panic on).
func checkContentLine(s []byte) (nameEnd, valStart int, problem string) {
	i := indexNameEnd(s)
	if i < 0 {
		return -1, 0, "missing colon"
	}
	if i == 0 {
		return 0, 0, "empty property name"
	}
	p := i
	for p < len(s) && s[p] == ';' {
		p++
		eq := bytes.IndexByte(s[p:], '=')
		if eq < 0 {
			return i, 0, "parameter without '='"
		}
		if eq == 0 {
			return i, 0, "empty parameter name"
		}
		p += eq + 1
		for {
			if p < len(s) && s[p] == '"' {
				q := bytes.IndexByte(s[p+1:], '"')
				if q < 0 {
					return i, 0, "unterminated quoted parameter"
				}
				p += q + 2
			} else {
				for p < len(s) {
					c := s[p]
					if c == '"' {
						return i, 0, "double quote inside a parameter"
					}
					if c == ';' || c == ',' || c == ':' {
						break
					}
					p++
				}
			}
			if p >= len(s) {
				return i, 0, "missing colon"
			}
			if s[p] == ',' {
				p++
				continue
			}
			if s[p] == ';' || s[p] == ':' {
				break
			}
			return i, 0, "text after a quoted parameter"
		}
	}
	if p >= len(s) || s[p] != ':' {
		return i, 0, "missing colon"
	}
	return i, p + 1, ""
}

// indexNameEnd is strings.IndexAny(s, ";:"), without building a set of
// the two for each line.
func indexNameEnd[T string | []byte](s T) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == ';' || c == ':' {
			return i
		}
	}
	return -1
}

// indexParamEnd is strings.IndexAny(s, "\";,:"): where an unquoted
// parameter value ends.
func indexParamEnd[T string | []byte](s T) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"', ';', ',', ':':
			return i
		}
	}
	return -1
}

// hasLoneCR reports whether data has a CR that is not followed by LF.
func hasLoneCR(data []byte) bool {
	for i := 0; ; {
		j := bytes.IndexByte(data[i:], '\r')
		if j < 0 {
			return false
		}
		i += j + 1
		if i == len(data) || data[i] != '\n' {
			return true
		}
	}
}

func validName(b []byte) bool {
	for _, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return len(b) > 0
}

var (
	// DTSTART;TZID="W. Europe Standard Time:20200609T090000" (value inside the quotes)
	reQuoteAroundValue = regexp.MustCompile(`^([A-Za-z0-9_-]+;[^"]*=")([^"]*):([^":]*)"\s*$`)
	// a parameter quote that is never closed before the value
	reUnclosedQuote = regexp.MustCompile(`^([A-Za-z0-9_-]+;[^"]*=")([^":]*):([^"]*)$`)
)

// repairParams fixes the quoting mistakes real clients make in parameters,
// or returns nil.
func repairParams(line []byte) []byte {
	var fixed []byte
	if m := reQuoteAroundValue.FindSubmatch(line); m != nil {
		fixed = concat(m[1], m[2], []byte(`":`), m[3])
	} else if m := reUnclosedQuote.FindSubmatch(line); m != nil {
		fixed = concat(m[1], m[2], []byte(`":`), m[3])
	} else if i := bytes.IndexByte(line, ':'); i > 0 {
		// Quotes inside unquoted parameter values (CN=John "JJ" Doe): drop
		// the quotes before the first colon.
		fixed = append(bytes.ReplaceAll(line[:i:i], []byte(`"`), nil), line[i:]...)
	}
	if fixed == nil {
		return nil
	}
	if _, v, p := checkContentLine(fixed); p != "" || v > maxParamSection {
		return nil
	}
	return fixed
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func upperName(dst, name []byte) []byte {
	if len(name) > cap(dst) {
		return bytes.ToUpper(name)
	}
	for _, c := range name {
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

func isTextProp(name []byte) bool {
	switch string(name) {
	case "DESCRIPTION", "COMMENT", "SUMMARY", "LOCATION", "X-ALT-DESC":
		return true
	}
	return false
}

// internProp returns the canonical name of the VEVENT properties whose lines
// we remember, or "".
func internProp(name []byte) string {
	switch string(name) {
	case "DTSTART":
		return "DTSTART"
	case "DTEND":
		return "DTEND"
	case "DURATION":
		return "DURATION"
	case "RRULE":
		return "RRULE"
	case "RDATE":
		return "RDATE"
	case "EXDATE":
		return "EXDATE"
	case "RECURRENCE-ID":
		return "RECURRENCE-ID"
	}
	return ""
}
