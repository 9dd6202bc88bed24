package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/signals"
)

const benchZoomSecret = "bench-zoom-secret"

// postZoomEnded POSTs a signed meeting.ended for meeting to url.
func postZoomEnded(tb testing.TB, url string, meeting int64) {
	tb.Helper()
	now := time.Now()
	body := fmt.Sprintf(`{"event":"meeting.ended","event_ts":%d,"payload":{"account_id":"AAA","object":{"id":%d,"uuid":"u==","host_id":"h","topic":"Zoom burst","type":2,"end_time":%q,"timezone":"UTC"}}}`,
		now.UnixMilli(), meeting, now.UTC().Format(time.RFC3339))
	ts := strconv.FormatInt(now.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(benchZoomSecret))
	mac.Write([]byte("v0:" + ts + ":" + body))
	req, _ := http.NewRequest(http.MethodPost, url+signals.PathZoom, strings.NewReader(body))
	req.Header.Set("x-zm-request-timestamp", ts)
	req.Header.Set("x-zm-signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("POST %s = %d; want 200", signals.PathZoom, resp.StatusCode)
	}
}

// BenchmarkWebhookLag measures a live meeting signal's lag (docs/webhooks.md, issue #8: p99 ≤ 1 s): from POSTing a signed Zoom
// meeting.ended to the webhook receiver to the fake Graph receiving each
// clearPresence, for N people in a meeting that is running (the feed
// still shows it). The real receiver (signals.Handler over loopback HTTP,
// with the state's inbox), engine, bbolt state and Graph client run
// against a Graph answering in
// 150 ms. Each iteration runs a fresh engine and state, waits for the N
// sets, then sends the webhook.
func BenchmarkWebhookLag(b *testing.B) {
	const latency = 150 * time.Millisecond
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("users=%d/latency=150ms/store=bolt", n), func(b *testing.B) {
			o := options{users: userIDs(n), bolt: true, quiet: true, concurrency: 100}
			g := graphtest.NewServer(b)
			g.SetLatency(latency)
			client := warmClient(b, g, o)
			var lags []time.Duration
			meeting := int64(83412345600)
			for b.Loop() {
				meeting++
				g.Reset()
				g.SetLatency(latency)
				begin := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
				body := strings.Replace(ics(event{"burst", begin, begin.Add(time.Hour)}), "SUMMARY:Zoom burst\r\n",
					fmt.Sprintf("SUMMARY:Zoom burst\r\nLOCATION:https://us02web.zoom.us/j/%d?pwd=x\r\n", meeting), 1)
				e := start(b, g, body, client, o)
				waitSets(b, g, n, time.Minute)

				// As the daemon wires it: the signal is kept in the
				// state's inbox before the 200.
				inbox, _ := e.store.(signals.Store)
				h := signals.New(signals.Options{ZoomSecret: benchZoomSecret, Sink: e.eng, Inbox: inbox})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { h.Run(ctx); close(done) }()
				srv := httptest.NewServer(h)

				sent := time.Now()
				postZoomEnded(b, srv.URL, meeting)
				var clears []graphtest.Call
				if !testutil.WaitUntil(time.Minute, func() bool {
					clears = clears[:0]
					for _, c := range g.CallsOp(graphtest.OpClearPresence) {
						if c.Status == http.StatusOK {
							clears = append(clears, c)
						}
					}
					return len(clears) >= n
				}) {
					b.Fatalf("saw %d clears; want %d", len(clears), n)
				}
				for _, c := range clears {
					lags = append(lags, c.Time.Sub(sent))
				}
				srv.Close()
				cancel()
				<-done
				e.stop()
			}
			slices.Sort(lags)
			b.ReportMetric(ms(lags[0]), "min-ms")
			b.ReportMetric(ms(percentile(lags, 50)), "p50-ms")
			b.ReportMetric(ms(percentile(lags, 99)), "p99-ms")
			b.ReportMetric(ms(lags[len(lags)-1]), "max-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
