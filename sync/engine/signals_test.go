package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/signals"
	"github.com/calpresence/calpresence/state"
)

const zoomKey = "zoom:83412345678"

// zoomFeed is a feed of one meeting with a Zoom join link in LOCATION.
func zoomFeed(base time.Time, uid string, start, dur time.Duration) string {
	return strings.Replace(ics(base, uid, start, dur), "SUMMARY:"+uid+"\r\n",
		"SUMMARY:"+uid+"\r\nLOCATION:https://us02web.zoom.us/j/83412345678?pwd=abc\r\n", 1)
}

func signalConfig() *config.Config {
	cfg := testConfig()
	cfg.Sources[0].Users = []string{alice, "bob@contoso.com"}
	cfg.Users = []config.User{{Email: "carol@partner.example", User: "carol@contoso.com"}}
	cfg.Webhooks = &config.Webhooks{MaxUnscheduled: 8 * time.Hour}
	return cfg
}

// send gives the engine a signal at the current virtual time and waits for
// what it set off.
func (h *harness) send(event, meeting, email string) string {
	h.t.Helper()
	res, err := h.eng.Signal(context.Background(), Signal{Vendor: "zoom", Event: event, Meeting: meeting, Email: email, At: time.Now(), Received: time.Now()})
	if err != nil {
		h.t.Fatalf("Signal(%s %s %s) = %v", event, meeting, email, err)
	}
	synctest.Wait()
	return res
}

func TestEngineSignals(t *testing.T) {
	const bob = "bob@contoso.com"
	tests := []struct {
		name    string
		signals func(h *harness) []string
		until   time.Duration
		want    []string
		reasons []string
	}{
		{"ended early clears everyone at once, and later polls do not undo it",
			func(h *harness) []string {
				h.until(30 * minute)
				return []string{h.send(state.SignalEnded, zoomKey, "")}
			}, 2 * time.Hour,
			[]string{"10m0s set alice@contoso.com InAConferenceCall 1h0m0s", "10m0s set bob@contoso.com InAConferenceCall 1h0m0s",
				"30m0s clear alice@contoso.com", "30m0s clear bob@contoso.com"},
			[]string{"set start", "set start", "clear early-end:signal", "clear early-end:signal"}},
		{"one participant left",
			func(h *harness) []string {
				h.until(30 * minute)
				return []string{h.send(state.SignalLeft, zoomKey, "Bob@Contoso.com")}
			}, 2 * time.Hour,
			[]string{"10m0s set alice@contoso.com InAConferenceCall 1h0m0s", "10m0s set bob@contoso.com InAConferenceCall 1h0m0s",
				"30m0s clear bob@contoso.com"},
			[]string{"set start", "set start", "clear early-end:signal"}},
		{"left and rejoined",
			func(h *harness) []string {
				h.until(30 * minute)
				a := h.send(state.SignalLeft, zoomKey, bob)
				h.until(40 * minute)
				return []string{a, h.send(state.SignalJoined, zoomKey, bob)}
			}, 2 * time.Hour,
			[]string{"10m0s set alice@contoso.com InAConferenceCall 1h0m0s", "10m0s set bob@contoso.com InAConferenceCall 1h0m0s",
				"30m0s clear bob@contoso.com", "40m0s set bob@contoso.com InAConferenceCall 30m0s"},
			[]string{"set start", "set start", "clear early-end:signal", "set start"}},
		{"unscheduled join then ended",
			func(h *harness) []string {
				h.until(2 * time.Hour)
				a := h.send(state.SignalJoined, "zoom:55555555555", "carol@partner.example")
				h.until(2*time.Hour + 25*minute)
				return []string{a, h.send(state.SignalEnded, "zoom:55555555555", "")}
			}, 3 * time.Hour,
			[]string{"10m0s set alice@contoso.com InAConferenceCall 1h0m0s", "10m0s set bob@contoso.com InAConferenceCall 1h0m0s",
				"2h0m0s set carol@contoso.com InAConferenceCall 4h0m0s", "2h25m0s clear carol@contoso.com"},
			[]string{"set start", "set start", "set start", "clear early-end:signal"}},
		{"a duplicate delivery changes nothing",
			func(h *harness) []string {
				h.until(30 * minute)
				at := time.Now()
				var out []string
				for range 2 {
					r, err := h.eng.Signal(context.Background(), Signal{Vendor: "zoom", Event: state.SignalLeft, Meeting: zoomKey, Email: bob, At: at})
					if err != nil {
						h.t.Fatal(err)
					}
					synctest.Wait()
					out = append(out, r)
					h.until(31 * minute)
				}
				return out
			}, 2 * time.Hour,
			[]string{"10m0s set alice@contoso.com InAConferenceCall 1h0m0s", "10m0s set bob@contoso.com InAConferenceCall 1h0m0s",
				"30m0s clear bob@contoso.com"},
			[]string{"set start", "set start", "clear early-end:signal"}},
		{"a signal for someone the configuration does not cover is ignored",
			func(h *harness) []string {
				h.until(30 * minute)
				return []string{h.send(state.SignalJoined, "zoom:55555555555", "eve@elsewhere.example"), h.send(state.SignalLeft, zoomKey, "eve@elsewhere.example")}
			}, 2 * time.Hour,
			[]string{"10m0s set alice@contoso.com InAConferenceCall 1h0m0s", "10m0s set bob@contoso.com InAConferenceCall 1h0m0s"},
			[]string{"set start", "set start"}},
	}
	wantResults := map[string][]string{
		"a duplicate delivery changes nothing":                             {signals.Applied, signals.Duplicate},
		"a signal for someone the configuration does not cover is ignored": {signals.Ignored, signals.Ignored},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				begin := time.Now()
				h := startHarness(t, signalConfig(), zoomFeed(begin, "m", 10*minute, time.Hour), nil, nil)
				results := tt.signals(h)
				h.until(tt.until)
				h.stop()
				h.wantAnyOrder(tt.want...)
				if got := h.reasons(); strings.Join(slices.Sorted(slices.Values(got)), ",") != strings.Join(slices.Sorted(slices.Values(tt.reasons)), ",") {
					t.Errorf("reasons = %v; want %v", got, tt.reasons)
				}
				want, ok := wantResults[tt.name]
				if !ok {
					want = make([]string, len(results))
					for i := range want {
						want[i] = signals.Applied
					}
				}
				if strings.Join(results, ",") != strings.Join(want, ",") {
					t.Errorf("Signal results = %v; want %v", results, want)
				}
			})
		})
	}
}

