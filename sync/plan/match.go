// Package plan is the pure decision core: which occurrences make whom busy
// (matching and filters), each person's busy spans, and Reconcile, which
// compares the desired spans with the sessions recorded and returns the
// presence calls that make Graph agree. No I/O and no clock: the time is
// an argument.
package plan

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/mailaddr"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/sources/ical"
)

// Skip reasons: why a matched occurrence does not make its user busy.
const (
	SkipCancelled   = "cancelled"
	SkipTransparent = "transparent"
	SkipAllDay      = "all_day"
	SkipDeclined    = "declined"
	SkipTentative   = "tentative"
	SkipExcluded    = "excluded"
	SkipNotIncluded = "not_included"
	SkipZeroLength  = "zero_length"
	SkipSignal      = "signal" // a live meeting signal ended it before it began
)

// Match is one occurrence matched to one user. Skip is empty when the
// occurrence makes the user busy, else the reason it does not.
type Match struct {
	// User is the address that names the person, case-folded: a fixed
	// user or users: target as configured, else the calendar address. The
	// engine resolves it to the person (KeyFunc); plan shows it as is.
	User string
	// Occ is what is kept of the occurrence matched (Occurrence); the
	// matches of one occurrence share it.
	Occ *Occurrence
	// Rule is the source and what it sets, shared by the source's
	// matches (its fields read as the match's own: m.Source, m.Pair).
	// It is never written through a match: one that needs other terms
	// gets a Rule of its own (signals.Apply's segments).
	*Rule
	Skip string
	// Signal is the live meeting event (state.SignalEnded, SignalLeft)
	// that cut this match's occurrence short; empty for a match as the
	// feed gave it (see signals.Apply).
	Signal string
}

// Rule is what a source does to the people its occurrences make busy:
// Pair from Lead before an occurrence until Grace after it. Matcher.Match
// gives a source's matches one Rule to share rather than a copy each: the
// matches are kept for hours, millions of them at 100,000 feeds.
type Rule struct {
	Source string
	Pair   presence.Pair
	Lead   time.Duration
	Grace  time.Duration
}

// Busy reports whether the match makes its user busy.
func (m *Match) Busy() bool { return m.Skip == "" }

// Matcher matches the occurrences of configured sources to users, and
// decides who the configuration covers (Covers).
type Matcher struct {
	users map[string]string // normalised calendar address → configured user
	// targets is users with the configured user normalised: the one
	// string every match of the address shares.
	targets map[string]string
	named   map[string]bool // normalised: fixed users and users: targets
	sources map[string]*sourceMatcher
	order   []*sourceMatcher // as configured
}

type sourceMatcher struct {
	src              *config.Source
	fixed            []string // src.Users normalised, shared by their matches
	rule             *Rule    // shared by the source's matches
	include, exclude filters
	domains          []string
	onlyConfigured   bool
	skipAllDay       bool
	skipTransparent  bool
	skipTentative    bool
	skipDeclined     bool
}

type filters struct{ summary, location, description *regexp.Regexp }

func (f filters) empty() bool { return f.summary == nil && f.location == nil && f.description == nil }

func compileFilter(path string, f config.Filter) (filters, error) {
	var out filters
	for _, x := range []struct {
		name string
		expr string
		dst  **regexp.Regexp
	}{{"summary", f.Summary, &out.summary}, {"location", f.Location, &out.location}, {"description", f.Description, &out.description}} {
		if x.expr == "" {
			continue
		}
		re, err := regexp.Compile(x.expr)
		if err != nil {
			return out, fmt.Errorf("%s.%s: %w", path, x.name, err)
		}
		*x.dst = re
	}
	return out, nil
}

