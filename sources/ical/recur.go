package ical

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/teambition/rrule-go"
)

// ruleSpec is a parsed RRULE (RFC 5545 section 3.3.10) before it is tied to a
// DTSTART.
type ruleSpec struct {
	opt      rrule.ROption // Freq, Interval, Wkst and the BYxxx parts
	count    int           // 0: none
	until    rawDT
	hasUntil bool
	hasBy    bool // any BYxxx part
}

// maxRuleWork bounds the instances one RRULE may step through to reach the
// window (a COUNT rule starting decades ago, FREQ=SECONDLY...).
const maxRuleWork = 200000

var errRuleNeverMatches = errors.New("matches no date")

// parseRRule parses an RRULE value. It repairs what clients get wrong:
// whitespace (`BYDAY=MO, TU`), lower case, a trailing ';', COUNT <= 0
// (ignored), INTERVAL <= 0 (1). Values outside RFC 5545 bounds are dropped;
// a BYxxx part left empty by that can never match, which is an error.
func parseRRule(v string) (ruleSpec, error) {
	var spec ruleSpec
	if strings.ContainsAny(v, " \t") {
		v = strings.Join(strings.Fields(v), "")
	}
	v = strings.Trim(v, ";")
	// RRULE:RRULE:FREQ=... (the name written twice)
	if len(v) > 6 && strings.EqualFold(v[:6], "RRULE:") {
		v = v[6:]
	}
	if v == "" {
		return spec, errors.New("empty rule")
	}
	freqSet := false
	spec.opt.Interval = 1
	spec.opt.Wkst = rrule.MO
	for part := range strings.SplitSeq(v, ";") {
		key, val, ok := strings.Cut(part, "=")
		if !ok {
			continue // junk between the parts
		}
		key = toUpperASCII(key)
		val = toUpperASCII(val)
		var err error
		switch key {
		case "FREQ":
			spec.opt.Freq, err = rrule.StrToFreq(val)
			freqSet = err == nil
		case "INTERVAL":
			n, e := strconv.Atoi(val)
			if e == nil && n > 0 {
				spec.opt.Interval = n
			}
		case "COUNT":
			n, e := strconv.Atoi(val)
			if e == nil && n > 0 {
				spec.count = n
			}
		case "UNTIL":
			spec.until, err = parseDT(val, false)
			spec.hasUntil = err == nil
			if err != nil {
				err = fmt.Errorf("bad UNTIL %q", val)
			}
		case "WKST":
			if wd, ok := weekdayCode(val); ok {
				spec.opt.Wkst = wd
			}
		case "BYSECOND":
			spec.opt.Bysecond, err = intList(val, 0, 60, false)
		case "BYMINUTE":
			spec.opt.Byminute, err = intList(val, 0, 59, false)
		case "BYHOUR":
			spec.opt.Byhour, err = intList(val, 0, 23, false)
		case "BYMONTHDAY":
			spec.opt.Bymonthday, err = intList(val, 1, 31, true)
		case "BYYEARDAY":
			spec.opt.Byyearday, err = intList(val, 1, 366, true)
		case "BYWEEKNO":
			spec.opt.Byweekno, err = intList(val, 1, 53, true)
		case "BYMONTH":
			spec.opt.Bymonth, err = intList(val, 1, 12, false)
		case "BYSETPOS":
			spec.opt.Bysetpos, err = intList(val, 1, 366, true)
		case "BYDAY":
			spec.opt.Byweekday, err = weekdayList(val)
		default:
			// X-NAME parts and BYEASTER (not RFC 5545) are ignored.
			continue
		}
		if err != nil {
			return spec, err
		}
		if strings.HasPrefix(key, "BY") {
			spec.hasBy = true
		}
	}
	if !freqSet {
		return spec, errors.New("no valid FREQ")
	}
	for i, s := range spec.opt.Bysecond {
		if s == 60 { // leap second
			spec.opt.Bysecond[i] = 59
		}
	}
	// An ordinal weekday (2TU) is relative to the month for MONTHLY, and for
	// YEARLY with BYMONTH: at most 5 such weekdays exist.
	if spec.opt.Freq == rrule.MONTHLY || spec.opt.Freq == rrule.YEARLY && len(spec.opt.Bymonth) > 0 {
		kept := spec.opt.Byweekday[:0]
		for _, wd := range spec.opt.Byweekday {
			if n := wd.N(); n <= 5 && n >= -5 {
				kept = append(kept, wd)
			}
		}
		if len(spec.opt.Byweekday) > 0 && len(kept) == 0 {
			return spec, errRuleNeverMatches
		}
		spec.opt.Byweekday = kept
	}
	return spec, nil
}

