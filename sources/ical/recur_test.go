package ical

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestWeeklyOrDailyMatchesRRule holds the rules expandRule steps through
// itself (weeklyOrDaily) to what rrule-go gives for them: the same
// instances, the same cap, the same error, over random WEEKLY and DAILY
// rules, starts, ends and windows, and over rules it leaves to rrule-go.
func TestWeeklyOrDailyMatchesRRule(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	days := []string{"MO", "TU", "WE", "TH", "FR", "SA", "SU"}
	n := 5000
	if testing.Short() {
		n = 1000
	}
	fast := 0
	for range n {
		var parts []string
		freq := []string{"WEEKLY", "DAILY", "WEEKLY", "DAILY", "MONTHLY"}[r.IntN(5)]
		parts = append(parts, "FREQ="+freq)
		if r.IntN(2) == 0 {
			parts = append(parts, fmt.Sprintf("INTERVAL=%d", 1+r.IntN(5)))
		}
		if k := r.IntN(4); k > 0 {
			var by []string
			for _, d := range r.Perm(7)[:r.IntN(7)+1] {
				ord := ""
				if k == 3 && r.IntN(3) == 0 {
					ord = []string{"1", "2", "-1", "+3"}[r.IntN(4)]
				}
				by = append(by, ord+days[d])
			}
			parts = append(parts, "BYDAY="+strings.Join(by, ","))
		}
		if r.IntN(3) == 0 {
			parts = append(parts, "WKST="+days[r.IntN(7)])
		}
		start := time.Date(1995+r.IntN(35), time.Month(1+r.IntN(12)), 1+r.IntN(31), r.IntN(24), 15*r.IntN(4), 30*r.IntN(2), 0, time.UTC)
		switch r.IntN(6) {
		case 0:
			parts = append(parts, fmt.Sprintf("COUNT=%d", 1+r.IntN(60)))
		case 1:
			parts = append(parts, "UNTIL="+start.AddDate(0, 0, r.IntN(400)).Add(time.Duration(r.IntN(48))*time.Hour).Format("20060102T150405Z"))
		case 2:
			parts = append(parts, "UNTIL="+start.AddDate(0, 0, r.IntN(400)).Format("20060102"))
		}
		switch r.IntN(8) {
		case 0:
			parts = append(parts, fmt.Sprintf("BYHOUR=%d", start.Hour()))
		case 1:
			parts = append(parts, fmt.Sprintf("BYHOUR=%d,%d", r.IntN(24), r.IntN(24)))
		case 2:
			parts = append(parts, "BYMONTH=3,4")
		}
		rule := strings.Join(parts, ";")
		spec, err := parseRRule(rule)
		if err != nil {
			continue
		}
		var until civil
		if spec.hasUntil {
			until = spec.until.wall
			if spec.until.kind == kindDate {
				until = until.Add(24*time.Hour - time.Second)
			}
		}
		lo := start.AddDate(0, 0, r.IntN(800)-100).Add(time.Duration(r.IntN(24)) * time.Hour)
		hi := lo.Add(time.Duration(1+r.IntN(24*60)) * time.Hour)
		w := ruleWindow{lo: lo, hi: hi, from: lo.Add(2 * time.Hour), to: hi.Add(-2 * time.Hour), limit: []int{1, 3, 1000}[r.IntN(3)]}
		got, gotCapped, gotErr := expandRuleWith(spec, start, until, w, true)
		want, wantCapped, wantErr := expandRuleWith(spec, start, until, w, false)
		if !slices.EqualFunc(got, want, civil.Equal) || gotCapped != wantCapped || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("expandRule(%q from %v, until %v, window %v..%v) = %v, %v, %v; rrule-go gives %v, %v, %v",
				rule, start, until, lo, hi, got, gotCapped, gotErr, want, wantCapped, wantErr)
		}
		var simple weeklyOrDaily
		if simple.init(spec.opt, start, start, hi, 0) && len(want) > 0 {
			fast++
		}
	}
	t.Logf("%d of %d rules with instances went the fast way", fast, n)
	if fast < n/10 {
		t.Errorf("only %d of %d rules with instances went the fast way; want more for the comparison to mean anything", fast, n)
	}
}