// TestEngineSignalSurvivesRestart: the worker restarts between the signal
// and the meeting's scheduled end, with the feed still showing it
// running; the signal is read back and nobody is set again.
func TestEngineSignalSurvivesRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		store := NewMemStore()
		h := startHarness(t, signalConfig(), zoomFeed(begin, "m", 10*minute, time.Hour), store, nil)
		h.until(30 * minute)
		h.send(state.SignalEnded, zoomKey, "")
		if got := h.eng.Signals(); len(got) != 1 || got[0].Meeting != zoomKey || got[0].Event != state.SignalEnded {
			t.Errorf("Signals() = %+v; want the one ended signal", got)
		}
		h.until(35 * minute)
		h.stop()
		h.start(signalConfig())
		h.until(2 * time.Hour)
		h.stop()
		h.wantAnyOrder("10m0s set alice@contoso.com InAConferenceCall 1h0m0s", "10m0s set bob@contoso.com InAConferenceCall 1h0m0s",
			"30m0s clear alice@contoso.com", "30m0s clear bob@contoso.com")
		// Expired after the occurrence's scheduled end (and the cap): gone.
		h.start(signalConfig())
		h.until(9 * time.Hour)
		h.stop()
		if got, _ := store.Signals(); len(got) != 0 {
			t.Errorf("signals stored after they expired: %v", got)
		}
	})
}

