package engine

import (
	"maps"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/policy"
	"github.com/prometheus/client_golang/prometheus"
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
