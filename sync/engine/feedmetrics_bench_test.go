package engine

import (
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// BenchmarkScrapeFeedMetrics is what a Prometheus scrape of /metrics
// costs for the per-source series (calpresence_feed_*{source}, six a
// source that has been read: gathered and encoded as text by the handler
// /metrics serves) at 10,000 and 100,000 sources.
func BenchmarkScrapeFeedMetrics(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("sources=%d", n), func(b *testing.B) {
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			for i := range n {
				s := m.Feeds.source(fmt.Sprintf("feed-%06d", i))
				s.set(gaugeOccurrences, 22)
				s.set(gaugeHealthy, 1)
				s.set(gaugeLastSuccess, 1.7e9)
				s.fetched("ok")
				s.fetched("not_modified")
			}
			h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
				if w.Code != 200 {
					b.Fatalf("/metrics = %d", w.Code)
				}
			}
		})
	}
}
