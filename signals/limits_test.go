package signals

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	tu "github.com/calpresence/calpresence/internal/testutil"
)

// The webhook listener faces the internet: what can be refused on its
// headers is refused before the body is read, bodies are read under a
// deadline and a bound, and refusals are logged sampled. These tests talk
// to a real HTTP server over raw connections, as a flood would.

// limitsRig serves a Handler with small limits on loopback.
type limitsRig struct {
	*rig
	srv  *httptest.Server
	logs *tu.LogBuffer
}

func newLimitsRig(t *testing.T, inFlight int, bodyTimeout time.Duration) *limitsRig {
	return newLimitsRigSmall(t, inFlight, 0, bodyTimeout)
}

func newLimitsRigSmall(t *testing.T, inFlight, smallInFlight int, bodyTimeout time.Duration) *limitsRig {
	t.Helper()
	r := &limitsRig{rig: &rig{sink: &sink{seen: make(chan struct{}, 100)}, m: NewMetrics(nil)}, logs: &tu.LogBuffer{}}
	r.h = New(Options{ZoomSecret: zoomSecret, WebexSecret: webexSecret, Sink: r.sink, Metrics: r.m, Now: func() time.Time { return now },
		MaxInFlight: inFlight, MaxSmallInFlight: smallInFlight, BodyTimeout: bodyTimeout, RefusalLogEvery: time.Hour,
		Logger: slog.New(slog.NewTextHandler(r.logs, nil))})
	r.srv = httptest.NewServer(r.h)
	t.Cleanup(r.srv.Close)
	return r
}

// upload opens a connection and sends a POST's headers (Content-Length n)
// and the first sent bytes of its body, then stalls.
func (r *limitsRig) upload(t *testing.T, path string, header map[string]string, n, sent int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", r.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: calpresence.contoso.com\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", path, n)
	for k, v := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	b.WriteString(strings.Repeat("a", sent))
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	return c
}

// answer reads the response on c within d.
func answer(t *testing.T, c net.Conn, d time.Duration) (*http.Response, time.Duration) {
	t.Helper()
	t0 := time.Now()
	c.SetReadDeadline(t0.Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer within %s: %v", d, err)
	}
	resp.Body.Close()
	return resp, time.Since(t0)
}

// forged are signature headers shaped as Zoom's, which only the body can
// prove wrong.
func forged() map[string]string {
	return map[string]string{"x-zm-request-timestamp": fmt.Sprint(now.Unix()), "x-zm-signature": "v0=" + strings.Repeat("0", 64)}
}

// TestRefusedBeforeTheBody: a Content-Length over the cap is answered 413,
// and a delivery whose signature headers cannot be right 401, before a
// byte of the body is read — the body is never sent here — and the
// connection is closed.
func TestRefusedBeforeTheBody(t *testing.T) {
	r := newLimitsRig(t, 4, time.Minute)
	tests := []struct {
		name   string
		path   string
		header map[string]string
		n      int
		code   int
	}{
		{"1 MB unsigned", PathZoom, nil, 1 << 20, http.StatusRequestEntityTooLarge},
		{"64 KiB + 1 forged", PathZoom, forged(), DefaultMaxBody + 1, http.StatusRequestEntityTooLarge},
		{"unsigned zoom", PathZoom, nil, 1000, http.StatusUnauthorized},
		{"zoom timestamp 6 minutes old", PathZoom, map[string]string{"x-zm-request-timestamp": fmt.Sprint(now.Add(-6 * time.Minute).Unix()), "x-zm-signature": forged()["x-zm-signature"]}, 1000, http.StatusUnauthorized},
		{"zoom signature not hex", PathZoom, map[string]string{"x-zm-request-timestamp": fmt.Sprint(now.Unix()), "x-zm-signature": "v0=" + strings.Repeat("z", 64)}, 1000, http.StatusUnauthorized},
		{"unsigned webex", PathWebex, nil, 1000, http.StatusUnauthorized},
		{"webex signature too short", PathWebex, map[string]string{"X-Spark-Signature": "abc"}, 1000, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := r.upload(t, tt.path, tt.header, tt.n, 0)
			resp, _ := answer(t, c, 2*time.Second)
			if resp.StatusCode != tt.code || !resp.Close {
				t.Errorf("POST with Content-Length %d and no body = %d (close %t); want %d at once, connection closed", tt.n, resp.StatusCode, resp.Close, tt.code)
			}
		})
	}
	if got := testutil.ToFloat64(r.m.Signals.WithLabelValues("zoom", "unknown", "too_large")); got != 2 {
		t.Errorf("too_large counted %v; want 2", got)
	}
	// One log line for all of them (sampled), never one each.
	if lines := r.logs.Lines("webhook delivery refused"); len(lines) != 1 {
		t.Errorf("%d log lines about refusals; want 1 (sampled):\n%s", len(lines), r.logs)
	}
}

