package engine

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// FeedMetrics are the per-source series, calpresence_feed_*{source}: a
// Prometheus collector that keeps a few numbers a source and makes the
// series when scraped. A GaugeVec or CounterVec keeps each series as an
// object with its label pairs and a map entry, ~300 bytes; at seven
// series a source, 100,000 sources took 230 MB that way.
type FeedMetrics struct {
	fetches, occurrences, lastSuccess, healthy, dropped, stale *prometheus.Desc

	mu      sync.Mutex
	sources map[string]*sourceSeries
}

// fetchResults are the values of calpresence_feed_fetches_total's result
// label.
var fetchResults = [...]string{"ok", "not_modified", "error", "parse_error", "over_limit"}

// The per-source gauges, an index into sourceSeries.gauges.
const (
	gaugeOccurrences = iota
	gaugeLastSuccess
	gaugeHealthy
	gaugeDropped
	gaugeStale
	numGauges
)

// sourceSeries holds one source's series. A series exists (is exported)
// from its first use, as a Vec's does from WithLabelValues: exists has a
// bit for each, the gauges' first, then the fetch results'.
type sourceSeries struct {
	exists  atomic.Uint32
	gauges  [numGauges]atomic.Uint64 // float64 bits
	fetches [len(fetchResults)]atomic.Uint64
}

func newFeedMetrics() *FeedMetrics {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append([]string{"source"}, labels...), nil)
	}
	return &FeedMetrics{
		fetches:     desc("calpresence_feed_fetches_total", "Feed fetches by source and result.", "result"),
		occurrences: desc("calpresence_feed_occurrences", "Occurrences in the expansion window, by source."),
		lastSuccess: desc("calpresence_feed_last_success_timestamp_seconds", "Unix time of the last successful read, by source."),
		healthy:     desc("calpresence_feed_healthy", "1 when the last read of the source succeeded."),
		dropped: desc("calpresence_feed_dropped_events",
			"Events, or parts of them (overrides, rules, dates, ends, occurrences past the cap), that the last good read of the source could not use, by source."),
		stale:   desc("calpresence_feed_stale", "1 when the source's last good copy is older than max_copy_age (its later events no longer count)."),
		sources: make(map[string]*sourceSeries),
	}
}

// source returns the named source's series, created on first use.
func (fm *FeedMetrics) source(name string) *sourceSeries {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	s := fm.sources[name]
	if s == nil {
		s = new(sourceSeries)
		fm.sources[name] = s
	}
	return s
}

// forget drops the series of a source no longer configured.
func (fm *FeedMetrics) forget(name string) {
	fm.mu.Lock()
	delete(fm.sources, name)
	fm.mu.Unlock()
}

// resetGauges drops every source's gauges; the counters keep counting.
func (fm *FeedMetrics) resetGauges() {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	for _, s := range fm.sources {
		s.exists.And(^uint32(1<<numGauges - 1))
		for i := range s.gauges {
			s.gauges[i].Store(0)
		}
	}
}

// Describe implements prometheus.Collector.
func (fm *FeedMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- fm.fetches
	for _, d := range fm.descs() {
		ch <- d
	}
}

// descs are the gauges' descriptors, by index.
func (fm *FeedMetrics) descs() [numGauges]*prometheus.Desc {
	return [numGauges]*prometheus.Desc{fm.occurrences, fm.lastSuccess, fm.healthy, fm.dropped, fm.stale}
}

// Collect implements prometheus.Collector.
func (fm *FeedMetrics) Collect(ch chan<- prometheus.Metric) {
	fm.mu.Lock()
	names := make([]string, 0, len(fm.sources))
	for name := range fm.sources {
		names = append(names, name)
	}
	series := make([]*sourceSeries, len(names))
	for i, name := range names {
		series[i] = fm.sources[name]
	}
	fm.mu.Unlock()
	descs := fm.descs()
	for i, s := range series {
		exists := s.exists.Load()
		for g, d := range descs {
			if exists&(1<<g) != 0 {
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, math.Float64frombits(s.gauges[g].Load()), names[i])
			}
		}
		for r, result := range fetchResults {
			if exists&(1<<(numGauges+r)) != 0 {
				ch <- prometheus.MustNewConstMetric(fm.fetches, prometheus.CounterValue, float64(s.fetches[r].Load()), names[i], result)
			}
		}
	}
}

// set sets gauge g.
func (s *sourceSeries) set(g int, v float64) {
	s.gauges[g].Store(math.Float64bits(v))
	s.exists.Or(1 << g)
}

// touch makes gauges gs exist, at 0 when they did not.
func (s *sourceSeries) touch(gs ...int) {
	for _, g := range gs {
		s.exists.Or(1 << g)
	}
}

// touchFetched makes the counter of result exist, at 0 when it did not.
func (s *sourceSeries) touchFetched(result string) {
	if r := slices.Index(fetchResults[:], result); r >= 0 {
		s.exists.Or(1 << (numGauges + r))
	}
}

// fetched counts a fetch of the source with result (one of fetchResults).
func (s *sourceSeries) fetched(result string) {
	r := slices.Index(fetchResults[:], result)
	if r < 0 {
		panic("engine: unknown fetch result " + result)
	}
	s.fetches[r].Add(1)
	s.exists.Or(1 << (numGauges + r))
}