// wantAnyOrder is want for calls sent concurrently: the same calls, in
// any order within each instant (calls render with their time first).
func (h *harness) wantAnyOrder(want ...string) {
	h.t.Helper()
	got := slices.Clone(h.graph.Got())
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		h.t.Errorf("Graph calls (sorted):\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestEngineWebexSignal: a Webex invitation names its meeting by number in
// the description; a Webex "ended" for that number ends it.
func TestEngineWebexSignal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		body := strings.Replace(ics(begin, "w", 10*minute, time.Hour), "SUMMARY:w\r\n",
			"SUMMARY:w\r\nLOCATION:https://contoso.webex.com/contoso/j.php?MTID=m1a2b3c\r\n"+
				"DESCRIPTION:Join meeting\\nhttps://contoso.webex.com/contoso/j.php?MTID=m1a2b3c\\n\\nMeeting number (access code): 2550 123 4567\\nMeeting password: x\\n\r\n", 1)
		h := startHarness(t, signalConfig(), body, nil, nil)
		h.until(20 * minute)
		res, err := h.eng.Signal(context.Background(), Signal{Vendor: "webex", Event: state.SignalEnded, Meeting: "webex:25501234567", At: time.Now()})
		if err != nil || res != signals.Applied {
			t.Fatalf("Signal = %q, %v; want applied", res, err)
		}
		synctest.Wait()
		h.until(2 * time.Hour)
		h.stop()
		h.wantAnyOrder("10m0s set alice@contoso.com InAConferenceCall 1h0m0s", "10m0s set bob@contoso.com InAConferenceCall 1h0m0s",
			"20m0s clear alice@contoso.com", "20m0s clear bob@contoso.com")
	})
}

func TestEngineSignalRefusesBadInput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, signalConfig(), zoomFeed(time.Now(), "m", 10*minute, time.Hour), nil, nil)
		defer h.stop()
		for _, s := range []Signal{
			{Vendor: "zoom", Event: "started", Meeting: zoomKey},
			{Vendor: "zoom", Event: state.SignalLeft, Meeting: zoomKey},
			{Vendor: "zoom", Event: state.SignalEnded},
		} {
			if res, err := h.eng.Signal(context.Background(), s); !errors.Is(err, signals.ErrInvalid) {
				t.Errorf("Signal(%+v) = %q, %v; want signals.ErrInvalid", s, res, err)
			}
		}
		if got := h.eng.Signals(); len(got) != 0 {
			t.Errorf("Signals() = %v; want none stored", got)
		}
	})
}

// TestEngineSignalExpiry: a signal is kept while it can matter, and no
// longer: a "left" until the scheduled end of what it cuts (at least
// LeftKeep), or as long as the unscheduled call it ends could have run; a
// "joined" and an "ended" as long as an unscheduled call may last.
func TestEngineSignalExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		store := NewMemStore()
		h := startHarness(t, signalConfig(), zoomFeed(begin, "m", 10*minute, 3*time.Hour), store, nil)
		h.until(30 * minute)
		h.send(state.SignalLeft, zoomKey, "bob@contoso.com")                // scheduled until 3h10m
		h.send(state.SignalJoined, "zoom:55555555555", "carol@contoso.com") // unscheduled
		h.until(40 * minute)
		h.send(state.SignalLeft, "zoom:55555555555", "carol@contoso.com")
		h.send(state.SignalLeft, "zoom:77777777777", "carol@contoso.com") // nothing to end
		h.send(state.SignalEnded, "zoom:77777777777", "")
		h.stop()
		stored, _ := store.Signals()
		got := make(map[string]time.Duration)
		for _, s := range stored {
			got[s.Event+" "+s.Meeting+" "+s.Email] = s.Expires.Sub(begin)
		}
		want := map[string]time.Duration{
			"left zoom:83412345678 bob@contoso.com":     3*time.Hour + 11*minute,
			"joined zoom:55555555555 carol@contoso.com": 30*minute + 8*time.Hour,
			"left zoom:55555555555 carol@contoso.com":   30*minute + 8*time.Hour,
			"left zoom:77777777777 carol@contoso.com":   40*minute + signals.LeftKeep,
			"ended zoom:77777777777 ":                   40*minute + 8*time.Hour,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("expiry of the stored signals (-want +got):\n%s", diff)
		}
	})
}

// alwaysLeads is a leader election this replica always wins.
type alwaysLeads struct{}

func (alwaysLeads) IsLeader(context.Context) error { return nil }

