package signals

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/plan"
)

func readTestdata(t testing.TB, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// TestPresenceAndCallDeliveries: Zoom presence and Webex Calling
// deliveries, as the vendors document and sign them, become presence and
// call signals; ringing changes nothing but is still answered 200.
func TestPresenceAndCallDeliveries(t *testing.T) {
	const bobID = "Y2lzY29zcGFyazovL3VzL1BFT1BMRS9ib2I"
	const call = KeyWebexCall + "Y2lzY29zcGFyazovL3VzL0NBTEwvY2FsbDE"
	tests := []struct {
		file, path, event string
		want              []state.Signal
	}{
		{"zoom-presence-on-phone-call.json", PathZoom, "presence", []state.Signal{{Vendor: "zoom", Event: state.SignalPresence, Meeting: ZoomPresenceKey,
			Email: "bob@contoso.com", Status: ZoomOnPhoneCall, At: time.Date(2026, 12, 2, 15, 19, 30, 0, time.UTC), Received: now}}},
		{"zoom-presence-available.json", PathZoom, "presence", []state.Signal{{Vendor: "zoom", Event: state.SignalPresence, Meeting: ZoomPresenceKey,
			Email: "bob@contoso.com", Status: "Available", At: time.Date(2026, 12, 2, 15, 19, 55, 0, time.UTC), Received: now}}},
		{"webex-call-connected.json", PathWebex, "call", []state.Signal{{Vendor: "webex", Event: state.SignalCall, Meeting: call,
			Person: bobID, Status: WebexConnected, At: time.Date(2026, 12, 2, 15, 19, 30, 120e6, time.UTC), Received: now}}},
		{"webex-call-disconnected.json", PathWebex, "call", []state.Signal{{Vendor: "webex", Event: state.SignalCall, Meeting: call,
			Person: bobID, Status: WebexCallEnded, At: time.Date(2026, 12, 2, 15, 19, 55, 500e6, time.UTC), Received: now}}},
		{"webex-call-alerting.json", PathWebex, "call", nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body := readTestdata(t, tt.file)
			r := newRig(t)
			var w *httptest.ResponseRecorder
			if tt.path == PathZoom {
				w = r.zoom(body, now.Add(-2*time.Second))
			} else {
				w = r.post(PathWebex, body, map[string]string{"X-Spark-Signature": webexSign(body)})
			}
			if w.Code != http.StatusOK {
				t.Fatalf("POST %s = %d; want 200", tt.file, w.Code)
			}
			vendor := strings.TrimPrefix(tt.path, "/webhooks/")
			if tt.want == nil {
				if got := testutil.ToFloat64(r.m.Signals.WithLabelValues(vendor, tt.event, "unused")); got != 1 {
					t.Errorf("unused %s deliveries = %v; want 1", tt.event, got)
				}
				return
			}
			got := r.drain(t, len(tt.want))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("signals (-want +got):\n%s", diff)
			}
			if got := testutil.ToFloat64(r.m.Signals.WithLabelValues(vendor, tt.event, "applied")); got != 1 {
				t.Errorf("calpresence_webhook_signals_total{vendor=%q,event=%q,result=\"applied\"} = %v; want 1", vendor, tt.event, got)
			}
		})
	}
}

