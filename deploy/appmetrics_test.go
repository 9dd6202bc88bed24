package deploy

import "github.com/prometheus/client_golang/prometheus"

// registerAppMetrics registers on reg the configuration reload's two
// metrics, which the runbook explains. app.New creates them, and it opens
// the state and the feeds (and importing app pulls in the Graph SDK), so
// they are built here as app.New builds them.
func registerAppMetrics(reg prometheus.Registerer) {
	reg.MustRegister(
		prometheus.NewCounterVec(prometheus.CounterOpts{Name: "calpresence_config_reloads_total", Help: "Reloads by result."}, []string{"result"}),
		prometheus.NewGauge(prometheus.GaugeOpts{Name: "calpresence_config_last_reload_successful", Help: "1 unless the last reload was refused."}),
	)
}
