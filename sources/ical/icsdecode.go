package ical

import (
	"bytes"
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
// memory. go-ical's reads through bufio a rune at a time, allocates a map
// for the parameters of every line and builds parameter values one byte at
// a time; at 10,000 feeds of 90 KB its decode was most of the first pass's
// CPU (BENCHMARKS.md).
//
// Each unfolded line is one string of its own, so a value kept from it (a
// SUMMARY in an occurrence) holds on to its line, never to the whole feed.
// A property without parameters has nil Params (reading a nil map is fine;
// nothing here writes to them).
type icsDecoder struct {
	data    []byte
	pos     int
	scratch []byte
	// top are the scanned components of the calendar Decode reads next;
	// those deferred (skip.go) are not decoded: deferredVEVENT stands in
	// for each. nil decodes everything, as go-ical does.
	top []scanComp
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
// line that starts with a space or a tab continues the one before it.
func (d *icsDecoder) readContinuedLine() (string, error) {
	first, err := d.readLine()
	if err != nil {
		return "", err
	}
	if d.pos >= len(d.data) || (d.data[d.pos] != ' ' && d.data[d.pos] != '\t') {
		return string(first), nil
	}
	buf := append(d.scratch[:0], first...)
	for d.pos < len(d.data) && (d.data[d.pos] == ' ' || d.data[d.pos] == '\t') {
		d.pos++
		l, err := d.readLine()
		if err != nil {
			return "", err
		}
		buf = append(buf, l...)
	}
	d.scratch = buf
	return string(buf), nil
}

func (d *icsDecoder) decodeContentLine() (*goical.Prop, error) {
	for {
		l, err := d.readContinuedLine()
		if err != nil {
			return nil, err
		}
		if len(l) == 0 {
			continue
		}
		return decodeContentLine(l)
	}
}

func decodeContentLine(s string) (*goical.Prop, error) {
	i := strings.IndexAny(s, ";:")
	if i < 0 {
		return nil, errors.New("ical: malformed content line: missing colon")
	} else if i == 0 {
		return nil, errors.New("ical: malformed content line: empty property name")
	}
	p := &goical.Prop{Name: strings.ToUpper(s[:i])}
	s = s[i:]
	for len(s) > 0 && s[0] == ';' {
		s = s[1:]
		var (
			name   string
			values []string
			err    error
		)
		name, values, s, err = decodeParam(s)
		if err != nil {
			return nil, err
		}
		if p.Params == nil {
			p.Params = make(goical.Params, 1)
		}
		p.Params[name] = append(p.Params[name], values...)
	}
	if len(s) == 0 || s[0] != ':' {
		return nil, errors.New("ical: malformed property: expected colon")
	}
	p.Value = s[1:]
	return p, nil
}

// decodeParam decodes NAME=VALUE[,VALUE]... at the start of s and returns
// what follows.
func decodeParam(s string) (name string, values []string, rest string, err error) {
	i := strings.IndexByte(s, '=')
	if i < 0 {
		return "", nil, "", errors.New("ical: malformed param: missing equal sign")
	} else if i == 0 {
		return "", nil, "", errors.New("ical: malformed param: empty param name")
	}
	name = strings.ToUpper(s[:i])
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
			end := strings.IndexAny(s, "\";,:")
			if end < 0 {
				end = len(s)
			} else if s[end] == '"' {
				return "", nil, "", errors.New("ical: malformed param value: illegal double-quote")
			}
			v, s = s[:end], s[end:]
		}
		values = append(values, v)
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

// decodeComponentBody decodes a component after its BEGIN line. top are
// its children as the scanner saw them (the calendar's), or nil.
func (d *icsDecoder) decodeComponentBody(name string, top []scanComp) (*goical.Component, error) {
	var prop *goical.Prop
	props := make(goical.Props)
	var children []*goical.Component
	for {
		if k := len(children); k < len(top) && top[k].ev.flags&evDeferred != 0 && d.skipEvent(&top[k].ev) {
			children = append(children, deferredVEVENT)
			continue
		}
		var err error
		prop, err = d.decodeContentLine()
		if err != nil {
			return nil, err
		}
		if prop.Name == "BEGIN" {
			child, err := d.decodeComponentBody(strings.ToUpper(prop.Value), nil)
			if err != nil {
				return nil, err
			}
			children = append(children, child)
			continue
		}
		if prop.Name == "END" {
			break
		}
		props[prop.Name] = append(props[prop.Name], *prop)
	}
	if !strings.EqualFold(prop.Value, name) {
		return nil, fmt.Errorf("ical: malformed component: expected END property for %q, got %q", name, prop.Value)
	}
	return &goical.Component{Name: name, Props: props, Children: children}, nil
}

// Decode decodes the next calendar, as goical.Decoder.Decode.
func (d *icsDecoder) Decode() (*goical.Calendar, error) {
	prop, err := d.decodeContentLine()
	if err != nil {
		return nil, err
	}
	if prop.Name != "BEGIN" {
		return nil, fmt.Errorf("ical: malformed component: expected BEGIN property, got %q", prop.Name)
	}
	top := d.top
	d.top = nil
	comp, err := d.decodeComponentBody(strings.ToUpper(prop.Value), top)
	if err != nil {
		return nil, err
	}
	if comp.Name != goical.CompCalendar {
		return nil, fmt.Errorf("ical: invalid toplevel component name: expected %q, got %q", goical.CompCalendar, comp.Name)
	}
	return &goical.Calendar{Component: comp}, nil
}
