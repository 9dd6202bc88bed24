package engine

import (
	"testing"

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
