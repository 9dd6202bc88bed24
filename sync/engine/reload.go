package engine

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/plan"
)

// ReloadReport says what a reload changed. Source lists are sorted.
type ReloadReport struct {
	Added     []string `json:"added,omitempty"`
	Removed   []string `json:"removed,omitempty"`
	Changed   []string `json:"changed,omitempty"`
	Unchanged int      `json:"unchanged"`
	// NeedsRestart are the keys that changed but are read only at start
	// (config.NeedsRestart): they are not applied until a restart.
	NeedsRestart []string `json:"needs_restart,omitempty"`
}

// ReloadStatus is the outcome of a reload, for /readyz and the status
// page: when, and either the error that refused it or what it changed.
type ReloadStatus struct {
	At    time.Time `json:"at"`
	Error string    `json:"error,omitempty"`
	ReloadReport
}

// errNotRunning: Reload was asked of an engine whose Run has returned.
var errNotRunning = errors.New("the engine has stopped")

type reloadRequest struct {
	base  *config.Config // the operator's
	why   string         // logged: "configuration reloaded", "own feeds changed"
	reply chan reloadReply
}

type reloadReply struct {
	report ReloadReport
	err    error
}

// Reload puts cfg in force without a restart, between two reconciles (it
// is handed to Run's loop):
//
//   - a source added is read at once; until it has been, it holds back
//     nobody's clear (no one can be busy because of it yet, and a new
//     feed that never answers must not keep everyone busy);
//   - a source removed is dropped, with its stored copy: what it made
//     people busy for ends through the reconcile that follows at once,
//     with the reason "early-end:source-removed";
//   - a source changed (URL, headers, match rules, presence, lead, grace,
//     poll interval, timezone, or a setting of how every feed is expanded)
//     is read again at once, in full; while that read is pending its last
//     good copy stays in force if its URL is the same, else nobody it
//     concerns is cleared until it has been read;
//   - an unchanged source keeps its copy, validators and poll schedule;
//   - presence, users and schedule settings apply at that reconcile.
//
// People whose spans the change does not touch see no Graph call. The
// keys config.NeedsRestart names are not applied (the report lists them).
// cfg must have passed Validate (config.Load does); a configuration the
// engine still cannot use is refused with an error, and the one in force
// stays. An engine whose Run was never called (the one-off commands)
// applies the reload at once.
func (e *Engine) Reload(ctx context.Context, cfg *config.Config) (ReloadReport, error) {
	if _, err := plan.NewMatcher(e.own.merge(cfg)); err != nil {
		return ReloadReport{}, err
	}
	return e.reload(ctx, cfg, "configuration reloaded")
}

// reload puts base, with people's own feeds, in force (Reload), logging
// why.
func (e *Engine) reload(ctx context.Context, base *config.Config, why string) (ReloadReport, error) {
	e.mu.Lock()
	running := e.running
	e.mu.Unlock()
	if !running {
		report, _, err := e.applyReload(ctx, base, why)
		return report, err
	}
	req := reloadRequest{base: base, why: why, reply: make(chan reloadReply, 1)}
	select {
	case e.reloads <- req:
	case <-e.stopped:
		return ReloadReport{}, errNotRunning
	case <-ctx.Done():
		return ReloadReport{}, ctx.Err()
	}
	r := <-req.reply
	return r.report, r.err
}

// applyReload puts base with the own feeds in force (Reload says how) and
// returns what changed with the sources to read now. The own feeds are
// merged here, under reconcileMu, so that of two reloads the later one
// has the latest.
func (e *Engine) applyReload(ctx context.Context, base *config.Config, why string) (ReloadReport, []string, error) {
	cfg := e.own.merge(base)
	m, err := plan.NewMatcher(cfg)
	if err != nil {
		return ReloadReport{}, nil, err
	}
	e.reconcileMu.Lock()
	defer e.reconcileMu.Unlock()
	old := e.conf.Load()
	report := ReloadReport{NeedsRestart: config.NeedsRestart(e.startCfg, base)}
	report.Added, report.Removed, report.Changed, report.Unchanged = e.feeds.reload(cfg, m)
	removed := maps.Clone(old.removed)
	if removed == nil {
		removed = make(map[string]bool)
	}
	for _, name := range report.Removed {
		removed[name] = true
	}
	for _, name := range report.Added {
		delete(removed, name)
	}
	e.conf.Store(newSettings(base, cfg, m, old.gen+1, removed))
	for _, u := range cfg.ConfiguredUsers() {
		e.dir.Lookup(u) // new people are looked up off the boundaries' path
	}
	if len(report.Removed) > 0 {
		e.feeds.pruneStored(ctx)
	}
	e.log.Info(why, "added", len(report.Added), "removed", len(report.Removed),
		"changed", len(report.Changed), "unchanged", report.Unchanged,
		"added_sources", report.Added, "removed_sources", report.Removed, "changed_sources", report.Changed)
	if len(report.NeedsRestart) > 0 {
		e.log.Warn("configuration changes not applied until a restart", "keys", report.NeedsRestart)
	}
	return report, append(slices.Clone(report.Added), report.Changed...), nil
}