// TestWebexPeople: the person is looked up once (GET {api}/people/{id}
// with the token), then cached; a 404 is final, a 5xx transient.
func TestWebexPeople(t *testing.T) {
	person := readTestdata(t, "webex-person.json")
	var calls, fail atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Method != http.MethodGet || r.Header.Get("Authorization") != "Bearer tok" {
			t.Errorf("%s %s with Authorization %q; want GET with Bearer tok", r.Method, r.URL.Path, r.Header.Get("Authorization"))
		}
		switch {
		case fail.Load() > 0:
			fail.Add(-1)
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case r.URL.Path == "/v1/people/bob":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(person))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	p := &WebexPeople{API: srv.URL + "/v1"}
	ctx := context.Background()
	fail.Store(1)
	if _, err := p.Email(ctx, "bob", "tok"); err == nil || errors.Is(err, ErrNoPerson) {
		t.Fatalf("Email(bob) during a 503 = %v; want a transient error", err)
	}
	for range 2 {
		if got, err := p.Email(ctx, "bob", "tok"); got != "bob@contoso.com" || err != nil {
			t.Fatalf("Email(bob) = %q, %v; want bob@contoso.com", got, err)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("people API called %d times; want 2 (the failure, then one look-up cached)", n)
	}
	if _, err := p.Email(ctx, "nobody", "tok"); !errors.Is(err, ErrNoPerson) {
		t.Errorf("Email(nobody) = %v; want ErrNoPerson", err)
	}
}

// TestTrust: a participant whose address the vendor does not vouch for (a
// Zoom guest without participant.id typing a colleague's address; a Webex
// participant neither host, invitee nor of the webhook's org) is
// Unverified; the others are not.
func TestTrust(t *testing.T) {
	zoomJoin := func(id string) string {
		return `{"event":"meeting.participant_joined","event_ts":1796224790000,"payload":{"account_id":"AAA","object":{"id":"91234567890","uuid":"u==","host_id":"h","topic":"t","type":2,` +
			`"participant":{"user_id":"16778242","user_name":"CEO","id":"` + id + `","join_time":"2026-12-02T15:19:00Z","email":"ceo@contoso.com","registrant_id":"r1"}}}}`
	}
	webexJoin := func(host, invitee bool, hostEmail, org string) string {
		b := func(v bool) string {
			if v {
				return "true"
			}
			return "false"
		}
		return `{"id":"Y2lz","resource":"meetingParticipants","event":"joined","orgId":"OTZh","data":{"id":"p1","orgId":"` + org + `","host":` + b(host) + `,"invitee":` + b(invitee) +
			`,"email":"ceo@contoso.com","meetingId":"m1","hostEmail":"` + hostEmail + `","joinedTime":"2026-12-02T15:19:00Z"}}`
	}
	tests := []struct {
		name, body string
		zoom       bool
		unverified bool
	}{
		{"zoom guest without participant.id", zoomJoin(""), true, true},
		{"zoom signed-in user", zoomJoin("iFxeBPYun6SAiWUzBcEkX"), true, false},
		{"webex outsider", webexJoin(false, false, "bob@contoso.com", "T1RIRVI"), false, true},
		{"webex host", webexJoin(true, false, "ceo@contoso.com", "T1RIRVI"), false, false},
		{"webex invitee", webexJoin(false, true, "bob@contoso.com", "T1RIRVI"), false, false},
		{"webex of the webhook's org", webexJoin(false, false, "bob@contoso.com", "OTZh"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s state.Signal
			if tt.zoom {
				ev, err := ParseZoom([]byte(tt.body))
				if err != nil {
					t.Fatal(err)
				}
				s = ev.Signal
			} else {
				d, err := ParseWebex([]byte(tt.body))
				if err != nil || len(d.Signals) != 1 {
					t.Fatalf("ParseWebex = %+v, %v", d, err)
				}
				s = d.Signals[0]
			}
			if s.Unverified != tt.unverified {
				t.Errorf("Unverified = %v; want %v", s.Unverified, tt.unverified)
			}
		})
	}
}

// TestApplyUnverified: an unverified join makes no unscheduled call, and
// an unverified left ends nobody's; on the person's own calendar
// occurrence both still act (the calendar names them).
func TestApplyUnverified(t *testing.T) {
	const ceo = "ceo@contoso.com"
	meeting := keyed(occ("m", 10*minute, 60*minute), zoomKey)
	base := []plan.Match{busy(alice, meeting)}
	unv := func(s state.Signal) state.Signal { s.Unverified = true; return s }
	other := func(event, email string, at time.Duration) state.Signal {
		s := sig(event, email, at)
		s.Meeting = "zoom:55555555555"
		s.ID += "|other"
		return s
	}
	tests := []struct {
		name string
		sigs []state.Signal
		want []string
	}{
		{"a guest typing the CEO's address changes nothing", []state.Signal{unv(other(state.SignalJoined, ceo, 100*minute))}, []string{
			"alice@contoso.com 10m0s-1h10m0s"}},
		{"a signed-in join is an unscheduled call", []state.Signal{other(state.SignalJoined, ceo, 100*minute)}, []string{
			"alice@contoso.com 10m0s-1h10m0s", "ceo@contoso.com 1h40m0s-2h40m0s"}},
		{"a guest's left does not end a signed-in person's call", []state.Signal{other(state.SignalJoined, ceo, 100*minute), unv(other(state.SignalLeft, ceo, 110*minute))}, []string{
			"alice@contoso.com 10m0s-1h10m0s", "ceo@contoso.com 1h40m0s-2h40m0s"}},
		{"on the person's own occurrence an unverified left still acts", []state.Signal{unv(sig(state.SignalLeft, alice, 30*minute))}, []string{
			"alice@contoso.com 10m0s-30m0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Apply(slices.Clone(base), tt.sigs, conf, time.Hour, nil, nil)
			if g := spanList(plan.Spans(got, 2*minute, nil)); strings.Join(g, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("spans after Apply:\n%s\nwant:\n%s", strings.Join(g, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
