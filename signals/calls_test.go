package signals

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/calpresence/calpresence/state"
)

func readTestdata(t *testing.T, name string) string {
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
