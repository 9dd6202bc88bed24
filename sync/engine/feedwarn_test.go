package engine

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// droppedLogs returns the "source warning/more" of every Warn record about
// dropped calendar data.
func (h *harness) droppedLogs() []string {
	var out []string
	for _, line := range strings.Split(h.logs.String(), "\n") {
		var rec struct {
			Level, Msg, Source, Warning string
			More                        int
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "calendar data dropped" {
			continue
		}
		if rec.Level != "WARN" {
			h.t.Errorf("%q logged at %s; want WARN", line, rec.Level)
		}
		if rec.More > 0 {
			out = append(out, fmt.Sprintf("%s %d more", rec.Source, rec.More))
			continue
		}
		out = append(out, rec.Source+" "+rec.Warning)
	}
	return out
}

func droppedGauge(h *harness, source string) float64 {
	return feedValue(h.metrics, "calpresence_feed_dropped_events", source)
}

// brokenEvent is a VEVENT whose DTSTART cannot be read.
func brokenEvent(uid string) string {
	return "BEGIN:VEVENT\r\nUID:" + uid + "\r\nDTSTART:2027XX01T100000Z\r\nDURATION:PT1H\r\nEND:VEVENT\r\n"
}

// withEvents inserts VEVENTs before a feed's END:VCALENDAR.
func withEvents(feed string, events ...string) string {
	return strings.Replace(feed, "END:VCALENDAR", strings.Join(events, "")+"END:VCALENDAR", 1)
}

// TestEngineReportsDroppedData: an event the feed loses is logged at Warn
// (once per change of the feed, not at every poll) and counted in
// calpresence_feed_dropped_events{source}; the feed's other events still
// count.
func TestEngineReportsDroppedData(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		good := ics(begin, "m", 10*time.Minute, 30*time.Minute)
		h := startHarness(t, testConfig(), withEvents(good, brokenEvent("broken-1")), nil, nil)
		h.until(5 * time.Minute) // five polls of an unchanged feed
		want := []string{`zoom line 13: UID "broken-1": VEVENT skipped: DTSTART: invalid value "2027XX01T100000Z"`}
		if got := h.droppedLogs(); !slices.Equal(got, want) {
			t.Errorf("dropped data logged %q; want %q", got, want)
		}
		if got := droppedGauge(h, "zoom"); got != 1 {
			t.Errorf("calpresence_feed_dropped_events{source=zoom} = %v; want 1", got)
		}

		// The feed changes, but not what it loses: nothing new is logged.
		h.feeds.set("zoom", withEvents(ics(begin, "m", 10*time.Minute, 40*time.Minute), brokenEvent("broken-1")))
		h.until(7 * time.Minute)
		if got := h.droppedLogs(); !slices.Equal(got, want) {
			t.Errorf("after a change that loses the same: logged %q; want %q", got, want)
		}

		// A second broken event: what the feed loses now is logged again.
		h.feeds.set("zoom", withEvents(good, brokenEvent("broken-1"), brokenEvent("broken-2")))
		h.until(9 * time.Minute)
		want = append(want, `zoom line 13: UID "broken-1": VEVENT skipped: DTSTART: invalid value "2027XX01T100000Z"`,
			`zoom line 18: UID "broken-2": VEVENT skipped: DTSTART: invalid value "2027XX01T100000Z"`)
		if got := h.droppedLogs(); !slices.Equal(got, want) {
			t.Errorf("after a second broken event: logged %q; want %q", got, want)
		}
		if got := droppedGauge(h, "zoom"); got != 2 {
			t.Errorf("calpresence_feed_dropped_events{source=zoom} = %v; want 2", got)
		}

		// Fixed: the gauge goes back to 0.
		h.feeds.set("zoom", good)
		h.until(11 * time.Minute)
		if got := droppedGauge(h, "zoom"); got != 0 {
			t.Errorf("calpresence_feed_dropped_events{source=zoom} after the fix = %v; want 0", got)
		}
		h.stop()
		// The good meeting was set all along.
		h.want("10m0s set alice@contoso.com InAConferenceCall 30m0s")
	})
}

// TestReportDroppedBounded: a feed whose every event is broken logs a
// sample and a count.
func TestReportDroppedBounded(t *testing.T) {
	h := &harness{t: t, metrics: NewMetrics(nil)}
	var dropped []string
	for i := range maxDroppedLogged + 5 {
		dropped = append(dropped, fmt.Sprintf("line %d: UID \"u%d\": VEVENT skipped: no DTSTART", i+1, i))
	}
	got := reportDropped(slog.New(slog.NewJSONHandler(&h.logs, nil)), h.metrics.Feeds.source("zoom"), "zoom", nil, dropped)
	if !slices.Equal(got, dropped) {
		t.Errorf("reportDropped returned %d entries; want the %d given", len(got), len(dropped))
	}
	lines := h.droppedLogs()
	if len(lines) != maxDroppedLogged+1 || lines[maxDroppedLogged] != "zoom 5 more" {
		t.Errorf("reportDropped(%d) logged %d lines ending %q; want %d ending \"zoom 5 more\"", len(dropped), len(lines), lines[len(lines)-1], maxDroppedLogged+1)
	}
	if got := droppedGauge(h, "zoom"); got != float64(len(dropped)) {
		t.Errorf("gauge = %v; want %d", got, len(dropped))
	}
}