func intList(v string, lo, hi int, signed bool) ([]int, error) {
	var out []int
	for s := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimPrefix(s, "+"))
		if err != nil {
			continue
		}
		if n >= lo && n <= hi || signed && n <= -lo && n >= -hi {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, errRuleNeverMatches
	}
	return out, nil
}

var weekdayCodes = [...]struct {
	code string
	wd   rrule.Weekday
}{{"MO", rrule.MO}, {"TU", rrule.TU}, {"WE", rrule.WE}, {"TH", rrule.TH}, {"FR", rrule.FR}, {"SA", rrule.SA}, {"SU", rrule.SU}}

func weekdayCode(s string) (rrule.Weekday, bool) {
	for _, c := range weekdayCodes {
		if c.code == s {
			return c.wd, true
		}
	}
	return rrule.Weekday{}, false
}

func weekdayList(v string) ([]rrule.Weekday, error) {
	var out []rrule.Weekday
	for s := range strings.SplitSeq(v, ",") {
		if len(s) < 2 {
			continue
		}
		wd, ok := weekdayCode(s[len(s)-2:])
		if !ok {
			continue
		}
		if num := s[:len(s)-2]; num != "" {
			n, err := strconv.Atoi(strings.TrimPrefix(num, "+"))
			if err != nil || n == 0 || n > 53 || n < -53 {
				continue
			}
			wd = wd.Nth(n)
		}
		out = append(out, wd)
	}
	if len(out) == 0 {
		return nil, errRuleNeverMatches
	}
	return out, nil
}

// ruleWindow is what expandRule should produce: wall-clock instances in
// [lo, hi], stopping after limit instances in [from, to].
type ruleWindow struct {
	lo, hi   civil
	from, to civil
	limit    int
}

// expandRule returns the instances of spec for a series starting at dtstart
// (wall clock, as civil time), inside w. until is the rule's end on the wall
// clock (zero: none). capped reports that the limit or the work bound
// stopped the expansion.
//
// Three things keep the work bounded:
//   - without COUNT, DTSTART is moved forward by whole periods to just
//     before the window (the BYxxx defaults RRULE takes from DTSTART are made
//     explicit first, so the rule's meaning does not change);
//   - COUNT on a rule without BYxxx parts becomes an UNTIL, so it can be
//     moved too; other COUNT rules are counted from DTSTART, at most
//     maxRuleWork steps. COUNT counts the instances the rule produces
//     (as dateutil and ical.js do): when DTSTART does not match the rule,
//     it is an extra instance;
//   - rrule-go gives up on a rule that never matches only at year 9999, so
//     the whole computation is moved by a multiple of 400 years (the
//     Gregorian calendar repeats exactly) to end shortly before that year.
func expandRule(spec ruleSpec, dtstart, until civil, w ruleWindow) (out []civil, capped bool, err error) {
	return expandRuleWith(spec, dtstart, until, w, true)
}

