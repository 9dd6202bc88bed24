package ical

import (
	"errors"
	"strings"
	"time"
)

// This file parses iCalendar property values (RFC 5545 section 3.3) without
// allocating: DATE, DATE-TIME, DURATION, PERIOD, TEXT and CAL-ADDRESS.

// civil is a wall-clock date-time without a zone. It is kept as a time.Time
// in UTC so that calendar arithmetic (AddDate, Weekday) is cheap and free of
// DST effects; the zone is applied only when an instant is needed.
type civil = time.Time

// dtKind says how a DATE or DATE-TIME value is anchored.
type dtKind uint8

const (
	kindFloating dtKind = iota // DATE-TIME without TZID or Z
	kindUTC                    // DATE-TIME ending in Z
	kindZoned                  // DATE-TIME with a TZID
	kindDate                   // DATE
)

// rawDT is a parsed DATE or DATE-TIME value before zone resolution.
type rawDT struct {
	wall civil
	kind dtKind
}

var errBadDate = errors.New("invalid date or date-time")

// parseDT parses a DATE (YYYYMMDD) or DATE-TIME (YYYYMMDDTHHMMSS[Z]) value.
// It repairs what clients emit in the wild: a date without VALUE=DATE, a
// VALUE=DATE with a time part (the date is kept), a date with a stray Z, a
// time without seconds, and a stray T after the time.
// wantDate reports that the property says VALUE=DATE.
func parseDT(v string, wantDate bool) (rawDT, error) {
	v = strings.TrimSpace(v)
	if len(v) < 8 {
		return rawDT{}, errBadDate
	}
	y, ok1 := atoiN(v[0:4])
	mo, ok2 := atoiN(v[4:6])
	d, ok3 := atoiN(v[6:8])
	if !ok1 || !ok2 || !ok3 || mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, time.Month(mo)) {
		return rawDT{}, errBadDate
	}
	// A DATE with a stray Z (Google's contacts birthdays write
	// RDATE:20131210Z) is still that date: RFC 5545 3.3.4 has no UTC form
	// of a DATE, so the Z says nothing.
	if len(v) == 9 && (v[8] == 'Z' || v[8] == 'z') {
		v = v[:8]
	}
	if len(v) == 8 || wantDate {
		if len(v) != 8 && (v[8] != 'T' && v[8] != 't') {
			return rawDT{}, errBadDate
		}
		return rawDT{wall: time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC), kind: kindDate}, nil
	}
	if v[8] != 'T' && v[8] != 't' {
		return rawDT{}, errBadDate
	}
	rest := v[9:]
	// A stray T after a complete time (DTSTART:20131009T170000T, written by
	// an Android calendar exporter) starts no further part: the time before
	// it is the value.
	if n := len(rest); (n == 7 || n == 5) && (rest[n-1] == 'T' || rest[n-1] == 't') {
		rest = rest[:n-1]
	}
	kind := kindFloating
	if n := len(rest); n > 0 && (rest[n-1] == 'Z' || rest[n-1] == 'z') {
		kind = kindUTC
		rest = rest[:n-1]
	}
	var h, mi, s int
	var ok bool
	switch len(rest) {
	case 6:
		var a, b, c bool
		h, a = atoiN(rest[0:2])
		mi, b = atoiN(rest[2:4])
		s, c = atoiN(rest[4:6])
		ok = a && b && c
	case 4: // DTEND:20171101T2300 (no seconds)
		var a, b bool
		h, a = atoiN(rest[0:2])
		mi, b = atoiN(rest[2:4])
		ok = a && b
	}
	// 60 is a leap second (RFC 5545 3.3.12); treat it as 59.
	if !ok || h > 23 || mi > 59 || s > 60 {
		return rawDT{}, errBadDate
	}
	if s == 60 {
		s = 59
	}
	return rawDT{wall: time.Date(y, time.Month(mo), d, h, mi, s, 0, time.UTC), kind: kind}, nil
}

func atoiN(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, len(s) > 0
}

