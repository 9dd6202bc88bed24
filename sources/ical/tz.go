package ical

import (
	"encoding/binary"
	"errors"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	_ "time/tzdata" // the container is a static binary without /usr/share/zoneinfo

	goical "github.com/emersion/go-ical"
)

// Zone lookups are cached process-wide: time.LoadLocation reads and parses a
// zoneinfo file on every call (go-ical's Prop.DateTime calls it for every
// property), and Outlook sends the same VTIMEZONE in every feed.
var (
	ianaCache   sync.Map // string -> *time.Location (nil: not an IANA name)
	vtzCache    sync.Map // definition key -> *time.Location
	cacheCount  atomic.Int64
	maxCacheLen = int64(4096) // unknown names and VTIMEZONEs from feeds must not grow it forever
)

func cacheStore(m *sync.Map, key string, loc *time.Location) {
	if cacheCount.Load() < maxCacheLen {
		cacheCount.Add(1)
		m.Store(key, loc)
	}
}

// loadIANA returns the IANA zone called name, or nil.
func loadIANA(name string) *time.Location {
	if name == "" || name == "Local" || len(name) > 64 || strings.ContainsAny(name, " ():,\\\"") {
		return nil
	}
	if v, ok := ianaCache.Load(name); ok {
		return v.(*time.Location)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		// Unknown names come from feeds: remember a bounded number.
		cacheStore(&ianaCache, name, nil)
		return nil
	}
	ianaCache.Store(name, loc) // at most the few hundred IANA names
	return loc
}

// resolveNamedZone resolves a TZID by name alone: an IANA name (also with
// a "/mozilla.org/20050126_1/" style prefix), or a Windows zone ID.
func resolveNamedZone(tzid string) *time.Location {
	t := strings.Trim(strings.TrimSpace(tzid), `"'`)
	if loc := loadIANA(t); loc != nil {
		return loc
	}
	if strings.Count(t, "/") >= 2 || strings.HasPrefix(t, "/") {
		parts := strings.Split(strings.Trim(t, "/"), "/")
		for i := 1; i < len(parts)-1; i++ {
			if loc := loadIANA(strings.Join(parts[i:], "/")); loc != nil {
				return loc
			}
		}
	}
	if iana, ok := windowsZones[t]; ok {
		return loadIANA(iana)
	}
	for win, iana := range windowsZones {
		if strings.EqualFold(win, t) {
			return loadIANA(iana)
		}
	}
	return nil
}

// resolveDisplayName resolves an Outlook display name such as
// "(UTC-05:00) Eastern Time (US & Canada)" by the city or region it names.
func resolveDisplayName(tzid string) *time.Location {
	for _, kw := range displayNameZones {
		if strings.Contains(tzid, kw.keyword) {
			return loadIANA(kw.zone)
		}
	}
	return nil
}

var reOffsetLabel = regexp.MustCompile(`(?:UTC|GMT)?\s*([+-])(\d{1,2})(?:[:.]?(\d{2}))?`)

func parseOffsetLabel(label string) (int, bool) {
	m := reOffsetLabel.FindStringSubmatch(label)
	if m == nil {
		t := strings.Trim(strings.TrimSpace(label), "()")
		if t == "UTC" || t == "GMT" {
			return 0, true
		}
		return 0, false
	}
	h, _ := strconv.Atoi(m[2])
	mi := 0
	if m[3] != "" {
		mi, _ = strconv.Atoi(m[3])
	}
	if h > 14 || mi > 59 {
		return 0, false
	}
	off := h*3600 + mi*60
	if m[1] == "-" {
		off = -off
	}
	return off, true
}

func fmtOffset(sec int) string {
	sign := '+'
	if sec < 0 {
		sign, sec = '-', -sec
	}
	return string(sign) + pad2(sec/3600) + pad2(sec%3600/60)
}

func pad2(n int) string {
	return string([]byte{byte('0' + n/10%10), byte('0' + n%10)})
}

