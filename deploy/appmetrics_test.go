package deploy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/signals"
)

// registerAppMetrics registers on reg the metrics the daemon has besides the
// engine's and the leader election's: the webhook receiver's
// (signals.NewMetrics) and the configuration reloads'. app.New registers
// the latter itself; they are built here as it builds them, since importing
// app would pull in the Graph SDK.
func registerAppMetrics(reg prometheus.Registerer) {
	signals.NewMetrics(reg)
	reg.MustRegister(
		prometheus.NewCounterVec(prometheus.CounterOpts{Name: "calpresence_config_reloads_total", Help: "Reloads by result."}, []string{"result"}),
		prometheus.NewGauge(prometheus.GaugeOpts{Name: "calpresence_config_last_reload_successful", Help: "1 unless the last reload was refused."}),
	)
}
