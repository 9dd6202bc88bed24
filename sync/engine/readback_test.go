package engine

import (
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/presence"
)

func readbackConfig() *config.Config {
	cfg := testConfig()
	cfg.Graph.ReadbackInterval = time.Minute
	return cfg
}

var available = presence.Shown{Availability: presence.Available, Activity: presence.Available}

// A session Graph drops silently is set again at once, once.
func TestReadbackSetsLostSessionAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, readbackConfig(), ics(time.Now(), "m", 10*time.Minute, 30*time.Minute), nil, nil)
		h.until(15 * time.Minute)
		h.graph.Lose(alice)
		// A re-set that showed: a later loss is Graph's again.
		h.until(25 * time.Minute)
		h.graph.Lose(alice)
		h.until(35 * time.Minute)
		h.stop()
		h.want(
			"10m0s set alice@contoso.com InAConferenceCall 30m0s",
			"15m2s set alice@contoso.com InAConferenceCall 24m58s",
			"25m4s set alice@contoso.com InAConferenceCall 14m56s",
		)
		if got, want := strings.Join(h.reasons(), ", "), "set start, set lost, set lost"; got != want {
			t.Errorf("reasons = %s; want %s", got, want)
		}
		if got := promtest.ToFloat64(h.metrics.ReadbackReasserts); got != 2 {
			t.Errorf("calpresence_readback_reasserts_total = %v; want 2", got)
		}
		if got := promtest.ToFloat64(h.metrics.ReadbackPeople.WithLabelValues(ReadbackShown)); got != 1 {
			t.Errorf(`calpresence_readback_people{result="shown"} = %v; want 1`, got)
		}
		if n := strings.Count(h.logs.String(), "Graph lost it; setting it again"); n != 2 {
			t.Errorf("%d log lines for the re-sets; want 2", n)
		}
	})
}

// A person who sets their own status in Teams gets one re-set, then is
// left alone for the rest of the span, across a restart too, and is set
// again at their next span.
func TestReadbackLeavesOwnStatusAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var preferred atomic.Bool
		h := startHarness(t, readbackConfig(), ics(time.Now(), "m", 10*time.Minute, 30*time.Minute, "n", time.Hour, 10*time.Minute), nil, nil)
		busyShown := presence.Shown{Availability: presence.Busy, Activity: presence.ActivityInAConferenceCall}
		h.graph.Locked(func() {
			h.graph.Shows = func(string) (presence.Shown, bool, error) {
				if preferred.Load() {
					return available, true, nil
				}
				return busyShown, true, nil
			}
		})
		h.until(15 * time.Minute)
		preferred.Store(true)
		h.until(20 * time.Minute)
		if got := promtest.ToFloat64(h.metrics.ReadbackPeople.WithLabelValues(ReadbackOwnStatus)); got != 1 {
			t.Errorf(`calpresence_readback_people{result="own_status"} = %v; want 1`, got)
		}
		st := h.eng.Status(time.Now())
		if len(st.Busy) != 1 || !st.Busy[0].OwnStatus() || st.Busy[0].Shown.Availability != presence.Available {
			t.Errorf("Status().Busy = %+v; want alice, Teams showing Available, her own status", st.Busy)
		}
		// A restart does not fight her either.
		h.stop()
		h.start(readbackConfig())
		h.until(50 * time.Minute)
		preferred.Store(false)
		h.until(75 * time.Minute)
		h.stop()
		h.want(
			"10m0s set alice@contoso.com InAConferenceCall 30m0s",
			"15m2s set alice@contoso.com InAConferenceCall 24m58s",
			"1h0m0s set alice@contoso.com InAConferenceCall 10m0s",
		)
		if got := promtest.ToFloat64(h.metrics.ReadbackReasserts); got != 1 {
			t.Errorf("calpresence_readback_reasserts_total = %v; want 1", got)
		}
		if n := strings.Count(h.logs.String(), "the person's own status, which wins"); n != 1 {
			t.Errorf("%d log lines for her own status; want 1 (once per span, not per read)", n)
		}
	})
}

