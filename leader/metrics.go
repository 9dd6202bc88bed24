package leader

import "github.com/prometheus/client_golang/prometheus"

// Reasons a leader was fenced, the values of calpresence_leader_fenced_total's
// reason label.
var fenceReasons = []string{"check_failed", "lock_lost", "check_timeout", "lease_expired"}

type metrics struct {
	leader    prometheus.Gauge
	takeovers prometheus.Counter
	fenced    *prometheus.CounterVec
}

// newMetrics creates the metrics and registers them on reg (nil: not registered).
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "calpresence_leader", Help: "1 while this replica leads (holds the lock and may act), else 0.",
		}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "calpresence_leader_takeovers_total", Help: "Times this replica became the leader.",
		}),
		fenced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calpresence_leader_fenced_total",
			Help: "Times this replica lost the lead without giving it up, by reason: check_failed (the session failed), lock_lost (the session lives but no longer holds the lock, or is on another server backend than the one that took it), check_timeout (no answer within the lease), lease_expired (no check was made within the lease).",
		}, []string{"reason"}),
	}
	for _, r := range fenceReasons {
		m.fenced.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.leader, m.takeovers, m.fenced)
	}
	return m
}
