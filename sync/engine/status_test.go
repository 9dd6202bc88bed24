package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/sync/plan"
)

// TestStatus: the snapshot the status page shows names who is busy and
// why, what comes next, who is held back and why, the failing source and
// the Graph errors, each person by UPN.
func TestStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		const bob, carol, dave = "bob@contoso.com", "carol@contoso.com", "dave@contoso.com"
		graph := &testutil.Presence{Begin: begin, Fail: func(op, user string) error {
			switch {
			case op == "set" && user == bob:
				return &presence.Error{Op: "setPresence", User: user, Status: 429, Code: "TooManyRequests", Kind: presence.Retry, RetryAfter: 10 * time.Minute}
			case op == "set" && user == carol:
				return &presence.Error{Op: "setPresence", User: user, Status: 403, Code: "Forbidden", Message: "no Teams license", Kind: presence.Permanent}
			case op == "set" && user == dave:
				return &presence.Error{Op: "setPresence", User: user, Status: 404, Kind: presence.NotFound}
			}
			return nil
		}}
		cfg := testConfig()
		cfg.Sources[0].Users = []string{alice, bob, carol, dave}
		cfg.Sources = append(cfg.Sources, config.Source{Name: "google", URL: "https://calendar.example/ical/basic.ics?token=g00gle", Users: []string{alice}, PollInterval: time.Minute})
		h := &harness{t: t, feeds: &fakeFeeds{bodies: map[string]string{
			"zoom": ics(begin, "Weekly-sync", 10*time.Minute, 30*time.Minute, "Retro", 2*time.Hour, 30*time.Minute),
		}, errs: map[string]error{"google": errors.New("HTTP 503 from https://calendar.example/ical/basic.ics?<redacted>")}},
			graph: graph, store: NewMemStore(), begin: begin, metrics: NewMetrics(nil)}
		h.start(cfg)
		h.until(15 * time.Minute)

		st := h.eng.Status(time.Now())
		if !st.Ready {
			t.Errorf("Ready = false after the first pass")
		}
		if len(st.Sources) != 2 || st.Sources[0].Name != "google" || st.Sources[0].Healthy || !strings.Contains(st.Sources[0].LastError, "HTTP 503") ||
			strings.Contains(st.Sources[0].URL, "g00gle") || st.Sources[1].Name != "zoom" || !st.Sources[1].Healthy || st.Sources[1].Occurrences != 2 {
			t.Errorf("Sources = %+v; want google failing (URL redacted) and zoom healthy with 2 occurrences", st.Sources)
		}

		var busy []string
		for _, b := range st.Busy {
			var ms []string
			for _, m := range b.Meetings {
				ms = append(ms, m.Source+"/"+m.Summary)
			}
			busy = append(busy, fmt.Sprintf("%s %s until %v: %s", b.User, b.Activity, b.Until.Sub(begin), strings.Join(ms, ",")))
		}
		for _, want := range []string{
			"alice@contoso.com InAConferenceCall until 40m0s: zoom/Weekly-sync",
			"bob@contoso.com InAConferenceCall until 40m0s: zoom/Weekly-sync",
			"carol@contoso.com InAConferenceCall until 40m0s: zoom/Weekly-sync",
		} {
			if !slices.Contains(busy, want) {
				t.Errorf("Busy = %q; want %q among them", busy, want)
			}
		}

		if len(st.Next) == 0 || st.Next[0].Busy || st.Next[0].At.Sub(begin) != 40*time.Minute || st.Next[0].Meeting != "Weekly-sync" {
			t.Fatalf("Next = %+v; want the ends at 40m first", st.Next)
		}
		var starts []string
		for i, n := range st.Next {
			if i > 0 && n.At.Before(st.Next[i-1].At) {
				t.Errorf("Next not soonest first: %+v", st.Next)
			}
			if n.Busy {
				starts = append(starts, fmt.Sprintf("%v %s %s", n.At.Sub(begin), n.User, n.Meeting))
			}
		}
		if !slices.Contains(starts, "2h0m0s alice@contoso.com Retro") {
			t.Errorf("coming starts = %q; want alice busy at 2h for Retro", starts)
		}

		held := map[string]HeldPerson{}
		for _, hp := range st.Held {
			held[hp.User] = hp
		}
		if hp := held[bob]; hp.Kind != HoldThrottle || !strings.Contains(hp.Reason, "429") || hp.Tries == 0 {
			t.Errorf("held bob = %+v; want throttled with the 429", hp)
		}
		if hp := held[carol]; hp.Kind != HoldRefused || !strings.Contains(hp.Reason, "no Teams license") || hp.Until.Sub(begin) != 40*time.Minute {
			t.Errorf("held carol = %+v; want refused with Graph's reason until the span ends", hp)
		}
		if hp, ok := held[dave]; !ok || hp.Kind != HoldUnknown {
			t.Errorf("held dave = %+v; want unknown", hp)
		}
		if _, ok := held[alice]; ok {
			t.Errorf("alice held: %+v; want not", held[alice])
		}
		heldGauge := func() map[string]float64 {
			out := map[string]float64{}
			for _, k := range heldKinds {
				out[k] = gaugeValue(h.metrics.PeopleHeld.WithLabelValues(k))
			}
			return out
		}
		if diff := cmp.Diff(map[string]float64{HoldUnknown: 1, HoldThrottle: 1, HoldRetry: 0, HoldRefused: 1, HoldOperator: 0}, heldGauge()); diff != "" {
			t.Errorf("calpresence_people_held (-want +got):\n%s", diff)
		}

		codes := map[string]int{}
		for i, g := range st.GraphErrors {
			if i > 0 && g.At.After(st.GraphErrors[i-1].At) {
				t.Errorf("GraphErrors not newest first: %+v", st.GraphErrors)
			}
			codes[g.User] = g.Status
			if g.Op != plan.OpSet {
				t.Errorf("graph error %+v; want only failed sets", g)
			}
		}
		if codes[bob] != 429 || codes[carol] != 403 || codes[dave] != 404 || len(codes) != 3 {
			t.Errorf("GraphErrors by user = %v; want bob 429, carol 403, dave 404", codes)
		}

		// An operator's clear holds alice back until her span ends.
		if _, err := h.eng.Clear(context.Background(), []string{alice}, false); err != nil {
			t.Fatal(err)
		}
		for _, hp := range h.eng.Status(time.Now()).Held {
			if hp.User == alice && (hp.Kind != HoldOperator || hp.Until.Sub(begin) != 40*time.Minute) {
				t.Errorf("held alice after clear = %+v; want operator until 40m", hp)
			}
		}
		h.until(17 * time.Minute) // a pass since the clear
		if got := heldGauge()[HoldOperator]; got != 1 {
			t.Errorf("calpresence_people_held{kind=operator} = %v after the clear; want 1", got)
		}
		for _, c := range []struct {
			action, reason string
			want           float64
		}{{"set", "start", 1}, {"clear", "operator", 1}, {"clear", "end", 0}} {
			if got := counterValue(h.metrics.PresenceChanges.WithLabelValues(c.action, c.reason)); got != c.want {
				t.Errorf("calpresence_presence_changes_total{action=%q,reason=%q} = %v; want %v (only alice's set went through)", c.action, c.reason, got, c.want)
			}
		}

		// After the meeting: nobody busy, the next change is the Retro.
		h.until(50 * time.Minute)
		st = h.eng.Status(time.Now())
		if len(st.Busy) != 0 {
			t.Errorf("Busy at 50m = %+v; want nobody", st.Busy)
		}
		if len(st.Next) == 0 || !st.Next[0].Busy || st.Next[0].At.Sub(begin) != 2*time.Hour {
			t.Errorf("Next at 50m = %+v; want the Retro starts first", st.Next)
		}
		h.stop()
	})
}

func TestRecentErrorsKeepsTheLast(t *testing.T) {
	var r recentErrors
	if got := r.list(); len(got) != 0 {
		t.Fatalf("empty list() = %v", got)
	}
	base := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	r.add(plan.Action{Op: plan.OpSet, User: "x"}, nil, base) // a success: not kept
	r.add(plan.Action{Op: plan.OpSet, User: "x"}, context.Canceled, base)
	for i := range recentErrorsKept + 5 {
		r.add(plan.Action{Op: plan.OpClear, User: fmt.Sprint(i)}, &presence.Error{Status: 500 + i}, base.Add(time.Duration(i)*time.Second))
	}
	got := r.list()
	if len(got) != recentErrorsKept || got[0].Status != 500+recentErrorsKept+4 || got[len(got)-1].Status != 505 {
		t.Errorf("list() = %d entries, newest %d, oldest %d; want %d, %d, 505", len(got), got[0].Status, got[len(got)-1].Status, recentErrorsKept, 500+recentErrorsKept+4)
	}
}