// Failed reads back off and never hold up a set; a read that hangs does
// not either.
func TestReadbackFailuresBackOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			failing atomic.Bool
			hang    = make(chan struct{})
			hung    atomic.Bool
		)
		failing.Store(true)
		h := startHarness(t, readbackConfig(), ics(time.Now(), "m", 10*time.Minute, 30*time.Minute, "n", 50*time.Minute, 10*time.Minute), nil, nil)
		h.graph.Locked(func() {
			h.graph.Shows = func(string) (presence.Shown, bool, error) {
				if hung.Load() {
					<-hang
				}
				if failing.Load() {
					return presence.Shown{}, false, &presence.Error{Op: "getPresencesByUserId", Status: 503, Kind: presence.Retry}
				}
				return presence.Shown{Availability: presence.Busy, Activity: presence.ActivityInAConferenceCall}, true, nil
			}
		})
		h.until(30 * time.Minute)
		reads := h.graph.Reads()
		// Every minute when all is well; backing off, the reads during
		// the span (from 10m) are fewer than a read every 2 s, more than
		// the first.
		if reads < 2 || reads > 30 {
			t.Errorf("%d reads in 20 minutes of failures; want a few (back-off, at most one a minute in the end)", reads)
		}
		if !strings.Contains(h.logs.String(), "read back presence failed; will retry") {
			t.Errorf("failed reads not logged")
		}
		failing.Store(false)
		h.until(45 * time.Minute)
		if got := promtest.ToFloat64(h.metrics.GraphRequests.WithLabelValues("getPresencesByUserId", "503")); got < 2 {
			t.Errorf(`calpresence_graph_requests_total{op="getPresencesByUserId",code="503"} = %v; want the failed reads`, got)
		}
		if got := promtest.ToFloat64(h.metrics.GraphRequests.WithLabelValues("getPresencesByUserId", "200")); got < 1 {
			t.Errorf(`calpresence_graph_requests_total{op="getPresencesByUserId",code="200"} = %v; want the reads since`, got)
		}
		// A read in flight when the next span starts: the set goes out on time.
		hung.Store(true)
		h.until(55 * time.Minute)
		close(hang)
		h.until(65 * time.Minute)
		h.stop()
		h.want(
			"10m0s set alice@contoso.com InAConferenceCall 30m0s",
			"50m0s set alice@contoso.com InAConferenceCall 10m0s",
		)
	})
}

// With presence.status_message, a span's set is followed by the message,
// which is cleared when the span ends early while it is still ours; a
// message the person wrote is never replaced or cleared.
func TestStatusMessage(t *testing.T) {
	tests := []struct {
		name  string
		own   string // the person's own message, written at 5m ("" none)
		later string // the person's own message, written at 15m
		want  []string
	}{
		{"ours, cleared at an early end", "", "", []string{
			"10m30s set alice@contoso.com InAConferenceCall 30m0s",
			`10m32s message alice@contoso.com "In a zoom meeting (m) until 00:40"`,
			"21m0s clear alice@contoso.com",
			"21m2s unmessage alice@contoso.com",
		}},
		{"theirs before the span: never replaced", "Out for lunch", "", []string{
			"10m30s set alice@contoso.com InAConferenceCall 30m0s",
			"21m0s clear alice@contoso.com",
		}},
		{"theirs written during the span: not cleared", "", "Back at 3", []string{
			"10m30s set alice@contoso.com InAConferenceCall 30m0s",
			`10m32s message alice@contoso.com "In a zoom meeting (m) until 00:40"`,
			"21m0s clear alice@contoso.com",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := readbackConfig()
				cfg.Presence.StatusMessage = "In a {vendor} meeting ({title}) until {end}"
				begin := time.Now()
				h := startHarness(t, cfg, ics(begin, "m", 10*time.Minute+30*time.Second, 30*time.Minute), nil, nil)
				h.until(5 * time.Minute)
				if tt.own != "" {
					h.graph.SetMessage(alice, tt.own)
				}
				h.until(15 * time.Minute)
				if tt.later != "" {
					h.graph.SetMessage(alice, tt.later)
				}
				h.until(20*time.Minute + 30*time.Second)
				h.feeds.set("zoom", ics(begin))
				h.until(30 * time.Minute)
				h.stop()
				got := strings.Join(h.graph.Got(), "\n")
				if want := strings.Join(tt.want, "\n"); got != want {
					t.Errorf("Graph calls:\n%s\nwant:\n%s", got, want)
				}
			})
		})
	}
}

