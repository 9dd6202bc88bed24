package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/sources"
	"github.com/calpresence/calpresence/sources/ical"
	"github.com/calpresence/calpresence/sync/plan"
)

// PlanRequest selects what Plan shows.
type PlanRequest struct {
	From, To time.Time
	Sources  []string // all when empty
	Users    []string // all when empty
	// Dropped, when set, is called with each piece of calendar data a
	// source lost (ical.Result.Dropped: events skipped, rules or ends
	// ignored), sources in configuration order, once Plan has read them all.
	Dropped func(source, warning string)
}

// SourceError is a failure to read or parse one source.
type SourceError struct {
	Source string
	Err    error
}

func (e *SourceError) Error() string { return fmt.Sprintf("source %q: %v", e.Source, e.Err) }
func (e *SourceError) Unwrap() error { return e.Err }

// Plan reads the requested sources once and returns every busy match
// overlapping [From, To), sorted by start, then user. It makes no Graph
// call and writes no state. Sources that cannot be read or parsed are
// returned as one joined error, each naming its source; the matches of the
// others are still returned.
func Plan(ctx context.Context, cfg *config.Config, fetcher Fetcher, req PlanRequest) ([]plan.Match, error) {
	m, err := plan.NewMatcher(cfg)
	if err != nil {
		return nil, err
	}
	var selected []int
	for i := range cfg.Sources {
		if len(req.Sources) == 0 || slices.Contains(req.Sources, cfg.Sources[i].Name) {
			selected = append(selected, i)
		}
	}
	for _, n := range req.Sources {
		if _, ok := cfg.SourceByName(n); !ok {
			return nil, fmt.Errorf("unknown source %q", n)
		}
	}
	results := make([][]plan.Match, len(selected))
	dropped := make([][]string, len(selected))
	errs := make([]error, len(selected))
	parallel(len(selected), fetchConcurrency(cfg), func(i int) {
		idx := selected[i]
		results[i], dropped[i], errs[i] = planSource(ctx, m, fetcher, &cfg.Sources[idx], cfg.SourceLocation(idx), cfg.Schedule, req)
	})
	if req.Dropped != nil {
		for i, list := range dropped {
			for _, d := range list {
				req.Dropped(cfg.Sources[selected[i]].Name, d)
			}
		}
	}
	var out []plan.Match
	for _, r := range results {
		out = append(out, r...)
	}
	slices.SortStableFunc(out, func(a, b plan.Match) int {
		return cmp.Or(a.Occ.Start.Compare(b.Occ.Start), cmp.Compare(a.User, b.User),
			cmp.Compare(a.Source, b.Source), cmp.Compare(a.Occ.UID, b.Occ.UID))
	})
	return out, errors.Join(errs...)
}

// planSource returns the busy matches of one source and the calendar data
// it lost. A feed over max_feed_events is refused as the daemon refuses it;
// the occurrence and people caps, which depend on the window, are the
// daemon's alone (plan's window may be wide).
func planSource(ctx context.Context, m *plan.Matcher, fetcher Fetcher, src *config.Source, zone *time.Location, sc config.Schedule, req PlanRequest) ([]plan.Match, []string, error) {
	res, err := fetcher.Fetch(ctx, sources.FetchRequest{Name: src.Name, URL: src.URL, Headers: src.Headers, AllowPrivate: src.AllowPrivate, PublicOnly: src.PublicOnly})
	if err != nil {
		return nil, nil, &SourceError{src.Name, err}
	}
	out, err := ical.ParseExpand(res.Body, ical.ExpandOptions{From: req.From, To: req.To, Zone: zone,
		MaxPerEvent: sc.MaxOccurrences, MaxEvents: sc.MaxFeedEvents})
	if err != nil {
		return nil, nil, &SourceError{src.Name, fmt.Errorf("%s: %w", sources.RedactURL(src.URL), err)}
	}
	var busy []plan.Match
	for _, mt := range m.Match(src.Name, compact(out.Occurrences, m.UsesDescription(src.Name))) {
		if !mt.Busy() || (len(req.Users) > 0 && !slices.Contains(req.Users, mt.User)) {
			continue
		}
		if mt.Occ.Start.Before(req.To) && mt.Occ.End.After(req.From) {
			busy = append(busy, mt)
		}
	}
	return busy, out.Dropped, nil
}
