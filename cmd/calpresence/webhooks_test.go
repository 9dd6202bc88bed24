package main

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
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

// TestRunPresenceAndCallWebhooks runs the real daemon with both vendors'
// webhooks, the calendar showing nothing now: a Zoom Phone call
// (user.presence_status_updated On_Phone_Call) sets alice InACall and
// Available clears her; a Webex Calling call (telephony_calls connected,
// alice looked up by personId on a fake people API) sets her InACall and
// its disconnected clears her. The payloads are the testdata of package
// signals, with times of now.
func TestRunPresenceAndCallWebhooks(t *testing.T) {
	// The meeting is well past the cap on a signal without an end (8 h): a
	// span it overlaps would take its stronger pair (InAConferenceCall).
	e := newE2E(t, 12*time.Hour, 10*time.Minute)
	const zoomSecret, webexSecret, webexToken = "zoom-webhook-secret-0xC0FFEE", "webex-webhook-secret-0xBEEF", "webex-token-0xF00D"
	const aliceWebex = "Y2lzY29zcGFyazovL3VzL1BFT1BMRS9ib2I" // the personId in the testdata
	var lookups atomic.Int32
	people := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lookups.Add(1)
		if r.URL.Path != "/v1/people/"+aliceWebex || r.Header.Get("Authorization") != "Bearer "+webexToken {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, strings.Replace(readSignalsTestdata(t, "webex-person.json"), "Bob@contoso.com", "Alice@Contoso.com", 1))
	}))
	t.Cleanup(people.Close)
	dir := t.TempDir()
	tokenFile := dir + "/webex-token"
	if err := os.WriteFile(tokenFile, []byte(webexToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	whAddr := freeAddr(t)
	f, err := os.OpenFile(e.cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "webhooks:\n  listen: %q\n  zoom:\n    secret_token: %s\n  webex:\n    secret: %s\n    access_token_file: %s\n    api: %s/v1\n",
		whAddr, zoomSecret, webexSecret, tokenFile, people.URL)
	f.Close()

	d := startDaemon(t, e.cfgPath)
	addr := d.serving(t)
	d.waitLog(t, `"msg":"serving webhooks"`, 10*time.Second)
	post := func(path, body string, header map[string]string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+whAddr+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s = %d; want 200", path, resp.StatusCode)
		}
	}
	zoom := func(file, from string) {
		t.Helper()
		body := strings.ReplaceAll(readSignalsTestdata(t, file), "bob@contoso.com", "alice@contoso.com")
		body = strings.Replace(body, from, time.Now().UTC().Format(time.RFC3339Nano), 1)
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		mac := hmac.New(sha256.New, []byte(zoomSecret))
		mac.Write([]byte("v0:" + ts + ":" + body))
		post("/webhooks/zoom", body, map[string]string{"x-zm-request-timestamp": ts, "x-zm-signature": "v0=" + hex.EncodeToString(mac.Sum(nil))})
	}
	webex := func(file, from string) {
		t.Helper()
		body := strings.Replace(readSignalsTestdata(t, file), `"eventTimestamp":"`+from+`"`, `"eventTimestamp":"`+time.Now().UTC().Format(time.RFC3339Nano)+`"`, 1)
		mac := hmac.New(sha1.New, []byte(webexSecret))
		mac.Write([]byte(body))
		post("/webhooks/webex", body, map[string]string{"X-Spark-Signature": hex.EncodeToString(mac.Sum(nil))})
	}
	want := func(n int, op, activity string) {
		t.Helper()
		calls := waitCalls(t, e.g, n, 5*time.Second)
		c := calls[n-1]
		if c.Op != op || c.User != aliceID || activity != "" && !strings.Contains(string(c.Body), `"activity":"`+activity+`"`) {
			t.Fatalf("call %d = %s %s %s; want %s for %s %s", n, c.Op, c.User, c.Body, op, aliceID, activity)
		}
	}

	zoom("zoom-presence-on-phone-call.json", "2026-12-02T15:19:30Z")
	want(1, graphtest.OpSetPresence, "InACall")
	time.Sleep(time.Second)
	zoom("zoom-presence-available.json", "2026-12-02T15:19:55Z")
	want(2, graphtest.OpClearPresence, "")

	webex("webex-call-connected.json", "2026-12-02T15:19:30.120Z")
	want(3, graphtest.OpSetPresence, "InACall")
	time.Sleep(time.Second)
	webex("webex-call-disconnected.json", "2026-12-02T15:19:55.500Z")
	want(4, graphtest.OpClearPresence, "")
	if n := lookups.Load(); n != 1 {
		t.Errorf("Webex people looked up %d times; want 1 (cached)", n)
	}
	// A delivery is counted once the engine has taken it, which may be
	// just after the Graph call it set off.
	for _, w := range []string{`calpresence_webhook_signals_total{event="presence",result="applied",vendor="zoom"} 2`,
		`calpresence_webhook_signals_total{event="call",result="applied",vendor="webex"} 2`} {
		deadline := time.Now().Add(2 * time.Second)
		for !strings.Contains(get(t, "http://"+addr+"/metrics"), w) {
			if time.Now().After(deadline) {
				t.Errorf("/metrics lacks %q", w)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if strings.Contains(d.log(), webexToken) {
		t.Error("the Webex access token shows in the logs")
	}
}

// readSignalsTestdata reads a vendor payload kept with package signals.
func readSignalsTestdata(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile("../../signals/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}
