package plan

import (
	"fmt"
	"testing"
	"time"

	"github.com/calpresence/calpresence/presence"
)

// BenchmarkSpans10k builds every person's spans from the matches of
// 10,000 feeds, one person each, 22 meetings in the horizon (the load
// tool's first pass: 220,000 matches): what a reconcile pays when the
// matches changed.
func BenchmarkSpans10k(b *testing.B) {
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	pair := presence.Pair{Availability: "Busy", Activity: "InAConferenceCall"}
	var matches []Match
	for u := range 10000 {
		user := fmt.Sprintf("user%05d@contoso.com", u)
		for i := range 22 {
			start := t0.Add(time.Duration(i*90+u%60) * time.Minute)
			occ := &Occurrence{UID: fmt.Sprintf("m%d-%d", u, i), Start: start, End: start.Add(30 * time.Minute)}
			matches = append(matches, Match{User: user, Occ: occ, Rule: &Rule{Source: fmt.Sprintf("feed%05d", u), Pair: pair}})
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		spans := Spans(matches, time.Minute, nil)
		if len(spans) != 10000 {
			b.Fatal(len(spans))
		}
	}
}
