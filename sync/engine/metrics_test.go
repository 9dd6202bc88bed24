package engine

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/policy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/calpresence/calpresence/sync/plan"
)

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// feedValue is the value of the per-source series name{source, result}
// (result only for calpresence_feed_fetches_total) as a scrape shows it;
// -1 when the scrape has no such series.
func feedValue(m *Metrics, name, source string, result ...string) float64 {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Feeds)
	families, err := reg.Gather()
	if err != nil {
		return -1
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, x := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range x.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["source"] != source || (len(result) > 0 && labels["result"] != result[0]) {
				continue
			}
			if c := x.GetCounter(); c != nil {
				return c.GetValue()
			}
			return x.GetGauge().GetValue()
		}
	}
	return -1
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}

// TestObserveRetryAfter: the Retry-After waits are labelled as the Graph
// requests are (set, clear), other operations by their Graph name.
func TestObserveRetryAfter(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.ObserveRetryAfter(policy.OpSetPresence, 30*time.Second)
	m.ObserveRetryAfter(policy.OpClearPresence, time.Second)
	m.ObserveRetryAfter(policy.OpReadPresences, 2*time.Second)
	got := map[string]float64{}
	for _, op := range []string{"set", "clear", "getPresencesByUserId", "setPresence"} {
		var d dto.Metric
		if err := m.GraphRetryAfter.WithLabelValues(op).(prometheus.Histogram).Write(&d); err != nil {
			t.Fatal(err)
		}
		got[op] = d.GetHistogram().GetSampleSum()
	}
	want := map[string]float64{"set": 30, "clear": 1, "getPresencesByUserId": 2, "setPresence": 0}
	if !maps.Equal(got, want) {
		t.Errorf("retry-after sums by op = %v; want %v", got, want)
	}
}

// TestChangeReason: the reason label keeps a small fixed set of values.
func TestChangeReason(t *testing.T) {
	for reason, want := range map[string]string{
		plan.ReasonStart: "start", plan.ReasonKeepAlive: "keep-alive", plan.ReasonEnd: "end", plan.ReasonOperator: "operator",
		plan.ReasonLost: "lost", plan.ReasonHoldEnded: "hold-ended",
		plan.ReasonEarlySignal: "early-end", plan.ReasonEarlyCancelled: "early-end", plan.ReasonSourceRemoved: "early-end",
		"": "other", "something new": "other",
	} {
		if got := changeReason(reason); got != want {
			t.Errorf("changeReason(%q) = %q; want %q", reason, got, want)
		}
	}
}

// TestFeedMetrics: the per-source series show as the Vecs they replace
// showed them: from their first use, the gauges gone after ResetGauges
// (the counters kept), all of a source gone once it is forgotten.
func TestFeedMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	zoom := m.Feeds.source("zoom")
	zoom.touchFetched("not_modified")
	zoom.touch(gaugeHealthy, gaugeLastSuccess, gaugeStale)
	zoom.fetched("ok")
	zoom.fetched("parse_error")
	zoom.fetched("parse_error")
	zoom.set(gaugeOccurrences, 12)
	zoom.set(gaugeHealthy, 1)
	zoom.set(gaugeLastSuccess, 1.8e9)
	m.Feeds.source("webex").set(gaugeDropped, 3)
	want := `
# HELP calpresence_feed_dropped_events Events, or parts of them (overrides, rules, dates, ends, occurrences past the cap), that the last good read of the source could not use, by source.
# TYPE calpresence_feed_dropped_events gauge
calpresence_feed_dropped_events{source="webex"} 3
# HELP calpresence_feed_fetches_total Feed fetches by source and result.
# TYPE calpresence_feed_fetches_total counter
calpresence_feed_fetches_total{result="not_modified",source="zoom"} 0
calpresence_feed_fetches_total{result="ok",source="zoom"} 1
calpresence_feed_fetches_total{result="parse_error",source="zoom"} 2
# HELP calpresence_feed_healthy 1 when the last read of the source succeeded.
# TYPE calpresence_feed_healthy gauge
calpresence_feed_healthy{source="zoom"} 1
# HELP calpresence_feed_last_success_timestamp_seconds Unix time of the last successful read, by source.
# TYPE calpresence_feed_last_success_timestamp_seconds gauge
calpresence_feed_last_success_timestamp_seconds{source="zoom"} 1.8e+09
# HELP calpresence_feed_occurrences Occurrences in the expansion window, by source.
# TYPE calpresence_feed_occurrences gauge
calpresence_feed_occurrences{source="zoom"} 12
# HELP calpresence_feed_stale 1 when the source's last good copy is older than max_copy_age (its later events no longer count).
# TYPE calpresence_feed_stale gauge
calpresence_feed_stale{source="zoom"} 0
`
	names := []string{"calpresence_feed_dropped_events", "calpresence_feed_fetches_total", "calpresence_feed_healthy",
		"calpresence_feed_last_success_timestamp_seconds", "calpresence_feed_occurrences", "calpresence_feed_stale"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	m.Feeds.forget("webex")
	m.ResetGauges()
	want = `
# HELP calpresence_feed_fetches_total Feed fetches by source and result.
# TYPE calpresence_feed_fetches_total counter
calpresence_feed_fetches_total{result="not_modified",source="zoom"} 0
calpresence_feed_fetches_total{result="ok",source="zoom"} 1
calpresence_feed_fetches_total{result="parse_error",source="zoom"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Errorf("after forget and ResetGauges: %v", err)
	}
	zoom.set(gaugeStale, 1)
	if got := feedValue(m, "calpresence_feed_stale", "zoom"); got != 1 {
		t.Errorf("calpresence_feed_stale{source=zoom} set after ResetGauges = %v; want 1", got)
	}
	if got := feedValue(m, "calpresence_feed_healthy", "zoom"); got != -1 {
		t.Errorf("calpresence_feed_healthy{source=zoom} after ResetGauges = %v; want no series", got)
	}
}
