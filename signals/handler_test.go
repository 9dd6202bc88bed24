package signals

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/calpresence/calpresence/state"
)

const (
	zoomSecret  = "zoom-secret-token"
	webexSecret = "webex-secret"
)

var now = time.Date(2026, 12, 2, 15, 20, 0, 0, time.UTC) // Unix 1796224800

// Known vectors, computed outside Go (Python's hmac module).
func TestSignatureVectors(t *testing.T) {
	if got, want := ZoomSignature(zoomSecret, "1796224800", []byte(`{"event":"meeting.ended"}`)),
		"v0=e7b8363a5f7eaaa4f5fdbfed30b601a566372b73abb2ffcefb17cf84e3846143"; got != want {
		t.Errorf("ZoomSignature = %s; want %s", got, want)
	}
	v, err := zoomValidate(zoomSecret, "qgg8vlvZRS6UYooatFL8Aw")
	if err != nil || v.EncryptedToken != "d9e0d764a78494688ba3f2d5c0ed4ca311394b4834d959759213424d2df961e3" {
		t.Errorf("zoomValidate = %+v, %v; want the Python vector", v, err)
	}
	if got, want := WebexSignature(webexSecret, []byte(`{"resource":"meetings"}`)), "c1108d06fd894475d4dd95a65ae5180c3a126951"; got != want {
		t.Errorf("WebexSignature = %s; want %s", got, want)
	}
}

// zoomSign signs like Zoom does, independently of the code under test.
func zoomSign(ts time.Time, body string) (string, string) {
	tss := strconv.FormatInt(ts.Unix(), 10)
	m := hmac.New(sha256.New, []byte(zoomSecret))
	m.Write([]byte("v0:" + tss + ":" + body))
	return tss, "v0=" + hex.EncodeToString(m.Sum(nil))
}

func webexSign(body string) string {
	m := hmac.New(sha1.New, []byte(webexSecret))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

// sink records the signals it is given.
type sink struct {
	mu   sync.Mutex
	got  []state.Signal
	seen chan struct{}
}

func (s *sink) Signal(ctx context.Context, sig state.Signal) (string, error) {
	s.mu.Lock()
	s.got = append(s.got, sig)
	s.mu.Unlock()
	s.seen <- struct{}{}
	return "applied", nil
}

type rig struct {
	h    *Handler
	sink *sink
	m    *Metrics
}

func newRig(t *testing.T) *rig {
	r := &rig{sink: &sink{seen: make(chan struct{}, 100)}, m: NewMetrics(nil)}
	r.h = New(Options{ZoomSecret: zoomSecret, WebexSecret: webexSecret, Sink: r.sink, Metrics: r.m, Now: func() time.Time { return now }, Queue: 4})
	return r
}

func (r *rig) post(path, body string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, req)
	return w
}

func (r *rig) zoom(body string, ts time.Time) *httptest.ResponseRecorder {
	tss, sig := zoomSign(ts, body)
	return r.post(PathZoom, body, map[string]string{"x-zm-request-timestamp": tss, "x-zm-signature": sig})
}

// drain runs the queue and returns what reached the sink.
func (r *rig) drain(t *testing.T, n int) []state.Signal {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.h.Run(ctx); close(done) }()
	for range n {
		select {
		case <-r.sink.seen:
		case <-time.After(5 * time.Second):
			t.Fatalf("the sink got %d signals; want %d", len(r.sink.got), n)
		}
	}
	cancel()
	<-done
	if len(r.h.queue) != 0 {
		t.Errorf("%d signals still queued; want none", len(r.h.queue))
	}
	r.sink.mu.Lock()
	defer r.sink.mu.Unlock()
	return r.sink.got
}

const zoomEndedBody = `{"event":"meeting.ended","event_ts":1796224790000,"payload":{"account_id":"AAA","object":{"id":83412345678,"uuid":"4444AAAiAAAAAiAiAiiAii==","host_id":"x1yCzABCDEfg","topic":"Weekly sync","type":2,"start_time":"2026-12-02T15:00:00Z","end_time":"2026-12-02T15:19:50Z","duration":60,"timezone":"UTC"}}}`