// NewMatcher compiles the sources' filters. The configuration must have
// passed Validate.
func NewMatcher(cfg *config.Config) (*Matcher, error) {
	m := &Matcher{users: cfg.UserIndex(), named: make(map[string]bool), sources: make(map[string]*sourceMatcher, len(cfg.Sources))}
	m.targets = make(map[string]string, len(m.users))
	for a, u := range m.users {
		m.targets[a] = mailaddr.Normalize(u)
	}
	for _, u := range cfg.ConfiguredUsers() {
		m.named[mailaddr.Normalize(u)] = true
	}
	for i := range cfg.Sources {
		src := &cfg.Sources[i]
		p := cfg.SourcePresence(i)
		sm := &sourceMatcher{
			src: src,
			rule: &Rule{Source: src.Name, Pair: presence.Pair{Availability: p.Availability, Activity: p.Activity},
				Lead: p.Lead, Grace: p.Grace},
			onlyConfigured:  src.Match != "" && p.OnlyConfigured,
			skipAllDay:      src.SkipAllDay(),
			skipTransparent: src.SkipTransparent(),
			skipTentative:   src.SkipTentative(),
			skipDeclined:    src.SkipDeclined(),
		}
		for _, u := range src.Users {
			sm.fixed = append(sm.fixed, mailaddr.Normalize(u))
		}
		for _, d := range src.Domains {
			sm.domains = append(sm.domains, strings.ToLower(strings.TrimPrefix(d, "@")))
		}
		var err error
		if sm.include, err = compileFilter(fmt.Sprintf("sources[%d].include", i), src.Include); err != nil {
			return nil, err
		}
		if sm.exclude, err = compileFilter(fmt.Sprintf("sources[%d].exclude", i), src.Exclude); err != nil {
			return nil, err
		}
		m.sources[src.Name] = sm
		m.order = append(m.order, sm)
	}
	return m, nil
}

// Match returns the users each occurrence of the named source concerns, with
// the reason it is skipped where it does not make them busy. Occurrences
// that match no user at all are not returned. The matches of one
// occurrence come in a row and share what is kept of it (Occurrence);
// the kept occurrences share one array, and nothing of occs is referred
// to but its strings and meeting keys.
func (m *Matcher) Match(source string, occs []ical.Occurrence) []Match {
	sm := m.sources[source]
	if sm == nil {
		return nil
	}
	var out []Match
	if sm.src.Match == "" {
		// Kept as long as the feed is unchanged: no append slack.
		out = make([]Match, 0, len(occs)*len(sm.src.Users))
	}
	// runs[r]: the occurrence of the r-th run of matches and where in out
	// the run begins; the kept occurrences are made once their number is
	// known, so that their array has no slack either.
	type run struct{ occ, from int }
	var runs []run
	for i := range occs {
		o := &occs[i]
		if n := len(out); len(runs) == 0 || runs[len(runs)-1].from != n {
			runs = append(runs, run{i, n})
		} else {
			runs[len(runs)-1].occ = i // the previous occurrence matched nobody
		}
		common := sm.skipReason(o)
		add := func(user, partstat string) {
			skip := common
			if skip == "" {
				switch {
				case partstat == "DECLINED" && sm.skipDeclined:
					skip = SkipDeclined
				case partstat == "TENTATIVE" && sm.skipTentative:
					skip = SkipTentative
				}
			}
			out = append(out, Match{User: user, Rule: sm.rule, Skip: skip})
		}
		switch sm.src.Match {
		case "":
			for j, u := range sm.src.Users {
				add(sm.fixed[j], m.partstatOf(o, u))
			}
		case "organizer":
			if u, ok := m.userFor(sm, o.Organizer); ok {
				add(u, "ACCEPTED")
			}
		case "attendees":
			seen := make(map[string]bool)
			// The organizer attends their own meeting (RFC 5546 lists the
			// organizer as an attendee only optionally).
			if u, ok := m.userFor(sm, o.Organizer); ok {
				seen[u] = true
				add(u, m.partstatOf(o, u))
			}
			for _, a := range o.Attendees {
				u, ok := m.userFor(sm, a.Email)
				if !ok || seen[u] {
					continue
				}
				seen[u] = true
				add(u, a.PartStat)
			}
		}
	}
	if len(runs) > 0 && runs[len(runs)-1].from == len(out) {
		runs = runs[:len(runs)-1] // the last occurrence matched nobody
	}
	if len(runs) == 0 {
		return out
	}
	kept := make([]Occurrence, len(runs))
	for r, x := range runs {
		kept[r] = keep(&occs[x.occ])
		to := len(out)
		if r+1 < len(runs) {
			to = runs[r+1].from
		}
		for k := x.from; k < to; k++ {
			out[k].Occ = &kept[r]
		}
	}
	return out
}