// localToUTC converts a wall-clock time in loc to an instant following RFC
// 5545 section 3.3.5: a local time that occurs twice (DST ends) is its first
// occurrence; a local time that does not exist (DST starts) is read with the
// offset before the gap, so it moves forward by the length of the gap.
// (time.Date picks either, depending on the zone's sign.)
func localToUTC(loc *time.Location, w civil) time.Time {
	if loc == time.UTC || loc == nil {
		return w
	}
	y, mo, d := w.Date()
	hh, mm, ss := w.Clock()
	t := time.Date(y, mo, d, hh, mm, ss, 0, loc)
	start, end := t.ZoneBounds()
	const near = 26 * time.Hour
	if (start.IsZero() || t.Sub(start) > near) && (end.IsZero() || end.Sub(t) > near) {
		return t.UTC()
	}
	wu := w.Unix()
	offAt := func(u int64) int64 {
		_, off := time.Unix(u, 0).In(loc).Zone()
		return int64(off)
	}
	before := offAt(wu - 86400)
	best, found := int64(0), false
	for _, o := range [...]int64{before, offAt(wu), offAt(wu + 86400)} {
		if offAt(wu-o) == o && (!found || o > best) {
			best, found = o, true
		}
	}
	if !found {
		best = before
	}
	return time.Unix(wu-best, 0).UTC()
}

// wallIn returns the wall clock of instant t in loc, as civil time.
func wallIn(t time.Time, loc *time.Location) civil {
	if loc == nil {
		loc = time.UTC
	}
	y, mo, d := t.In(loc).Date()
	hh, mm, ss := t.In(loc).Clock()
	return time.Date(y, mo, d, hh, mm, ss, 0, time.UTC)
}

// vtzLocation builds a *time.Location from a VTIMEZONE component: its
// STANDARD and DAYLIGHT observances (DTSTART, RRULE, RDATE, TZOFFSETFROM,
// TZOFFSETTO) give the transitions from 1900 to 2100, which are encoded as
// TZif data for time.LoadLocationFromTZData. The result is cached by the
// definition's content.
func vtzLocation(comp *goical.Component, tzid string) (*time.Location, error) {
	var key strings.Builder
	key.WriteString(tzid)
	for _, ob := range comp.Children {
		key.WriteString("\x00" + ob.Name)
		for _, name := range [...]string{"DTSTART", "TZOFFSETFROM", "TZOFFSETTO", "RRULE", "RDATE", "TZNAME"} {
			for _, p := range ob.Props[name] {
				key.WriteString("\x01" + p.Value)
			}
		}
	}
	k := key.String()
	if v, ok := vtzCache.Load(k); ok {
		return v.(*time.Location), nil
	}
	loc, err := buildVTZ(comp, tzid)
	if err != nil {
		return nil, err
	}
	cacheStore(&vtzCache, k, loc)
	return loc, nil
}

type transition struct {
	at    int64 // unix seconds
	off   int
	isDST bool
	name  string
}

const (
	vtzFromYear = 1900
	vtzToYear   = 2100
	maxVTZTrans = 4000
)