func TestZoomVerify(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		header func(h map[string]string)
		code   int
	}{
		{"signed", zoomEndedBody, nil, http.StatusOK},
		{"a replayed timestamp (6 minutes old)", zoomEndedBody, func(h map[string]string) {
			h["x-zm-request-timestamp"], h["x-zm-signature"] = zoomSign(now.Add(-6*time.Minute), zoomEndedBody)
		}, http.StatusUnauthorized},
		{"a timestamp from the future", zoomEndedBody, func(h map[string]string) {
			h["x-zm-request-timestamp"], h["x-zm-signature"] = zoomSign(now.Add(6*time.Minute), zoomEndedBody)
		}, http.StatusUnauthorized},
		{"the body altered by one byte", strings.Replace(zoomEndedBody, "83412345678", "83412345679", 1), nil, http.StatusUnauthorized},
		{"the timestamp altered", zoomEndedBody, func(h map[string]string) {
			h["x-zm-request-timestamp"] = strconv.FormatInt(now.Unix()-1, 10)
		}, http.StatusUnauthorized},
		{"no signature", zoomEndedBody, func(h map[string]string) { delete(h, "x-zm-signature") }, http.StatusUnauthorized},
		{"signed with another secret", zoomEndedBody, func(h map[string]string) {
			m := hmac.New(sha256.New, []byte("other"))
			m.Write([]byte("v0:" + h["x-zm-request-timestamp"] + ":" + zoomEndedBody))
			h["x-zm-signature"] = "v0=" + hex.EncodeToString(m.Sum(nil))
		}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			tss, sig := zoomSign(now.Add(-30*time.Second), zoomEndedBody) // signed for the original body
			h := map[string]string{"x-zm-request-timestamp": tss, "x-zm-signature": sig}
			if tt.header != nil {
				tt.header(h)
			}
			w := r.post(PathZoom, tt.body, h)
			if w.Code != tt.code {
				t.Errorf("POST %s = %d; want %d", PathZoom, w.Code, tt.code)
			}
			if tt.code != http.StatusOK {
				if n := len(r.h.queue); n != 0 {
					t.Errorf("refused delivery queued %d signals; want none", n)
				}
				if got := testutil.ToFloat64(r.m.Signals.WithLabelValues("zoom", "unknown", "refused")); got != 1 {
					t.Errorf("refused deliveries counted = %v; want 1", got)
				}
				return
			}
			got := r.drain(t, 1)
			want := []state.Signal{{Vendor: "zoom", Event: state.SignalEnded, Meeting: "zoom:83412345678",
				At: time.Date(2026, 12, 2, 15, 19, 50, 0, time.UTC), Received: now}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("signals (-want +got):\n%s", diff)
			}
		})
	}
}

func TestZoomURLValidation(t *testing.T) {
	r := newRig(t)
	body := `{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1796224800000,"event":"endpoint.url_validation"}`
	w := r.zoom(body, now)
	if w.Code != http.StatusOK {
		t.Fatalf("POST url_validation = %d; want 200", w.Code)
	}
	var got map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, []byte(zoomSecret))
	m.Write([]byte("qgg8vlvZRS6UYooatFL8Aw"))
	want := map[string]string{"plainToken": "qgg8vlvZRS6UYooatFL8Aw", "encryptedToken": hex.EncodeToString(m.Sum(nil))}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("url_validation answer (-want +got):\n%s", diff)
	}
	// A token shaped like a signed message would make the answer a
	// signature of the sender's choosing.
	// Signed, so answered 200 (every signed delivery is), but without
	// the token.
	if w := r.zoom(`{"payload":{"plainToken":"v0:1796224800:{}"},"event":"endpoint.url_validation"}`, now); w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Errorf("POST url_validation with a v0: token = %d %q; want 200 and no answer", w.Code, w.Body)
	}
	// Unsigned challenges are refused like any delivery.
	if w := r.post(PathZoom, body, nil); w.Code != http.StatusUnauthorized {
		t.Errorf("unsigned url_validation = %d; want 401", w.Code)
	}
}

