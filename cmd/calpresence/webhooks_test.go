package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/graphtest"
)

// TestRunZoomWebhookEndsMeeting runs the real daemon with webhooks on: a
// signed Zoom meeting.ended POSTed to it clears the person within a second,
// while their feed still shows the meeting running, and later polls of
// that feed do not set them busy again.
func TestRunZoomWebhookEndsMeeting(t *testing.T) {
	e := newE2E(t, 3*time.Second, 10*time.Minute)
	const secret = "zoom-webhook-secret-0xC0FFEE"
	whAddr := freeAddr(t)
	f, err := os.OpenFile(e.cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "webhooks:\n  listen: %q\n  zoom:\n    secret_token: ${E2E_ZOOM_SECRET}\n", whAddr)
	f.Close()
	t.Setenv("E2E_ZOOM_SECRET", secret)

	d := startDaemon(t, e.cfgPath)
	addr := d.serving(t)
	d.waitLog(t, `"msg":"serving webhooks"`, 10*time.Second)
	calls := waitCalls(t, e.g, 1, time.Until(e.start)+5*time.Second)
	if calls[0].Op != graphtest.OpSetPresence || calls[0].User != aliceID {
		t.Fatalf("first call = %s %s; want setPresence for %s", calls[0].Op, calls[0].User, aliceID)
	}
	time.Sleep(time.Second) // well inside the meeting

	body := fmt.Sprintf(`{"event":"meeting.ended","event_ts":%d,"payload":{"account_id":"AAA","object":{"id":83412345678,"uuid":"u==","host_id":"h","topic":"Zoom call","type":2,"start_time":%q,"end_time":%q,"duration":10,"timezone":"UTC"}}}`,
		time.Now().UnixMilli(), e.start.UTC().Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339))
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v0:" + ts + ":" + body))
	req, _ := http.NewRequest(http.MethodPost, "http://"+whAddr+"/webhooks/zoom", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-zm-request-timestamp", ts)
	req.Header.Set("x-zm-signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	sent := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /webhooks/zoom = %d; want 200", resp.StatusCode)
	}
	calls = waitCalls(t, e.g, 2, 5*time.Second)
	clear := calls[1]
	if clear.Op != graphtest.OpClearPresence || clear.User != aliceID || clear.Status != 200 {
		t.Fatalf("second call = %s %s status %d; want clearPresence for %s", clear.Op, clear.User, clear.Status, aliceID)
	}
	lag := clear.Time.Sub(sent)
	t.Logf("clearPresence sent %v after the webhook was posted", lag)
	if lag > time.Second {
		t.Errorf("clearPresence sent %v after the webhook; want within 1s", lag)
	}

	// The feed still shows the meeting running: polls (every second) must
	// not set alice busy again.
	time.Sleep(3 * time.Second)
	if n := len(e.g.PresenceCalls()); n != 2 {
		t.Errorf("presence calls after further polls = %d; want 2: %+v", n, e.g.PresenceCalls())
	}
	d.waitLog(t, `"reason":"early-end:signal"`, time.Second)
	d.waitLog(t, `"msg":"live meeting signal"`, time.Second)
	metrics := get(t, "http://"+addr+"/metrics")
	if want := `calpresence_webhook_signals_total{event="ended",result="applied",vendor="zoom"} 1`; !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %q", want)
	}

	// A forged delivery (wrong secret) is refused and changes nothing.
	req, _ = http.NewRequest(http.MethodPost, "http://"+whAddr+"/webhooks/zoom", strings.NewReader(body))
	req.Header.Set("x-zm-request-timestamp", ts)
	req.Header.Set("x-zm-signature", "v0=00")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged POST = %v, %v; want 401", resp, err)
	}
	if strings.Contains(d.log()+metrics, secret) {
		t.Error("the webhook secret shows in the logs or /metrics")
	}
}