// expandRuleWith is expandRule, with simple rules stepped through without
// rrule-go (weeklyOrDaily) when fast; the tests compare both ways.
func expandRuleWith(spec ruleSpec, dtstart, until civil, w ruleWindow, fast bool) (out []civil, capped bool, err error) {
	if w.hi.Before(w.lo) || w.hi.Before(dtstart) {
		return nil, false, nil
	}
	if !subDailyReachable(spec.opt, dtstart) {
		return nil, false, errRuleNeverMatches
	}
	opt := spec.opt
	count := spec.count
	if count > 0 && !spec.hasBy {
		if u, ok := countToUntil(opt.Freq, opt.Interval, count, dtstart); ok {
			if until.IsZero() || u.Before(until) {
				until = u
			}
			count = 0
		}
	}
	start := dtstart
	if count == 0 {
		start = shiftStart(opt.Freq, opt.Interval, dtstart, w.lo)
	}
	end := w.hi
	if !until.IsZero() && until.Before(end) {
		end = until
	}
	if end.Before(start) {
		return nil, false, nil
	}
	years := 0
	var simple weeklyOrDaily
	var next func() (time.Time, bool)
	if !fast || !simple.init(opt, dtstart, start, end, count) {
		explicitDefaults(&opt, dtstart)
		// Move everything by k*400 years so that the end is close to year 9999.
		if y := end.Year(); y < 9500 {
			years = (9600 - y) / 400 * 400
		}
		opt.Dtstart = start.AddDate(years, 0, 0)
		opt.Until = end.AddDate(years, 0, 0)
		opt.Count = count
		r, err := rrule.NewRRule(opt)
		if err != nil {
			return nil, false, err
		}
		next = r.Iterator()
	}
	inWindow, work := 0, 0
	for {
		var t civil
		var ok bool
		if next != nil {
			t, ok = next()
		} else {
			t, ok = simple.next()
		}
		if !ok {
			break
		}
		if years != 0 {
			t = t.AddDate(-years, 0, 0)
		}
		work++
		if !t.Before(w.lo) {
			out = append(out, t)
			if !t.Before(w.from) && t.Before(w.to) {
				inWindow++
				if inWindow > w.limit {
					return out, true, nil
				}
			}
		}
		if count > 0 && work >= count {
			break
		}
		if work >= maxRuleWork {
			return out, true, nil
		}
	}
	return out, false, nil
}

// weeklyOrDaily steps through the instances of the rules nearly every
// series has (FREQ=WEEKLY or DAILY with INTERVAL and BYDAY, nothing else,
// without COUNT) as rrule-go's Iterator does, without building its year
// tables for each series: the days of each period in order, from start's
// week (starting on WKST) or day every INTERVAL weeks or days, at start's
// time of day, up to the first past end.
type weeklyOrDaily struct {
	days   [7]bool // the weekdays, Monday first (rrule-go's numbering)
	weekly bool
	first  civil // no instance before it
	end    civil
	period civil         // the start of the current period
	step   time.Duration // from one period to the next
	i      int           // the next day of a weekly period
	done   bool
}

// init sets w up for the rule opt (as parsed: before explicitDefaults)
// of a series starting at dtstart, from start (dtstart moved by whole
// periods) up to end. It reports false for any other rule.
func (w *weeklyOrDaily) init(opt rrule.ROption, dtstart, start, end civil, count int) bool {
	if count != 0 || opt.Freq != rrule.WEEKLY && opt.Freq != rrule.DAILY || opt.Interval < 1 || opt.Interval > 1000 ||
		len(opt.Bysetpos)+len(opt.Bymonth)+len(opt.Bymonthday)+len(opt.Byyearday)+len(opt.Byweekno)+len(opt.Byeaster) > 0 ||
		start.Nanosecond() != 0 || start.Year() < 1 || end.Year() > 9000 {
		return false
	}
	// explicitDefaults would take the time of day from dtstart (start's
	// is the same): a BYHOUR, BYMINUTE or BYSECOND must say just that.
	hh, mm, ss := dtstart.Clock()
	if sh, sm, sc := start.Clock(); sh != hh || sm != mm || sc != ss {
		return false
	}
	if !onlyValue(opt.Byhour, hh) || !onlyValue(opt.Byminute, mm) || !onlyValue(opt.Bysecond, ss) {
		return false
	}
	// BYDAY's ordinals mean nothing to WEEKLY and DAILY rules (rrule-go
	// drops them). Without BYDAY a WEEKLY rule takes dtstart's weekday
	// (explicitDefaults), a DAILY one every day.
	switch {
	case len(opt.Byweekday) > 0:
		for _, wd := range opt.Byweekday {
			w.days[wd.Day()] = true
		}
	case opt.Freq == rrule.WEEKLY:
		w.days[mondayFirst(dtstart.Weekday())] = true
	default:
		w.days = [7]bool{true, true, true, true, true, true, true}
	}
	y, m, d := start.Date()
	w.first = time.Date(y, m, d, hh, mm, ss, 0, time.UTC)
	w.period, w.end = w.first, end
	// civil times are UTC: a day is always 24 hours.
	w.step = time.Duration(opt.Interval) * 24 * time.Hour
	if opt.Freq == rrule.WEEKLY {
		// The period is the week (from WKST) that holds start, and every
		// INTERVAL-th week after it.
		w.weekly = true
		back := (mondayFirst(w.first.Weekday()) - opt.Wkst.Day() + 7) % 7
		w.period = w.first.AddDate(0, 0, -back)
		w.step *= 7
	}
	return true
}