func TestZoomEvents(t *testing.T) {
	tests := []struct {
		name string
		body string
		want state.Signal
	}{
		{"participant left, id as a string",
			`{"event":"meeting.participant_left","event_ts":1796224790000,"payload":{"account_id":"AAA","object":{"id":"83412345678","uuid":"u","host_id":"h","topic":"Weekly sync","type":2,"start_time":"2026-12-02T15:00:00Z","timezone":"UTC","duration":60,"participant":{"user_id":"16778240","user_name":"Bob","id":"iFxeBPYun6SAiWUzBcEkX","participant_uuid":"p","leave_time":"2026-12-02T15:19:00Z","leave_reason":"left the meeting","email":"Bob@Contoso.com","registrant_id":"","participant_user_id":"x"}}}}`,
			state.Signal{Vendor: "zoom", Event: state.SignalLeft, Meeting: "zoom:83412345678", Email: "bob@contoso.com", At: time.Date(2026, 12, 2, 15, 19, 0, 0, time.UTC), Received: now}},
		{"webinar ended",
			`{"event":"webinar.ended","event_ts":1796224790000,"payload":{"account_id":"AAA","object":{"id":"98765432101","uuid":"w==","host_id":"h","topic":"All hands","type":5,"start_time":"2026-12-02T14:00:00Z","end_time":"2026-12-02T15:10:00Z","duration":90,"timezone":"UTC"}}}`,
			state.Signal{Vendor: "zoom", Event: state.SignalEnded, Meeting: "zoom:98765432101", At: time.Date(2026, 12, 2, 15, 10, 0, 0, time.UTC), Received: now}},
		{"participant joined, no join_time: event_ts",
			`{"event":"meeting.participant_joined","event_ts":1796224790000,"payload":{"object":{"id":91234567890,"participant":{"id":"iFxeBPYun6SAiWUzBcEkX","email":"carol@contoso.com"}}}}`,
			state.Signal{Vendor: "zoom", Event: state.SignalJoined, Meeting: "zoom:91234567890", Email: "carol@contoso.com", At: time.UnixMilli(1796224790000).UTC(), Received: now}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			if w := r.zoom(tt.body, now); w.Code != http.StatusOK {
				t.Fatalf("POST = %d; want 200", w.Code)
			}
			if diff := cmp.Diff([]state.Signal{tt.want}, r.drain(t, 1)); diff != "" {
				t.Errorf("signals (-want +got):\n%s", diff)
			}
		})
	}
}