// reload replaces the sources with cfg's (Engine.Reload says how) and
// returns what changed.
func (fs *feedSet) reload(cfg *config.Config, m *plan.Matcher) (added, removed, changed []string, unchanged int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	old := fs.cfg
	oldIndex := make(map[string]int, len(old.Sources))
	for i, s := range old.Sources {
		oldIndex[s.Name] = i
	}
	everyFeed := expansionChanged(old, cfg)
	feeds := make(map[string]*feed, len(cfg.Sources))
	for i := range cfg.Sources {
		name := cfg.Sources[i].Name
		f, ok := fs.feeds[name]
		if !ok {
			nf := fs.newFeed(cfg, i)
			nf.added = true
			feeds[name] = nf
			fs.added = append(fs.added, nf)
			added = append(added, name)
			continue
		}
		if !everyFeed && sameSource(old, oldIndex[name], cfg, i) {
			feeds[name] = f
			unchanged++
			continue
		}
		nf := fs.newFeed(cfg, i)
		if f.src.URL == nf.src.URL {
			// The copy in force stays until the new read: expanded again
			// (from the feed cache) even should that read fail.
			nf.loaded, nf.healthy, nf.lastErr, nf.lastOK = f.loaded, f.healthy, f.lastErr, f.lastOK
			nf.validators, nf.hash, nf.storedHash = f.validators, f.hash, f.storedHash
			nf.occs, nf.digest, nf.matches, nf.warnings, nf.dropped = f.occs, f.digest, f.matches, f.warnings, f.dropped
			nf.failingSince, nf.lastWarn, nf.staleNoted = f.failingSince, f.lastWarn, f.staleNoted
			nf.rematch = true
		}
		feeds[name] = nf
		fs.added = append(fs.added, nf)
		changed = append(changed, name)
	}
	for name := range fs.feeds {
		if _, ok := feeds[name]; !ok {
			removed = append(removed, name)
			fs.forgetMetrics(name)
		}
	}
	fs.feeds, fs.cfg, fs.matcher = feeds, cfg, m
	fs.healthGen++
	fs.snap.valid = false
	select {
	case fs.addedKick <- struct{}{}:
	default:
	}
	slices.Sort(added)
	slices.Sort(removed)
	slices.Sort(changed)
	return added, removed, changed, unchanged
}

// forgetMetrics drops the series of a source no longer configured.
func (fs *feedSet) forgetMetrics(name string) {
	fs.metrics.Feeds.forget(name)
}

// feedPruner drops the stored copies of sources no longer configured;
// Every state.Store implements it.
type feedPruner interface {
	DeleteFeedsExcept(ctx context.Context, sources []string) error
}

// pruneStored drops the stored copies of the sources no longer
// configured.
func (fs *feedSet) pruneStored(ctx context.Context) {
	p, ok := fs.cache.(feedPruner)
	if !ok {
		return
	}
	if err := p.DeleteFeedsExcept(ctx, fs.names()); err != nil {
		fs.log.Warn("drop stored copies of removed sources", "err", err)
	}
}

// expansionChanged reports whether a setting of how every feed is
// expanded or matched changed: the window, the caps, max_copy_age, the
// default zone, or the users: map (which attendees and organizers match).
func expansionChanged(a, b *config.Config) bool {
	x, y := a.Schedule, b.Schedule
	return x.Horizon != y.Horizon || x.MaxOccurrences != y.MaxOccurrences || x.MaxCopyAge != y.MaxCopyAge ||
		x.MaxFeedEvents != y.MaxFeedEvents || x.MaxFeedOccurrences != y.MaxFeedOccurrences ||
		x.MaxFeedPeople != y.MaxFeedPeople || x.Timezone != y.Timezone ||
		!reflect.DeepEqual(a.UserIndex(), b.UserIndex())
}

// sameSource reports whether source i of a and source j of b are read,
// expanded and matched alike: the same source settings, and the same
// settings they inherit (presence, poll interval).
func sameSource(a *config.Config, i int, b *config.Config, j int) bool {
	p, q := a.SourcePresence(i), b.SourcePresence(j)
	// merge_gap, max_lease and lead_burst are not the matches' but the
	// reconcile's: they apply there.
	return reflect.DeepEqual(a.Sources[i], b.Sources[j]) &&
		p.Availability == q.Availability && p.Activity == q.Activity && p.Lead == q.Lead && p.Grace == q.Grace &&
		p.OnlyConfigured == q.OnlyConfigured && a.SourcePollInterval(i) == b.SourcePollInterval(j)
}

var _ feedPruner = state.Store(nil)