// UsesDescription reports whether a filter of source reads descriptions.
func (m *Matcher) UsesDescription(source string) bool {
	sm := m.sources[source]
	return sm != nil && (sm.include.description != nil || sm.exclude.description != nil)
}

// skipReason is the reason an occurrence makes nobody busy, whoever it
// matches; "" when it is busy for its attendees (docs/configuration.md).
func (sm *sourceMatcher) skipReason(o *ical.Occurrence) string {
	switch {
	case o.Cancelled():
		return SkipCancelled
	case !o.End.After(o.Start):
		return SkipZeroLength
	case o.Transparent && sm.skipTransparent:
		return SkipTransparent
	case o.AllDay && sm.skipAllDay:
		return SkipAllDay
	case o.Status == "TENTATIVE" && sm.skipTentative:
		return SkipTentative
	case !sm.include.empty() && !sm.include.all(o):
		return SkipNotIncluded
	case !sm.exclude.empty() && sm.exclude.any(o):
		return SkipExcluded
	}
	return ""
}

// all reports whether every set filter matches (include).
func (f filters) all(o *ical.Occurrence) bool {
	return (f.summary == nil || f.summary.MatchString(o.Summary)) &&
		(f.location == nil || f.location.MatchString(o.Location)) &&
		(f.description == nil || f.description.MatchString(o.Description))
}

// any reports whether some set filter matches (exclude).
func (f filters) any(o *ical.Occurrence) bool {
	return (f.summary != nil && f.summary.MatchString(o.Summary)) ||
		(f.location != nil && f.location.MatchString(o.Location)) ||
		(f.description != nil && f.description.MatchString(o.Description))
}

// admits reports whether the source, matching addresses in its events
// (match: attendees or organizer), may name addr: with domains, only an
// address in one of them; without, any address (the directory then finds
// whether Entra knows it).
func (sm *sourceMatcher) admits(addr string) bool {
	if sm.src.Match == "" || addr == "" {
		return false
	}
	if len(sm.domains) == 0 {
		return true
	}
	at := strings.LastIndexByte(addr, '@')
	return at >= 0 && slices.Contains(sm.domains, strings.ToLower(addr[at+1:]))
}

// userFor maps a calendar address the source admits to a configured user:
// through the top-level users: map, else the address itself (commonly the
// UPN).
func (m *Matcher) userFor(sm *sourceMatcher, addr string) (string, bool) {
	if !sm.admits(addr) {
		return "", false
	}
	if u, ok := m.targets[mailaddr.Normalize(addr)]; ok {
		return u, true
	}
	return mailaddr.Normalize(addr), true
}

// OnlyConfigured reports whether the named source may make busy only the
// people the configuration names (only_configured): a person it matches is
// acted on only when they resolve to one of config.ConfiguredUsers.
func (m *Matcher) OnlyConfigured(source string) bool {
	sm := m.sources[source]
	return sm != nil && sm.onlyConfigured
}

// Limited reports whether some source is OnlyConfigured.
func (m *Matcher) Limited() bool {
	for _, sm := range m.order {
		if sm.onlyConfigured {
			return true
		}
	}
	return false
}

// Covers reports whether the configuration covers the address: a fixed
// user, either side of a users: entry, or an address that a source
// matching attendees or organizers admits (in its domains, or any address
// when it has none) and that is not limited to the people the
// configuration names (only_configured). It is the one rule for
// calendars and live signals alike: a participant of a meeting whose
// occurrence could make them busy is one a signal may affect.
func (m *Matcher) Covers(address string) bool {
	a := mailaddr.Normalize(address)
	if a == "" {
		return false
	}
	if _, ok := m.users[a]; ok || m.named[a] {
		return true
	}
	for _, sm := range m.order {
		if !sm.onlyConfigured && sm.admits(a) {
			return true
		}
	}
	return false
}

// partstatOf finds the PARTSTAT of a fixed user among the attendees, so that
// a fixed user who declined is skipped too.
func (m *Matcher) partstatOf(o *ical.Occurrence, user string) string {
	for _, a := range o.Attendees {
		if strings.EqualFold(a.Email, user) {
			return a.PartStat
		}
		if u, ok := m.users[mailaddr.Normalize(a.Email)]; ok && strings.EqualFold(u, user) {
			return a.PartStat
		}
	}
	return ""
}