// Webex deliveries, shaped as developer.webex.com documents them.
const (
	webexEnded = `{"id":"Y2lzY29zcGFyazovL3VzL1dFQkhPT0svOTZhYmMyYWEtM2RjYy0xMWU1LWExNTItZmUzNDgxOWNkYzlh","name":"calpresence meetings","targetUrl":"https://calpresence.contoso.com/webhooks/webex","resource":"meetings","event":"ended","orgId":"OTZhYmMyYWEtM2RjYy0xMWU1LWExNTItZmUzNDgxOWNkYzlh","createdBy":"Y2lzY29zcGFyazovL3VzL1BFT1BMRS8xNDJiZjcxNi03YjZlLTQ3ZjctODEyMS1hYzA3ZjA3ZWNmYWY","appId":"Y2lzY29zcGFyazovL3VzL0FQUExJQ0FUSU9OL0MyNzljYjMwYzAyOTE4MGJiNGJkYWViYjA2MWI3OTY1Y2RhMzliNjAyOTdjODUwM2YyNjZhYmY2NmM5OTllYzFm","ownedBy":"org","status":"active","created":"2026-01-10T09:00:00.000Z","actorId":"Y2lzY29zcGFyazovL3VzL1BFT1BMRS8xNDJiZjcxNi03YjZlLTQ3ZjctODEyMS1hYzA3ZjA3ZWNmYWY","data":{"id":"c8a5f5e1c5b64b6ba1c2f4e6a0b1f2a3_I_204252096493788211","meetingSeriesId":"c8a5f5e1c5b64b6ba1c2f4e6a0b1f2a3","scheduledMeetingId":"c8a5f5e1c5b64b6ba1c2f4e6a0b1f2a3_20261202T150000Z","meetingNumber":"25501234567","title":"Quarterly review","start":"2026-12-02T15:00:00Z","end":"2026-12-02T15:18:00Z","hostEmail":"bob@contoso.com","siteUrl":"contoso.webex.com","meetingType":"meeting","state":"ended"}}`
	webexLeft  = `{"id":"Y2lz","name":"calpresence participants","targetUrl":"https://calpresence.contoso.com/webhooks/webex","resource":"meetingParticipants","event":"left","orgId":"OTZh","createdBy":"Y2lz","appId":"Y2lz","ownedBy":"org","status":"active","created":"2026-01-10T09:00:00.000Z","actorId":"Y2lz","data":{"id":"c8a5f5e1c5b64b6ba1c2f4e6a0b1f2a3_I_204252096493788211_23aa5c2a-2d68-3f4e-9b2a-5c3d4e5f6a7b","orgId":"OTZh","host":false,"coHost":false,"email":"Carol@Contoso.com","displayName":"Carol","invitee":true,"muted":false,"state":"end","siteUrl":"contoso.webex.com","meetingId":"c8a5f5e1c5b64b6ba1c2f4e6a0b1f2a3_I_204252096493788211","hostEmail":"bob@contoso.com","devices":[{"correlationId":"7f8e","deviceType":"webex_meeting_center_windows","audioType":"voip","joinedTime":"2026-12-02T15:01:00Z","leftTime":"2026-12-02T15:12:00Z"}],"joinedTime":"2026-12-02T15:01:00Z","leftTime":"2026-12-02T15:12:00Z","meetingStartTime":"2026-12-02T15:00:00Z"}}`
)