// onlyValue reports whether list is empty or holds v alone.
func onlyValue(list []int, v int) bool {
	return len(list) == 0 || len(list) == 1 && list[0] == v
}

// next returns the next instance, as rrule-go's Iterator.
func (w *weeklyOrDaily) next() (civil, bool) {
	for !w.done {
		var t civil
		if w.weekly {
			if w.i == 7 {
				w.period, w.i = w.period.Add(w.step), 0
			}
			t = w.period.Add(time.Duration(w.i) * 24 * time.Hour)
			w.i++
		} else {
			t = w.period
			w.period = w.period.Add(w.step)
		}
		if t.After(w.end) {
			w.done = true
		} else if !t.Before(w.first) && w.days[mondayFirst(t.Weekday())] {
			return t, true
		}
	}
	return civil{}, false
}

// mondayFirst numbers a weekday from Monday, 0, as rrule-go does.
func mondayFirst(wd time.Weekday) int { return (int(wd) + 6) % 7 }

// explicitDefaults writes down the BYxxx values an RRULE takes from DTSTART
// (RFC 5545 3.3.10, as rrule-go applies them) so that DTSTART can be moved.
func explicitDefaults(opt *rrule.ROption, dtstart civil) {
	if len(opt.Byweekno) == 0 && len(opt.Byyearday) == 0 && len(opt.Bymonthday) == 0 &&
		len(opt.Byweekday) == 0 && len(opt.Byeaster) == 0 {
		switch opt.Freq {
		case rrule.YEARLY:
			if len(opt.Bymonth) == 0 {
				opt.Bymonth = []int{int(dtstart.Month())}
			}
			opt.Bymonthday = []int{dtstart.Day()}
		case rrule.MONTHLY:
			opt.Bymonthday = []int{dtstart.Day()}
		case rrule.WEEKLY:
			opt.Byweekday = []rrule.Weekday{weekdayCodes[(int(dtstart.Weekday())+6)%7].wd}
		}
	}
	if len(opt.Byhour) == 0 && opt.Freq < rrule.HOURLY {
		opt.Byhour = []int{dtstart.Hour()}
	}
	if len(opt.Byminute) == 0 && opt.Freq < rrule.MINUTELY {
		opt.Byminute = []int{dtstart.Minute()}
	}
	if len(opt.Bysecond) == 0 && opt.Freq < rrule.SECONDLY {
		opt.Bysecond = []int{dtstart.Second()}
	}
}

// shiftStart returns the last start of a period of the rule that is not
// after lo (and not before dtstart). Periods are whole, so BYSETPOS, WKST
// and INTERVAL keep their meaning.
func shiftStart(freq rrule.Frequency, interval int, dtstart, lo civil) civil {
	if !lo.After(dtstart) {
		return dtstart
	}
	y, m, d := dtstart.Date()
	hh, mm, ss := dtstart.Clock()
	switch freq {
	case rrule.YEARLY:
		k := (lo.Year() - y) / interval
		if k <= 0 {
			return dtstart
		}
		return time.Date(y+k*interval, 1, 1, hh, mm, ss, 0, time.UTC)
	case rrule.MONTHLY:
		months := (lo.Year()-y)*12 + int(lo.Month()-m)
		k := months / interval
		if k <= 0 {
			return dtstart
		}
		return time.Date(y, m+time.Month(k*interval), 1, hh, mm, ss, 0, time.UTC)
	case rrule.WEEKLY, rrule.DAILY:
		step := interval
		if freq == rrule.WEEKLY {
			step *= 7
		}
		days := int(lo.Sub(dtstart) / (24 * time.Hour))
		k := days / step
		if k <= 0 {
			return dtstart
		}
		return time.Date(y, m, d+k*step, hh, mm, ss, 0, time.UTC)
	default:
		unit := time.Second
		switch freq {
		case rrule.HOURLY:
			unit = time.Hour
		case rrule.MINUTELY:
			unit = time.Minute
		}
		step := time.Duration(interval) * unit
		k := lo.Sub(dtstart) / step
		if k <= 0 {
			return dtstart
		}
		return dtstart.Add(k * step)
	}
}