// TestEngineTakesSignalsStandbysQueued: with several replicas a webhook
// may reach a standby, which has no engine: it queues the signal in the
// shared store, and the leader's engine applies it within InboxEvery,
// then drops it from the inbox. A vendor's retry queued after the leader
// applied the same fact is a duplicate and does not replace its record.
func TestEngineTakesSignalsStandbysQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		store := NewMemStore()
		h := &harness{t: t, feeds: &fakeFeeds{bodies: map[string]string{"zoom": zoomFeed(begin, "m", 10*minute, time.Hour)}, errs: map[string]error{}},
			graph: &testutil.Presence{Begin: begin}, store: store, begin: begin, metrics: NewMetrics(nil)}
		h.startWith(signalConfig(), func(o *Options) { o.Elector = alwaysLeads{} }, nil)
		h.until(30 * minute)
		ended := Signal{Vendor: "zoom", Event: state.SignalEnded, Meeting: zoomKey, At: time.Now(), Received: time.Now()}
		if res, err := signals.Queue(store, ended); err != nil || res != signals.Queued {
			t.Fatalf("signals.Queue = %q, %v", res, err)
		}
		h.until(30*minute + InboxEvery + time.Second)
		// The same delivery again, queued by the other standby.
		if _, err := signals.Queue(store, ended); err != nil {
			t.Fatal(err)
		}
		h.until(time.Hour)
		h.stop()
		h.wantAnyOrder("10m0s set alice@contoso.com InAConferenceCall 1h0m0s", "10m0s set bob@contoso.com InAConferenceCall 1h0m0s",
			"30m2s clear alice@contoso.com", "30m2s clear bob@contoso.com")
		stored, _ := store.Signals()
		if len(stored) != 1 {
			t.Fatalf("stored signals %v; want the one applied, the inbox empty", stored)
		}
		for id, s := range stored {
			if strings.HasPrefix(id, state.QueuedPrefix) || s.Expires.IsZero() {
				t.Errorf("stored %q = %+v; want the applied record", id, s)
			}
		}
		if got := h.logs.Lines("a standby queued, taken", `"result":"duplicate"`); len(got) != 1 {
			t.Errorf("the retry was not taken as a duplicate; logs:\n%s", h.logs.String())
		}
	})
}

// readCountingStore counts the reads of every signal in force.
type readCountingStore struct {
	*MemStore
	mu    sync.Mutex
	reads int
}

func (s *readCountingStore) Signals() (map[string]state.Signal, error) {
	s.mu.Lock()
	s.reads++
	s.mu.Unlock()
	return s.MemStore.Signals()
}

// TestEngineInboxReadsOnlyTheQueued: the leader looks into the inbox every
// InboxEvery; it reads the queued signals alone (QueuedSignals), never
// every signal in force again (with PostgreSQL, the whole table every 2 s).
func TestEngineInboxReadsOnlyTheQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		store := &readCountingStore{MemStore: NewMemStore()}
		h := &harness{t: t, feeds: &fakeFeeds{bodies: map[string]string{"zoom": zoomFeed(begin, "m", 10*minute, time.Hour)}, errs: map[string]error{}},
			graph: &testutil.Presence{Begin: begin}, store: store.MemStore, begin: begin, metrics: NewMetrics(nil)}
		h.startWith(signalConfig(), func(o *Options) { o.Store, o.Elector = store, alwaysLeads{} }, nil)
		h.until(time.Minute)
		store.mu.Lock()
		atStart := store.reads
		store.mu.Unlock()
		h.until(11 * time.Minute) // 300 looks into the inbox
		ended := Signal{Vendor: "zoom", Event: state.SignalEnded, Meeting: zoomKey, At: time.Now(), Received: time.Now()}
		if _, err := signals.Queue(store, ended); err != nil {
			t.Fatal(err)
		}
		h.until(11*time.Minute + InboxEvery + time.Second)
		h.stop()
		store.mu.Lock()
		defer store.mu.Unlock()
		if atStart != 1 || store.reads != atStart {
			t.Errorf("every signal read %d times at start and %d times over 300 looks into the inbox; want once at start, then never", atStart, store.reads-atStart)
		}
		if got := h.logs.Lines("a standby queued, taken", `"result":"applied"`); len(got) != 1 {
			t.Errorf("the queued signal was not applied; logs:\n%s", h.logs.String())
		}
	})
}