// A status message whose set or clear fails with a retryable outcome is
// tried again after a back-off (Retry-After when Graph says); a clear only
// while the message is still ours. A refused one is given up for its span
// (a lost session set again in it tries no message either), logged once,
// and the next span has its message.
func TestStatusMessageRetries(t *testing.T) {
	unavailable := &presence.Error{Op: "setStatusMessage", Status: 503, Kind: presence.Retry, RetryAfter: 30 * time.Second}
	refused := &presence.Error{Op: "setStatusMessage", Status: 403, Kind: presence.Permanent}
	// Span m from 10m30s ends early at 21m (the feed drops it); its
	// session is lost at 15m and set again at the next read (every
	// minute, from 10m32s); span n is 1h..1h10m, its lease and message
	// end with it (no clear).
	var (
		setM     = "10m30s set alice@contoso.com InAConferenceCall 30m0s"
		messageM = `10m32s message alice@contoso.com "In a zoom meeting until 00:40"`
		resetM   = "15m34s set alice@contoso.com InAConferenceCall 24m56s"
		clearM   = "21m0s clear alice@contoso.com"
		spanN    = []string{
			"1h0m0s set alice@contoso.com InAConferenceCall 10m0s",
			`1h0m2s message alice@contoso.com "In a zoom meeting until 01:10"`,
		}
	)
	tests := []struct {
		name string
		// fail answers the nth attempt (from 1) of op "message" or
		// "unmessage", made at d since the start.
		fail func(op string, n int, d time.Duration) error
		// theirs, when set, is the message the person writes at 21m10s.
		theirs   string
		want     []string
		attempts map[string]int // how often each message op was tried
		logs     map[string]int // log messages and how often each is written
	}{
		{
			name: "a 503, then set",
			fail: func(op string, n int, _ time.Duration) error {
				if op == "message" && n == 1 {
					return unavailable
				}
				return nil
			},
			want: append([]string{setM, `11m2s message alice@contoso.com "In a zoom meeting until 00:40"`, resetM, clearM,
				"21m2s unmessage alice@contoso.com"}, spanN...),
			attempts: map[string]int{"message": 3, "unmessage": 1},
			logs:     map[string]int{"status message call failed; will retry": 1},
		},
		{
			name: "a clear that fails is retried while ours",
			fail: func(op string, n int, _ time.Duration) error {
				if op == "unmessage" && n <= 2 {
					return unavailable
				}
				return nil
			},
			want:     append([]string{setM, messageM, resetM, clearM, "22m2s unmessage alice@contoso.com"}, spanN...),
			attempts: map[string]int{"message": 2, "unmessage": 3},
			logs:     map[string]int{"status message call failed; will retry": 2},
		},
		{
			name: "a clear that fails is not retried once the person wrote their own",
			fail: func(op string, n int, d time.Duration) error {
				if op == "unmessage" && d < time.Hour {
					return unavailable
				}
				return nil
			},
			theirs: "Back at 3",
			want: []string{setM, messageM, resetM, clearM,
				// Her message stays: none is set for span n either.
				"1h0m0s set alice@contoso.com InAConferenceCall 10m0s"},
			attempts: map[string]int{"message": 1, "unmessage": 1},
		},
		{
			name: "refused: given up for the span, logged once",
			fail: func(op string, n int, d time.Duration) error {
				if op == "message" && d < time.Hour {
					return refused
				}
				return nil
			},
			want:     append([]string{setM, resetM, clearM}, spanN...),
			attempts: map[string]int{"message": 2},
			logs: map[string]int{
				"graph refused the status message; not retried for this span": 1,
				"status message call failed; will retry":                      0,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := readbackConfig()
				cfg.Presence.StatusMessage = "In a {vendor} meeting until {end}"
				begin := time.Now()
				attempts := map[string]int{}
				graph := &testutil.Presence{Begin: begin, Fail: func(op, _ string) error {
					if op != "message" && op != "unmessage" {
						return nil
					}
					attempts[op]++
					return tt.fail(op, attempts[op], time.Since(begin))
				}}
				h := startHarness(t, cfg, ics(begin, "m", 10*time.Minute+30*time.Second, 30*time.Minute, "n", time.Hour, 10*time.Minute), nil, graph)
				h.until(15 * time.Minute)
				h.graph.Lose(alice)
				h.until(20*time.Minute + 30*time.Second)
				h.feeds.set("zoom", ics(begin, "n", time.Hour, 10*time.Minute))
				if tt.theirs != "" {
					h.until(21*time.Minute + 10*time.Second)
					h.graph.SetMessage(alice, tt.theirs)
				}
				h.until(90 * time.Minute)
				h.stop()
				h.want(tt.want...)
				h.graph.Locked(func() {
					if !maps.Equal(attempts, tt.attempts) {
						t.Errorf("status message calls tried: %v; want %v", attempts, tt.attempts)
					}
				})
				for msg, n := range tt.logs {
					if got := strings.Count(h.logs.String(), msg); got != n {
						t.Errorf("%d log lines %q; want %d", got, msg, n)
					}
				}
			})
		})
	}
}