func buildVTZ(comp *goical.Component, tzid string) (*time.Location, error) {
	var trans []transition
	lo := time.Date(vtzFromYear, 1, 1, 0, 0, 0, 0, time.UTC)
	hi := time.Date(vtzToYear, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, ob := range comp.Children {
		if ob.Name != "STANDARD" && ob.Name != "DAYLIGHT" {
			continue
		}
		from, err1 := parseUTCOffset(propValue(ob, "TZOFFSETFROM"))
		to, err2 := parseUTCOffset(propValue(ob, "TZOFFSETTO"))
		if err2 != nil {
			continue
		}
		if err1 != nil {
			from = to
		}
		start, err := parseDT(propValue(ob, "DTSTART"), false)
		if err != nil {
			continue
		}
		mk := func(w civil) transition {
			return transition{at: w.Unix() - int64(from), off: to, isDST: ob.Name == "DAYLIGHT", name: propValue(ob, "TZNAME")}
		}
		onsets := []civil{start.wall}
		for _, p := range ob.Props["RDATE"] {
			for v := range strings.SplitSeq(p.Value, ",") {
				if r, err := parseDT(strings.SplitN(v, "/", 2)[0], false); err == nil {
					onsets = append(onsets, r.wall)
				}
			}
		}
		for _, p := range ob.Props["RRULE"] {
			spec, err := parseRRule(p.Value)
			if err != nil {
				continue
			}
			var until civil
			if spec.hasUntil {
				until = spec.until.wall
				if spec.until.kind == kindUTC {
					// UNTIL is UTC; the onset wall clock is in "from".
					until = until.Add(time.Duration(from) * time.Second)
				}
			}
			list, _, err := expandRule(spec, start.wall, until, ruleWindow{lo: lo, hi: hi, from: lo, to: hi, limit: maxVTZTrans})
			if err != nil {
				continue
			}
			onsets = append(onsets, list...)
		}
		for _, w := range onsets {
			trans = append(trans, mk(w))
			if len(trans) > maxVTZTrans {
				return nil, errors.New("too many transitions")
			}
		}
	}
	if len(trans) == 0 {
		return nil, errors.New("no usable STANDARD or DAYLIGHT observance")
	}
	sort.SliceStable(trans, func(i, j int) bool { return trans[i].at < trans[j].at })
	// Before the first transition the zone observes its "from" offset,
	// which we no longer know per observance: use the first transition's
	// offset (what goical.js does for times before the first onset).
	initial := transition{off: trans[0].off, isDST: trans[0].isDST, name: trans[0].name}
	if first := firstStandard(trans); first >= 0 {
		initial = transition{off: trans[first].off, name: trans[first].name}
	}
	return time.LoadLocationFromTZData(tzid, encodeTZif(initial, trans))
}

func firstStandard(trans []transition) int {
	for i, t := range trans {
		if !t.isDST {
			return i
		}
	}
	return -1
}

func propValue(c *goical.Component, name string) string {
	if ps := c.Props[name]; len(ps) > 0 {
		return ps[0].Value
	}
	return ""
}

// parseUTCOffset parses a UTC-OFFSET value: +HHMM[SS] or -HHMM[SS].
func parseUTCOffset(v string) (int, error) {
	v = strings.TrimSpace(v)
	bad := errors.New("invalid UTC offset")
	if len(v) != 5 && len(v) != 7 || v[0] != '+' && v[0] != '-' {
		return 0, bad
	}
	h, ok1 := atoiN(v[1:3])
	m, ok2 := atoiN(v[3:5])
	s, ok3 := 0, true
	if len(v) == 7 {
		s, ok3 = atoiN(v[5:7])
	}
	if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || s > 59 {
		return 0, bad
	}
	off := h*3600 + m*60 + s
	if v[0] == '-' {
		off = -off
	}
	return off, nil
}

// encodeTZif writes a version 2 TZif file (RFC 8536) with 64-bit
// transition times. Local time type 0 is the initial type and is used by no
// transition, which is how Go picks the zone before the first transition.
func encodeTZif(initial transition, trans []transition) []byte {
	type ttype struct {
		off   int
		isDST bool
		name  string
	}
	types := []ttype{{initial.off, initial.isDST, abbrev(initial)}}
	index := map[ttype]int{}
	idx := make([]byte, len(trans))
	for i, t := range trans {
		tt := ttype{t.off, t.isDST, abbrev(t)}
		n, ok := index[tt]
		if !ok {
			n = len(types)
			if n > 250 {
				n = len(types) - 1
			} else {
				types = append(types, tt)
				index[tt] = n
			}
		}
		idx[i] = byte(n)
	}
	var chars []byte
	nameAt := map[string]int{}
	for _, tt := range types {
		if _, ok := nameAt[tt.name]; !ok {
			nameAt[tt.name] = len(chars)
			chars = append(chars, tt.name...)
			chars = append(chars, 0)
		}
	}
	header := func(b []byte, timecnt, typecnt, charcnt int) []byte {
		b = append(b, "TZif2"...)
		b = append(b, make([]byte, 15)...)
		for _, n := range [...]int{0, 0, 0, timecnt, typecnt, charcnt} {
			b = binary.BigEndian.AppendUint32(b, uint32(n))
		}
		return b
	}
	// An empty version 1 block (one type, no transitions), then the data.
	b := header(nil, 0, 1, 1)
	b = append(b, 0, 0, 0, 0, 0, 0, 0)
	b = header(b, len(trans), len(types), len(chars))
	for _, t := range trans {
		b = binary.BigEndian.AppendUint64(b, uint64(t.at))
	}
	b = append(b, idx...)
	for _, tt := range types {
		b = binary.BigEndian.AppendUint32(b, uint32(int32(tt.off)))
		dst := byte(0)
		if tt.isDST {
			dst = 1
		}
		b = append(b, dst, byte(nameAt[tt.name]))
	}
	b = append(b, chars...)
	return append(b, '\n', '\n')
}

func abbrev(t transition) string {
	name := t.name
	ok := len(name) >= 1 && len(name) <= 16
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '-'
	}
	if !ok {
		return fmtOffset(t.off)
	}
	return name
}