// TestEngineSignalForAnAttendeeOfASourceWithoutDomains: a source matching
// attendees without domains makes any attendee busy, so a signal for one
// is applied (the configuration covers them: plan.Matcher.Covers) rather
// than ignored while their calendar span runs on.
func TestEngineSignalForAnAttendeeOfASourceWithoutDomains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		cfg := signalConfig()
		cfg.Sources[0].Users = nil
		cfg.Sources[0].Match = config.MatchAttendees
		feed := strings.Replace(invite(begin, "m", 10*minute, time.Hour, "dave@contoso.com"), "SUMMARY:", "LOCATION:https://us02web.zoom.us/j/83412345678?pwd=abc\r\nSUMMARY:", 1)
		h := startHarness(t, cfg, feed, nil, nil)
		h.until(30 * minute)
		if got := h.send(state.SignalLeft, zoomKey, "dave@contoso.com"); got != signals.Applied {
			t.Errorf("Signal(left dave@contoso.com) = %q; want %q", got, signals.Applied)
		}
		h.until(2 * time.Hour)
		h.stop()
		h.wantAnyOrder("10m0s set dave@contoso.com InAConferenceCall 1h0m0s", "10m0s set someone@partner.example InAConferenceCall 1h0m0s",
			"30m0s clear dave@contoso.com") // someone@'s lease ends with the span: no clear
	})
}

// TestStatusTimeline: the status view's timeline holds each person's spans
// in the window (an hour before now to 36 hours on), with the meetings
// that make them: a calendar meeting a live signal cut short says which
// signal, and a span a live signal made is live.
func TestStatusTimeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		body := strings.Replace(ics(begin, "m", 10*minute, time.Hour, "Later", 3*time.Hour, 30*minute), "SUMMARY:m\r\n",
			"SUMMARY:m\r\nLOCATION:https://us02web.zoom.us/j/83412345678?pwd=abc\r\n", 1)
		h := startHarness(t, signalConfig(), body, nil, nil)
		h.until(30 * minute)
		h.send(state.SignalEnded, zoomKey, "")
		h.send(state.SignalJoined, "zoom:55555555555", "carol@partner.example")
		h.until(40 * minute)
		defer h.stop()

		show := func(st Status) []string {
			var out []string
			for _, p := range st.Timeline {
				for _, s := range p.Spans {
					line := fmt.Sprintf("%s %v–%v %s:", p.User, s.Start.Sub(begin), s.End.Sub(begin), s.Activity)
					for _, m := range s.Meetings {
						line += fmt.Sprintf(" %s/%s live=%v signal=%q", m.Source, m.Summary, m.Live(), m.Signal)
					}
					out = append(out, line)
				}
			}
			slices.Sort(out)
			return out
		}
		want := []string{
			`alice@contoso.com 10m0s–30m0s InAConferenceCall: zoom/m live=false signal="ended"`,
			`alice@contoso.com 3h0m0s–3h30m0s InAConferenceCall: zoom/Later live=false signal=""`,
			`bob@contoso.com 10m0s–30m0s InAConferenceCall: zoom/m live=false signal="ended"`,
			`bob@contoso.com 3h0m0s–3h30m0s InAConferenceCall: zoom/Later live=false signal=""`,
			`carol@contoso.com 30m0s–8h30m0s InAConferenceCall: webhook:zoom/unscheduled call zoom:55555555555 live=true signal=""`,
		}
		if diff := cmp.Diff(want, show(h.eng.Status(time.Now()))); diff != "" {
			t.Errorf("Status().Timeline (-want +got):\n%s", diff)
		}
		// The early ends count as one reason.
		for _, c := range []struct {
			action, reason string
			want           float64
		}{{"set", "start", 3}, {"clear", "early-end", 2}, {"clear", "early-end:signal", 0}} {
			if got := counterValue(h.metrics.PresenceChanges.WithLabelValues(c.action, c.reason)); got != c.want {
				t.Errorf("calpresence_presence_changes_total{action=%q,reason=%q} = %v; want %v", c.action, c.reason, got, c.want)
			}
		}
		// Two hours on, the spans that ended more than an hour before are
		// out of the window.
		if diff := cmp.Diff([]string{want[1], want[3], want[4]}, show(h.eng.Status(begin.Add(2*time.Hour+31*minute)))); diff != "" {
			t.Errorf("Status(2h31m).Timeline (-want +got):\n%s", diff)
		}
	})
}