func daysInMonth(y int, m time.Month) int {
	switch m {
	case time.February:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}

// icalDuration is an RFC 5545 DURATION: days and weeks are nominal (they
// follow the wall clock across a DST change), hours, minutes and seconds are
// exact (RFC 5545 section 3.3.6).
type icalDuration struct {
	days  int
	exact time.Duration
}

func (d icalDuration) isZero() bool { return d.days == 0 && d.exact == 0 }

func (d icalDuration) negative() bool {
	return d.days < 0 || (d.days == 0 && d.exact < 0)
}

// parseDuration parses [+-]P[nW][nD][T[nH][nM][nS]].
func parseDuration(v string) (icalDuration, error) {
	v = strings.TrimSpace(v)
	bad := errors.New("invalid duration")
	neg := false
	if v != "" && (v[0] == '+' || v[0] == '-') {
		neg = v[0] == '-'
		v = v[1:]
	}
	if v == "" || (v[0] != 'P' && v[0] != 'p') {
		return icalDuration{}, bad
	}
	v = v[1:]
	var d icalDuration
	inTime := false
	seen := false
	for len(v) > 0 {
		if v[0] == 'T' || v[0] == 't' {
			inTime = true
			v = v[1:]
			continue
		}
		i := 0
		n := 0
		for i < len(v) && v[i] >= '0' && v[i] <= '9' {
			if n > 1e7 {
				return icalDuration{}, bad
			}
			n = n*10 + int(v[i]-'0')
			i++
		}
		if i == 0 || i == len(v) {
			return icalDuration{}, bad
		}
		switch v[i] {
		case 'W', 'w':
			d.days += 7 * n
		case 'D', 'd':
			d.days += n
		case 'H', 'h':
			d.exact += time.Duration(n) * time.Hour
		case 'M', 'm':
			if !inTime {
				return icalDuration{}, bad
			}
			d.exact += time.Duration(n) * time.Minute
		case 'S', 's':
			d.exact += time.Duration(n) * time.Second
		default:
			return icalDuration{}, bad
		}
		seen = true
		v = v[i+1:]
	}
	if !seen {
		return icalDuration{}, bad
	}
	if neg {
		d.days, d.exact = -d.days, -d.exact
	}
	return d, nil
}

// unescapeText decodes a TEXT value (RFC 5545 3.3.11). Unknown escapes keep
// the character; it never fails.
func unescapeText(v string) string {
	i := strings.IndexByte(v, '\\')
	if i < 0 {
		return v
	}
	var b strings.Builder
	b.Grow(len(v))
	for i >= 0 && i+1 < len(v) {
		// v[:i] is plain text: copied in one go.
		b.WriteString(v[:i])
		if c := v[i+1]; c == 'n' || c == 'N' {
			b.WriteByte('\n')
		} else {
			b.WriteByte(c)
		}
		v = v[i+2:]
		i = strings.IndexByte(v, '\\')
	}
	// What is left has no backslash, or ends in one (kept as it is).
	b.WriteString(v)
	return b.String()
}

// calAddress turns a CAL-ADDRESS into a lower-cased e-mail address:
// "mailto:" stripped. A mis-folded parameter can leak into the value
// (`x@y";CN=Name:mailto:z@w`): the last mailto: wins.
func calAddress(v string) string {
	v = strings.TrimSpace(v)
	if i := lastIndexFold(v, "mailto:"); i >= 0 {
		v = v[i+len("mailto:"):]
		if strings.ContainsAny(v, " \t") {
			v = strings.Join(strings.Fields(v), "")
		}
	}
	return toLowerASCII(strings.TrimSpace(v))
}

func lastIndexFold(s, sub string) int {
	// Only ASCII folds to the ASCII letters of "mailto:" (strings.EqualFold:
	// no other rune's case orbit holds them, unlike K's and S's), so a
	// first byte that is not sub's in either case cannot start a match.
	c0 := lowerASCII(sub[0])
	for i := len(s) - len(sub); i >= 0; i-- {
		if lowerASCII(s[i]) == c0 && strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

// toLowerASCII lower-cases s, allocating only when it has upper-case ASCII.
func toLowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// toUpperASCII upper-cases s, allocating only when it has lower-case ASCII.
func toUpperASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'a' && c <= 'z' {
			return strings.ToUpper(s)
		}
	}
	return s
}