func TestWebex(t *testing.T) {
	r := newRig(t)
	if w := r.post(PathWebex, webexEnded, map[string]string{"X-Spark-Signature": webexSign(webexEnded)}); w.Code != http.StatusOK {
		t.Fatalf("POST meetings/ended = %d; want 200", w.Code)
	}
	if w := r.post(PathWebex, webexLeft, map[string]string{"X-Spark-Signature": webexSign(webexLeft)}); w.Code != http.StatusOK {
		t.Fatalf("POST meetingParticipants/left = %d; want 200", w.Code)
	}
	altered := strings.Replace(webexEnded, "25501234567", "25501234568", 1)
	if w := r.post(PathWebex, altered, map[string]string{"X-Spark-Signature": webexSign(webexEnded)}); w.Code != http.StatusUnauthorized {
		t.Errorf("POST with the body altered by one byte = %d; want 401", w.Code)
	}
	if w := r.post(PathWebex, webexEnded, nil); w.Code != http.StatusUnauthorized {
		t.Errorf("POST unsigned = %d; want 401", w.Code)
	}
	end, left := time.Date(2026, 12, 2, 15, 18, 0, 0, time.UTC), time.Date(2026, 12, 2, 15, 12, 0, 0, time.UTC)
	want := []state.Signal{
		{Vendor: "webex", Event: state.SignalEnded, Meeting: "webex:25501234567", At: end, Received: now},
		{Vendor: "webex", Event: state.SignalEnded, Meeting: "webex-id:c8a5f5e1c5b64b6ba1c2f4e6a0b1f2a3_I_204252096493788211", At: end, Received: now},
		{Vendor: "webex", Event: state.SignalLeft, Meeting: "webex-id:c8a5f5e1c5b64b6ba1c2f4e6a0b1f2a3_I_204252096493788211", Email: "carol@contoso.com", At: left, Received: now},
	}
	if diff := cmp.Diff(want, r.drain(t, 3)); diff != "" {
		t.Errorf("signals (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(r.m.Signals.WithLabelValues("webex", "unknown", "refused")); got != 2 {
		t.Errorf("refused deliveries counted = %v; want 2", got)
	}
}

// TestWebexInstanceLinked: a participant event names the meeting instance
// only; the meeting's "started" event gives its number, which links the
// participant to the calendar.
func TestWebexInstanceLinked(t *testing.T) {
	r := newRig(t)
	started := strings.NewReplacer(`"event":"ended"`, `"event":"started"`, `"end":"2026-12-02T15:18:00Z",`, ``, `"state":"ended"`, `"state":"started"`).Replace(webexEnded)
	if w := r.post(PathWebex, started, map[string]string{"X-Spark-Signature": webexSign(started)}); w.Code != http.StatusOK {
		t.Fatalf("POST meetings/started = %d; want 200", w.Code)
	}
	if n := len(r.h.queue); n != 0 {
		t.Errorf("meetings/started queued %d signals; want none", n)
	}
	if w := r.post(PathWebex, webexLeft, map[string]string{"X-Spark-Signature": webexSign(webexLeft)}); w.Code != http.StatusOK {
		t.Fatalf("POST meetingParticipants/left = %d; want 200", w.Code)
	}
	want := []state.Signal{{Vendor: "webex", Event: state.SignalLeft, Meeting: "webex:25501234567", Email: "carol@contoso.com",
		At: time.Date(2026, 12, 2, 15, 12, 0, 0, time.UTC), Received: now}}
	if diff := cmp.Diff(want, r.drain(t, 1)); diff != "" {
		t.Errorf("signals (-want +got):\n%s", diff)
	}
}

// TestBadInput: no delivery below panics or queues a signal, and every
// signed one is answered 200, whatever it holds: Zoom and Webex disable a
// webhook that keeps failing.
func TestBadInput(t *testing.T) {
	tests := []struct {
		name, path, body string
		code             int
		result           string
	}{
		{"oversized", PathZoom, `{"event":"meeting.ended","x":"` + strings.Repeat("a", DefaultMaxBody) + `"}`, http.StatusRequestEntityTooLarge, "too_large"},
		{"malformed JSON", PathZoom, `{"event":"meeting.ended",`, http.StatusOK, "invalid"},
		{"not JSON at all", PathZoom, `event=meeting.ended`, http.StatusOK, "invalid"},
		{"left for a breakout room", PathZoom, `{"event":"meeting.participant_left","payload":{"object":{"id":83412345678,"participant":{"email":"a@contoso.com","leave_time":"2026-12-02T15:19:00Z","leave_reason":"Alice left the meeting to join breakout room."}}}}`, http.StatusOK, "unused"},
		{"unknown event", PathZoom, `{"event":"meeting.sharing_started","payload":{"object":{"id":83412345678}}}`, http.StatusOK, "unused"},
		{"no event", PathZoom, `{"payload":{}}`, http.StatusOK, "unused"},
		{"no meeting id", PathZoom, `{"event":"meeting.ended","payload":{"object":{}}}`, http.StatusOK, "unused"},
		{"meeting id not a number", PathZoom, `{"event":"meeting.ended","payload":{"object":{"id":"abc"}}}`, http.StatusOK, "unused"},
		{"left without email", PathZoom, `{"event":"meeting.participant_left","payload":{"object":{"id":83412345678,"participant":{"user_name":"Dial-in"}}}}`, http.StatusOK, "unused"},
		{"webex malformed", PathWebex, `[1,2`, http.StatusOK, "invalid"},
		{"webex unknown resource", PathWebex, `{"resource":"messages","event":"created","data":{}}`, http.StatusOK, "unused"},
		{"webex joined without email", PathWebex, `{"resource":"meetingParticipants","event":"joined","data":{"meetingId":"m"}}`, http.StatusOK, "unused"},
		{"webex ended without meeting", PathWebex, `{"resource":"meetings","event":"ended","data":{}}`, http.StatusOK, "unused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			var w *httptest.ResponseRecorder
			if tt.path == PathZoom {
				w = r.zoom(tt.body, now)
			} else {
				w = r.post(PathWebex, tt.body, map[string]string{"X-Spark-Signature": webexSign(tt.body)})
			}
			if w.Code != tt.code {
				t.Errorf("POST %s = %d; want %d", tt.path, w.Code, tt.code)
			}
			if n := len(r.h.queue); n != 0 {
				t.Errorf("queued %d signals; want none", n)
			}
			var total float64
			for _, ev := range []string{"unknown", "other", "ended", "left", "joined", "url_validation"} {
				total += testutil.ToFloat64(r.m.Signals.WithLabelValues(strings.TrimPrefix(tt.path, "/webhooks/"), ev, tt.result))
			}
			if total != 1 {
				t.Errorf("deliveries counted as %s = %v; want 1", tt.result, total)
			}
		})
	}
	r := newRig(t)
	if w := r.post(PathZoom, "", nil); w.Code != http.StatusUnauthorized {
		t.Errorf("empty unsigned POST = %d; want 401", w.Code)
	}
	req := httptest.NewRequest(http.MethodGet, PathZoom, nil)
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, req)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET %s = %d; want 405", PathZoom, w.Code)
	}
}