// TestInFlightBound: slow uploads hold a slot for the body deadline at
// most; beyond MaxInFlight a delivery is answered 503 with Retry-After at
// once; once the slow ones are cut (408), a signed delivery goes through.
func TestInFlightBound(t *testing.T) {
	const bodyTimeout = 500 * time.Millisecond
	r := newLimitsRig(t, 2, bodyTimeout)
	slow := []net.Conn{r.upload(t, PathZoom, forged(), 10000, 100), r.upload(t, PathZoom, forged(), 10000, 100)}
	if !tu.WaitUntil(2*time.Second, func() bool { return len(r.h.slots) == 2 }) {
		t.Fatalf("%d bodies being read; want 2", len(r.h.slots))
	}
	resp, took := answer(t, r.upload(t, PathZoom, forged(), 10000, 100), time.Second)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || took > 200*time.Millisecond {
		t.Errorf("third upload = %d (Retry-After %q) after %s; want 503 with Retry-After at once", resp.StatusCode, resp.Header.Get("Retry-After"), took)
	}
	if got := testutil.ToFloat64(r.m.Signals.WithLabelValues("zoom", "unknown", "busy")); got != 1 {
		t.Errorf("busy counted %v; want 1", got)
	}
	for i, c := range slow {
		resp, took := answer(t, c, 3*time.Second)
		if resp.StatusCode != http.StatusRequestTimeout || took > bodyTimeout+time.Second {
			t.Errorf("slow upload %d = %d after %s; want 408 within the body deadline (%s)", i, resp.StatusCode, took, bodyTimeout)
		}
	}
	if !tu.WaitUntil(time.Second, func() bool { return len(r.h.slots) == 0 }) {
		t.Fatalf("%d slots still held after the slow uploads were cut", len(r.h.slots))
	}
	if code := r.signedEnded(t); code != http.StatusOK {
		t.Errorf("signed meeting.ended after the slow uploads = %d; want 200", code)
	}
}

// signedEnded posts a signed meeting.ended and returns the answer's code.
func (r *limitsRig) signedEnded(t *testing.T) int {
	t.Helper()
	tss, sig := zoomSign(now, zoomEndedBody)
	req, _ := http.NewRequest(http.MethodPost, r.srv.URL+PathZoom, strings.NewReader(zoomEndedBody))
	req.Header.Set("x-zm-request-timestamp", tss)
	req.Header.Set("x-zm-signature", sig)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestVendorDeliveryDuringFlood: stalled uploads of large bodies hold
// every slot for large bodies, yet a vendor's delivery (a few KB) sent
// meanwhile is read at once; small bodies have their own, wider bound
// (503 beyond it too), and a stalled small one is cut at the deadline.
func TestVendorDeliveryDuringFlood(t *testing.T) {
	const bodyTimeout = 2 * time.Second
	r := newLimitsRigSmall(t, 2, 3, bodyTimeout)
	r.upload(t, PathZoom, forged(), 10000, 9000)
	r.upload(t, PathZoom, forged(), 10000, 9000)
	if !tu.WaitUntil(time.Second, func() bool { return len(r.h.slots) == 2 }) {
		t.Fatalf("%d large bodies being read; want 2", len(r.h.slots))
	}
	t0 := time.Now()
	if code := r.signedEnded(t); code != http.StatusOK || time.Since(t0) > bodyTimeout/2 {
		t.Errorf("signed meeting.ended while the large slots are held = %d after %s; want 200 at once", code, time.Since(t0))
	}
	if got := r.drain(t, 1); len(got) != 1 || got[0].Meeting != "zoom:83412345678" {
		t.Errorf("signals = %+v; want the meeting ended", got)
	}

	small := []net.Conn{r.upload(t, PathZoom, forged(), 2000, 100), r.upload(t, PathZoom, forged(), 2000, 100), r.upload(t, PathZoom, forged(), 2000, 100)}
	if !tu.WaitUntil(time.Second, func() bool { return len(r.h.smallSlots) == 3 }) {
		t.Fatalf("%d small bodies being read; want 3", len(r.h.smallSlots))
	}
	if resp, _ := answer(t, r.upload(t, PathZoom, forged(), 2000, 100), time.Second); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a small upload beyond MaxSmallInFlight = %d; want 503", resp.StatusCode)
	}
	if resp, took := answer(t, small[0], 2*bodyTimeout); resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("a stalled small upload = %d after %s; want 408 at the body deadline", resp.StatusCode, took)
	}
}
