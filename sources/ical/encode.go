package ical

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The stored form of a feed's occurrences (AppendOccurrences,
// DecodeOccurrences): what a restart reconciles from before any copy is
// parsed again. It is compact and quick to read, not a format to exchange:
//
//	version byte (occurrencesVersion)
//	strings:   count, then each as length + bytes
//	attendees: lists count, then each list as count + (email, partstat)
//	           string indexes
//	keys:      lists count, then each list as count + string indexes
//	occurrences: count, then each as
//	           uid, summary, location, description, status, organizer
//	           (string indexes), flags, start, end, [recurrence id],
//	           attendee list index + 1 (0: none), keys list index + 1
//
// Every integer is a uvarint, times are Unix seconds and nanoseconds. The
// strings and the lists are shared, as compact keeps them in memory: an
// event's occurrences name one attendee list, and an address a thousand
// occurrences name is stored once.
const occurrencesVersion = 1

const (
	flagAllDay = 1 << iota
	flagTransparent
	flagRecurrenceID
)

// AppendOccurrences appends occs in their stored form to b.
func AppendOccurrences(b []byte, occs []Occurrence) []byte {
	strIdx := make(map[string]uint64)
	var strs []string
	str := func(s string) uint64 {
		if i, ok := strIdx[s]; ok {
			return i
		}
		i := uint64(len(strs))
		strIdx[s] = i
		strs = append(strs, s)
		return i
	}
	str("") // index 0: the empty string
	type attKey struct {
		first *Attendee
		n     int
	}
	attIdx := make(map[attKey]uint64)
	var atts [][]Attendee
	keyIdx := make(map[*string]uint64)
	var keys [][]string
	type rec struct {
		s          [6]uint64
		flags      uint64
		start, end time.Time
		rid        time.Time
		att, key   uint64
	}
	recs := make([]rec, len(occs))
	for i := range occs {
		o := &occs[i]
		r := rec{
			s:     [6]uint64{str(o.UID), str(o.Summary), str(o.Location), str(o.Description), str(o.Status), str(o.Organizer)},
			start: o.Start, end: o.End, rid: o.RecurrenceID,
		}
		if o.AllDay {
			r.flags |= flagAllDay
		}
		if o.Transparent {
			r.flags |= flagTransparent
		}
		if !o.RecurrenceID.IsZero() {
			r.flags |= flagRecurrenceID
		}
		if len(o.Attendees) > 0 {
			k := attKey{&o.Attendees[0], len(o.Attendees)}
			j, ok := attIdx[k]
			if !ok {
				j = uint64(len(atts))
				attIdx[k] = j
				atts = append(atts, o.Attendees)
				for _, a := range o.Attendees {
					str(a.Email)
					str(a.PartStat)
				}
			}
			r.att = j + 1
		}
		if len(o.MeetingKeys) > 0 {
			k := &o.MeetingKeys[0]
			j, ok := keyIdx[k]
			if !ok {
				j = uint64(len(keys))
				keyIdx[k] = j
				keys = append(keys, o.MeetingKeys)
				for _, s := range o.MeetingKeys {
					str(s)
				}
			}
			r.key = j + 1
		}
		recs[i] = r
	}
	u := binary.AppendUvarint
	b = append(b, occurrencesVersion)
	b = u(b, uint64(len(strs)))
	for _, s := range strs {
		b = u(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = u(b, uint64(len(atts)))
	for _, l := range atts {
		b = u(b, uint64(len(l)))
		for _, a := range l {
			b = u(b, strIdx[a.Email])
			b = u(b, strIdx[a.PartStat])
		}
	}
	b = u(b, uint64(len(keys)))
	for _, l := range keys {
		b = u(b, uint64(len(l)))
		for _, s := range l {
			b = u(b, strIdx[s])
		}
	}
	b = u(b, uint64(len(recs)))
	for _, r := range recs {
		for _, s := range r.s {
			b = u(b, s)
		}
		b = u(b, r.flags)
		b = appendTime(b, r.start)
		b = appendTime(b, r.end)
		if r.flags&flagRecurrenceID != 0 {
			b = appendTime(b, r.rid)
		}
		b = u(b, r.att)
		b = u(b, r.key)
	}
	return b
}

// appendTime appends t's Unix seconds (zig-zag: calendars reach before
// 1970) and nanoseconds.
func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// errOccurrences is wrapped by every error of DecodeOccurrences.
var errOccurrences = errors.New("stored occurrences")

// DecodeOccurrences reads occurrences stored by AppendOccurrences. Times
// come back in UTC, strings and lists shared as they were. Bytes it
// cannot read — truncated, an index out of range, another version — are
// an error, never a panic: the caller parses the copy instead.
func DecodeOccurrences(b []byte) ([]Occurrence, error) {
	d := occDecoder{b: b}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", errOccurrences)
	}
	if b[0] != occurrencesVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", errOccurrences, b[0], occurrencesVersion)
	}
	d.b = b[1:]
	n := d.count(1)
	strs := make([]string, n)
	for i := range strs {
		l := d.count(1)
		if d.err != nil {
			break
		}
		strs[i] = string(d.b[:l])
		d.b = d.b[l:]
	}
	str := func() string {
		i := d.uvarint()
		if i >= uint64(len(strs)) {
			d.fail("string %d of %d", i, len(strs))
			return ""
		}
		return strs[i]
	}
	atts := make([][]Attendee, d.count(1))
	for i := range atts {
		l := make([]Attendee, d.count(2))
		for j := range l {
			l[j] = Attendee{Email: str(), PartStat: str()}
		}
		atts[i] = l
	}
	keys := make([][]string, d.count(1))
	for i := range keys {
		l := make([]string, d.count(1))
		for j := range l {
			l[j] = str()
		}
		keys[i] = l
	}
	occs := make([]Occurrence, d.count(10))
	for i := range occs {
		o := &occs[i]
		o.UID, o.Summary, o.Location = str(), str(), str()
		o.Description, o.Status, o.Organizer = str(), str(), str()
		flags := d.uvarint()
		o.AllDay = flags&flagAllDay != 0
		o.Transparent = flags&flagTransparent != 0
		o.Start, o.End = d.time(), d.time()
		if flags&flagRecurrenceID != 0 {
			o.RecurrenceID = d.time()
		}
		if j := d.uvarint(); j > 0 {
			if j > uint64(len(atts)) {
				d.fail("attendee list %d of %d", j, len(atts))
			} else if l := atts[j-1]; len(l) > 0 {
				// An empty list (never written, but readable) is none, as
				// the encoder writes none.
				o.Attendees = l
			}
		}
		if j := d.uvarint(); j > 0 {
			if j > uint64(len(keys)) {
				d.fail("key list %d of %d", j, len(keys))
			} else if l := keys[j-1]; len(l) > 0 {
				o.MeetingKeys = l
			}
		}
		if d.err != nil {
			return nil, d.err
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last occurrence", errOccurrences, len(d.b))
	}
	if len(occs) == 0 {
		return nil, nil
	}
	return occs, nil
}

type occDecoder struct {
	b   []byte
	err error
}

func (d *occDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{errOccurrences}, args...)...)
	}
	d.b = nil
}

func (d *occDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("truncated")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length, refusing one that the bytes left cannot hold at
// min bytes an element (so that a corrupt count allocates nothing big).
func (d *occDecoder) count(min int) int {
	v := d.uvarint()
	if v > uint64(len(d.b)/min) {
		d.fail("count %d with %d bytes left", v, len(d.b))
		return 0
	}
	return int(v)
}

func (d *occDecoder) time() time.Time {
	s, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("truncated")
		return time.Time{}
	}
	d.b = d.b[n:]
	ns := d.uvarint()
	if ns >= 1e9 {
		d.fail("nanoseconds %d", ns)
		return time.Time{}
	}
	return time.Unix(s, int64(ns)).UTC()
}