// countToUntil turns COUNT into the last instance's start for a rule whose
// every period yields exactly one instance (no BYxxx parts, and no month
// without the day).
func countToUntil(freq rrule.Frequency, interval, count int, dtstart civil) (civil, bool) {
	n := (count - 1) * interval
	if count > 1e6 || n > 1e7 {
		return civil{}, false
	}
	switch freq {
	case rrule.YEARLY:
		if dtstart.Month() == time.February && dtstart.Day() == 29 {
			return civil{}, false
		}
		return dtstart.AddDate(n, 0, 0), true
	case rrule.MONTHLY:
		if dtstart.Day() > 28 {
			return civil{}, false
		}
		return dtstart.AddDate(0, n, 0), true
	case rrule.WEEKLY:
		return dtstart.AddDate(0, 0, 7*n), true
	case rrule.DAILY:
		return dtstart.AddDate(0, 0, n), true
	case rrule.HOURLY:
		return dtstart.Add(time.Duration(n) * time.Hour), true
	case rrule.MINUTELY:
		return dtstart.Add(time.Duration(n) * time.Minute), true
	case rrule.SECONDLY:
		return dtstart.Add(time.Duration(n) * time.Second), true
	}
	return civil{}, false
}

// subDailyReachable reports whether a HOURLY/MINUTELY/SECONDLY rule can
// ever reach its BYHOUR/BYMINUTE/BYSECOND values: rrule-go loops forever
// when stepping by INTERVAL never lands on them (FREQ=HOURLY;INTERVAL=2;
// BYHOUR=1 from an even hour).
func subDailyReachable(opt rrule.ROption, dtstart civil) bool {
	all := func(list []int, n int) []int {
		if len(list) > 0 {
			return list
		}
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	hh, mm, ss := dtstart.Clock()
	var pos0 int
	hl, ml, sl := []int{hh}, []int{mm}, []int{ss}
	switch opt.Freq {
	case rrule.HOURLY:
		if len(opt.Byhour) == 0 {
			return true
		}
		pos0 = hh*3600 + mm*60 + ss
		hl = opt.Byhour
	case rrule.MINUTELY:
		if len(opt.Byhour) == 0 && len(opt.Byminute) == 0 {
			return true
		}
		pos0 = hh*3600 + mm*60 + ss
		hl, ml = all(opt.Byhour, 24), all(opt.Byminute, 60)
	case rrule.SECONDLY:
		if len(opt.Byhour) == 0 && len(opt.Byminute) == 0 && len(opt.Bysecond) == 0 {
			return true
		}
		pos0 = hh*3600 + mm*60 + ss
		hl, ml, sl = all(opt.Byhour, 24), all(opt.Byminute, 60), all(opt.Bysecond, 60)
	default:
		return true
	}
	var unit int
	switch opt.Freq {
	case rrule.HOURLY:
		unit = 3600
	case rrule.MINUTELY:
		unit = 60
	default:
		unit = 1
	}
	g := gcd(opt.Interval*unit, 86400)
	for _, h := range hl {
		for _, m := range ml {
			for _, s := range sl {
				if ((h*3600+m*60+s-pos0)%g+g)%g == 0 {
					return true
				}
			}
		}
	}
	return false
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	if a < 0 {
		return -a
	}
	return a
}