// The end time in a status message is in the person's time zone when
// users: gives one, else in schedule.timezone.
func TestStatusMessagePersonZone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const bob = "bob@contoso.com"
		cfg := readbackConfig()
		cfg.Presence.StatusMessage = "In a meeting until {end}"
		cfg.Sources[0].Users = []string{alice, bob}
		cfg.Users = []config.User{{Email: "alice@partner.example", User: alice, Timezone: "Europe/Berlin"}}
		begin := time.Now()
		// 13:30 to 14:00 UTC: 15:00 in Berlin (CET, UTC+1 in January).
		if begin.Hour() != 0 || begin.Month() != time.January {
			t.Fatalf("synctest starts at %v; the test wants midnight in January", begin)
		}
		h := startHarness(t, cfg, ics(begin, "m", 13*time.Hour+30*time.Minute, 30*time.Minute), nil, nil)
		h.until(13*time.Hour + 31*time.Minute)
		h.stop()
		var got []string
		for _, c := range h.graph.Calls() {
			if c.Op == "message" {
				got = append(got, c.User+": "+c.Activity)
			}
		}
		slices.Sort(got)
		want := []string{"alice@contoso.com: In a meeting until 15:00", "bob@contoso.com: In a meeting until 14:00"}
		if !slices.Equal(got, want) {
			t.Errorf("status messages = %q; want %q", got, want)
		}
	})
}

// A span whose end moves later has its status message follow it: the new
// end time, and the expiry with it; a message the person wrote meanwhile
// is not replaced.
func TestStatusMessageFollowsExtendedSpan(t *testing.T) {
	for _, tt := range []struct {
		name   string
		theirs string // written at 15m
		want   []string
	}{
		{"ours", "", []string{
			"10m30s set alice@contoso.com InAConferenceCall 30m0s",
			`10m32s message alice@contoso.com "In a zoom meeting until 00:40"`,
			"20m0s set alice@contoso.com InAConferenceCall 50m30s",
			`20m2s message alice@contoso.com "In a zoom meeting until 01:10"`,
		}},
		{"theirs", "Back at 3", []string{
			"10m30s set alice@contoso.com InAConferenceCall 30m0s",
			`10m32s message alice@contoso.com "In a zoom meeting until 00:40"`,
			"20m0s set alice@contoso.com InAConferenceCall 50m30s",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := readbackConfig()
				cfg.Presence.StatusMessage = "In a {vendor} meeting until {end}"
				begin := time.Now()
				h := startHarness(t, cfg, ics(begin, "m", 10*time.Minute+30*time.Second, 30*time.Minute), nil, nil)
				h.until(15 * time.Minute)
				if tt.theirs != "" {
					h.graph.SetMessage(alice, tt.theirs)
				}
				h.until(19*time.Minute + 30*time.Second)
				h.feeds.set("zoom", ics(begin, "m", 10*time.Minute+30*time.Second, time.Hour))
				h.until(30 * time.Minute)
				h.stop()
				h.want(tt.want...)
			})
		})
	}
}