// TestQueueFull: a full queue answers 503 (the vendor retries) rather than
// block the request.
func TestQueueFull(t *testing.T) {
	r := newRig(t) // Queue: 4, nobody draining
	codes := make([]int, 6)
	for i := range codes {
		body := strings.Replace(zoomEndedBody, "83412345678", strconv.Itoa(83412345670+i), 1)
		codes[i] = r.zoom(body, now).Code
	}
	if want := []int{200, 200, 200, 200, 503, 503}; !cmp.Equal(codes, want) {
		t.Errorf("answers = %v; want %v", codes, want)
	}
	if got := testutil.ToFloat64(r.m.Signals.WithLabelValues("zoom", "ended", "dropped")); got != 2 {
		t.Errorf("dropped = %v; want 2", got)
	}
}

func TestUnconfiguredVendor(t *testing.T) {
	h := New(Options{ZoomSecret: zoomSecret, Sink: &sink{}})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, PathWebex, strings.NewReader("{}")))
	if w.Code != http.StatusNotFound {
		t.Errorf("POST %s without a webex secret = %d; want 404", PathWebex, w.Code)
	}
}

func FuzzParseZoom(f *testing.F) {
	f.Add([]byte(zoomEndedBody))
	f.Add([]byte(`{"event":"meeting.participant_left","payload":{"object":{"id":"83412345678","participant":{"email":"a@b.c","leave_time":"2026-12-02T15:19:00Z"}}}}`))
	f.Add([]byte(`{"event":"endpoint.url_validation","payload":{"plainToken":"x"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := ParseZoom(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownEvent) {
				t.Errorf("ParseZoom error %v is neither ErrMalformed nor ErrUnknownEvent", err)
			}
			return
		}
		if ev.PlainToken != "" {
			return
		}
		checkSignal(t, ev.Signal, "zoom:")
	})
}

func FuzzParseWebex(f *testing.F) {
	f.Add([]byte(webexEnded))
	f.Add([]byte(webexLeft))
	f.Add([]byte(`{"resource":"meetings","event":"started","data":{"id":"i","meetingNumber":"25501234567"}}`))
	f.Add([]byte(`{"resource":"meetingParticipants","event":"joined","data":{"meetingNumber":25501234567,"email":"a@b.c"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := ParseWebex(body)
		sigs := d.Signals
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownEvent) {
				t.Errorf("ParseWebex error %v is neither ErrMalformed nor ErrUnknownEvent", err)
			}
			return
		}
		if d.Instance != "" {
			if len(sigs) != 0 || !strings.HasPrefix(d.Meeting, "webex:") {
				t.Errorf("ParseWebex started = %+v; want a meeting key and no signal", d)
			}
			return
		}
		if len(sigs) == 0 {
			t.Fatal("ParseWebex gave no signal and no error")
		}
		for _, s := range sigs {
			checkSignal(t, s, "webex")
		}
	})
}

