package engine

import (
	"encoding/json"
	"fmt"
	"io"
	"testing"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/state/mem"
)

// BenchmarkReadiness is /readyz's work (Readiness and its JSON) at 10,000
// and 100,000 sources, every one read: the plain answer the kubelet asks
// for every 5 s, and the verbose one that lists every source.
func BenchmarkReadiness(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		cfg := testConfig()
		cfg.Sources = make([]config.Source, n)
		feeds := &fakeFeeds{bodies: map[string]string{}, errs: map[string]error{}}
		for i := range cfg.Sources {
			cfg.Sources[i] = config.Source{Name: fmt.Sprintf("feed-%06d", i), URL: fmt.Sprintf("https://example.test/%d.ics", i),
				Users: []string{fmt.Sprintf("u%d@example.test", i)}}
			feeds.bodies[cfg.Sources[i].Name] = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nEND:VCALENDAR\r\n"
		}
		eng, err := New(b.Context(), Options{Config: cfg, Presence: &testutil.Presence{}, Store: mem.New(), Fetcher: feeds})
		if err != nil {
			b.Fatal(err)
		}
		if err := eng.FirstPass(b.Context()); err != nil {
			b.Fatal(err)
		}
		if r := eng.Readiness(false); r.SourceCounts.Loaded != n {
			b.Fatalf("%d of %d sources loaded", r.SourceCounts.Loaded, n)
		}
		for _, verbose := range []bool{false, true} {
			b.Run(fmt.Sprintf("sources=%d/verbose=%v", n, verbose), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := json.NewEncoder(io.Discard).Encode(eng.Readiness(verbose)); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