// checkSignal is what the engine relies on from a parser.
func checkSignal(t *testing.T, s state.Signal, prefix string) {
	t.Helper()
	if !strings.HasPrefix(s.Meeting, prefix) || len(s.Meeting) <= len(prefix)+1 {
		t.Errorf("signal meeting %q; want %s…", s.Meeting, prefix)
	}
	switch s.Event {
	case state.SignalEnded:
		if s.Email != "" {
			t.Errorf("ended signal names a participant %q", s.Email)
		}
	case state.SignalLeft, state.SignalJoined:
		if s.Email == "" || s.Email != strings.ToLower(strings.TrimSpace(s.Email)) {
			t.Errorf("%s signal participant %q; want a lower-cased address", s.Event, s.Email)
		}
	default:
		t.Errorf("signal event %q", s.Event)
	}
}

// TestRunDrainsOnStop: what was acknowledged before Run is stopped still
// reaches the sink.
func TestRunDrainsOnStop(t *testing.T) {
	r := newRig(t)
	for i := range 3 {
		body := strings.Replace(zoomEndedBody, "83412345678", strconv.Itoa(83412345670+i), 1)
		if w := r.zoom(body, now); w.Code != http.StatusOK {
			t.Fatalf("POST = %d; want 200", w.Code)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.h.Run(ctx) // stopped already: hands over the queue and returns
	if len(r.sink.got) != 3 {
		t.Errorf("sink got %d signals after Run was stopped; want 3", len(r.sink.got))
	}
}

// TestSignedUnused: deliveries the vendors send that change nothing — a
// phone dial-in (no email), an event type not used — are answered 200 and
// counted unused under their event; before, a participant without an
// email was answered 400, and Webex deactivates a webhook that keeps
// failing. testdata/README.md names where each shape comes from.
func TestSignedUnused(t *testing.T) {
	tests := []struct{ file, path, event string }{
		{"zoom-joined-dial-in.json", PathZoom, "joined"},
		{"zoom-sharing-started.json", PathZoom, "other"},
		{"webex-joined-dial-in.json", PathWebex, "joined"},
		{"webex-transcript-created.json", PathWebex, "other"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			body := strings.TrimSpace(string(data))
			r := newRig(t)
			var w *httptest.ResponseRecorder
			vendor := strings.TrimPrefix(tt.path, "/webhooks/")
			if tt.path == PathZoom {
				w = r.zoom(body, now.Add(-2*time.Second))
			} else {
				w = r.post(PathWebex, body, map[string]string{"X-Spark-Signature": webexSign(body)})
			}
			if w.Code != http.StatusOK {
				t.Errorf("POST %s = %d; want 200", tt.file, w.Code)
			}
			if n := len(r.h.queue); n != 0 {
				t.Errorf("queued %d signals; want none", n)
			}
			if got := testutil.ToFloat64(r.m.Signals.WithLabelValues(vendor, tt.event, "unused")); got != 1 {
				t.Errorf("calpresence_webhook_signals_total{vendor=%q,event=%q,result=\"unused\"} = %v; want 1", vendor, tt.event, got)
			}
			// Unsigned, the same delivery is still refused.
			if w := r.post(tt.path, body, nil); w.Code != http.StatusUnauthorized {
				t.Errorf("POST %s unsigned = %d; want 401", tt.file, w.Code)
			}
		})
	}
}
