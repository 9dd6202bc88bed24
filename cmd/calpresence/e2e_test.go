package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/testutil"
)

const aliceID = "6e3f7a2c-1b9d-4c5e-8f00-0a1b2c3d4e5f"

// daemon is a `calpresence run` process under test.
type daemon struct {
	cmd  *exec.Cmd
	addr chan string // the server address, from the "serving" log line
	logs testutil.LogBuffer
	done chan error
}

func startDaemon(t *testing.T, cfgPath string) *daemon {
	t.Helper()
	d := &daemon{addr: make(chan string, 1), done: make(chan error, 1)}
	d.cmd = exec.Command(binary, "run", "-config", cfgPath, "-log-format", "json", "-log-level", "debug")
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			d.logs.Write([]byte(line + "\n"))
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving" {
				d.addr <- rec.Addr
			}
		}
		d.done <- d.cmd.Wait()
	}()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("daemon logs:\n%s", d.log())
		}
	})
	return d
}

func (d *daemon) log() string { return d.logs.String() }

// waitCalls waits until the fake has seen n presence calls.
func waitCalls(t *testing.T, g *graphtest.Server, n int, within time.Duration) []graphtest.Call {
	t.Helper()
	var calls []graphtest.Call
	if !testutil.WaitUntil(within, func() bool { calls = g.PresenceCalls(); return len(calls) >= n }) {
		t.Fatalf("saw %d presence calls after %v; want %d: %+v", len(calls), within, n, calls)
	}
	return calls
}

// e2eEnv is a fake Entra + Graph, a feed on loopback with one meeting, and
// a configuration file pointing at both.
type e2eEnv struct {
	g          *graphtest.Server
	clientID   string
	secret     string
	start, end time.Time
	feedHits   *atomic.Int64
	cfgPath    string
}

// newE2E sets up a meeting starting in about lead and lasting length.
func newE2E(t *testing.T, lead, length time.Duration) *e2eEnv {
	t.Helper()
	g := graphtest.NewServer(t, graphtest.WithUsers(graphtest.User{ID: aliceID, UserPrincipalName: "alice@contoso.com", Mail: "alice@contoso.com"}))

	start := time.Now().Add(lead).Truncate(time.Second)
	end := start.Add(length)
	feed := fmt.Sprintf("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//e2e//EN\r\nBEGIN:VEVENT\r\nUID:ZOOM-e2e-1\r\nDTSTAMP:20260101T000000Z\r\n"+
		"DTSTART:%s\r\nDTEND:%s\r\nSUMMARY:Zoom call\r\nLOCATION:https://us02web.zoom.us/j/83412345678?pwd=e2e\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
		start.UTC().Format("20060102T150405Z"), end.UTC().Format("20060102T150405Z"))
	hits := new(atomic.Int64)
	feedSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("token") != "s3cr3t" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		hits.Add(1)
		w.Header().Set("Content-Type", "text/calendar")
		io.WriteString(w, feed)
	}))
	t.Cleanup(feedSrv.Close)

	dir := t.TempDir()
	gc := g.Config()
	cfg := fmt.Sprintf(`graph:
  tenant_id: %s
  client_id: %s
  client_secret: ${E2E_SECRET}
  endpoint: %s
  authority_host: %s
  ca_file: %s
schedule:
  poll_interval: 1s
state:
  path: %s
server:
  listen: "%s"
sources:
  - name: zoom
    url: %s/feed.ics?token=s3cr3t
    users: [alice@contoso.com]
`, gc.TenantID, gc.ClientID, gc.Endpoint, gc.AuthorityHost, gc.CAFile, filepath.Join(dir, "state.db"), freeAddr(t), feedSrv.URL)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("E2E_SECRET", string(gc.ClientSecret))
	return &e2eEnv{g: g, clientID: gc.ClientID, secret: string(gc.ClientSecret), start: start, end: end, feedHits: hits, cfgPath: cfgPath}
}

// waitLog waits for a log line containing want.
func (d *daemon) waitLog(t *testing.T, want string, within time.Duration) {
	t.Helper()
	if !testutil.WaitUntil(within, func() bool { return strings.Contains(d.log(), want) }) {
		t.Fatalf("no log line with %s within %v", want, within)
	}
}

// serving waits for the daemon's server address.
func (d *daemon) serving(t *testing.T) string {
	t.Helper()
	select {
	case addr := <-d.addr:
		return addr
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not start serving")
	}
	return ""
}

// TestRunEndToEnd runs the real daemon against a TLS fake of Entra and
// Graph and a feed served on loopback: a meeting starting a few seconds
// after the test begins must set presence at its start, clear it at its
// end, and further unchanged polls must make no Graph call.
func TestRunEndToEnd(t *testing.T) {
	e := newE2E(t, 4*time.Second, 8*time.Second)
	g, start, end, cfgPath, feedHits := e.g, e.start, e.end, e.cfgPath, e.feedHits
	gc := struct{ ClientID, ClientSecret string }{e.clientID, e.secret}

	d := startDaemon(t, cfgPath)
	addr := d.serving(t)

	calls := waitCalls(t, g, 1, time.Until(start)+5*time.Second)
	set := calls[0]
	if set.Op != graphtest.OpSetPresence || set.User != aliceID || set.Status != 200 {
		t.Fatalf("first call = %s %s status %d; want setPresence for %s answered 200", set.Op, set.User, set.Status, aliceID)
	}
	if set.SessionID != gc.ClientID || set.Availability != "Busy" || set.Activity != "InAConferenceCall" || set.ExpirationDuration != "PT5M" {
		t.Errorf("setPresence body = session %q %s/%s %s; want session %q Busy/InAConferenceCall PT5M",
			set.SessionID, set.Availability, set.Activity, set.ExpirationDuration, gc.ClientID)
	}
	if lag := set.Time.Sub(start); lag < 0 || lag > time.Second {
		t.Errorf("setPresence sent %v after the start; want within [0, 1s]", lag)
	}

	calls = waitCalls(t, g, 2, time.Until(end)+5*time.Second)
	clear := calls[1]
	if clear.Op != graphtest.OpClearPresence || clear.User != aliceID || clear.Status != 200 || clear.SessionID != gc.ClientID {
		t.Fatalf("second call = %s %s session %q status %d; want clearPresence for %s answered 200", clear.Op, clear.User, clear.SessionID, clear.Status, aliceID)
	}
	if lag := clear.Time.Sub(end); lag < 0 || lag > time.Second {
		t.Errorf("clearPresence sent %v after the end; want within [0, 1s]", lag)
	}

	// Further unchanged polls: no Graph call at all.
	hitsBefore := feedHits.Load()
	time.Sleep(3 * time.Second)
	if n := len(g.PresenceCalls()); n != 2 {
		t.Errorf("presence calls after further polls = %d; want 2", n)
	}
	if feedHits.Load() <= hitsBefore {
		t.Errorf("the feed was not polled again (hits %d)", feedHits.Load())
	}

	// Health and metrics.
	body := get(t, "http://"+addr+"/readyz")
	if !strings.Contains(body, `"ready":true`) || !strings.Contains(body, `"source_counts":{"total":1,"loaded":1,"failing":0,"stale":0}`) {
		t.Errorf("/readyz = %s; want ready, the one source counted loaded", body)
	}
	if body := get(t, "http://"+addr+"/readyz?verbose"); !strings.Contains(body, `"healthy":true`) {
		t.Errorf("/readyz?verbose = %s; want the source's health", body)
	}
	metrics := get(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		`calpresence_graph_requests_total{code="200",op="set"} 1`,
		`calpresence_graph_requests_total{code="200",op="clear"} 1`,
		`calpresence_feed_fetches_total{result="not_modified",source="zoom"}`,
		`calpresence_transition_lag_seconds_count 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, leak := range []string{"s3cr3t", string(gc.ClientSecret)} {
		if strings.Contains(body+metrics+d.log(), leak) {
			t.Errorf("a secret (%q) shows in /readyz, /metrics or the logs", leak)
		}
	}

	// resync next to the daemon asks the daemon, and changes nothing.
	stdout, stderr, code := runCLI(t, nil, "resync", "-config", cfgPath)
	if code != 0 || !strings.Contains(stdout, "no presence changes") {
		t.Errorf("resync next to the daemon: exit %d, stdout %q, stderr %q; want 0 and no changes", code, stdout, stderr)
	}

	// SIGTERM: exit 0.
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("daemon exit after SIGTERM: %v; want 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("daemon did not stop within 15s of SIGTERM")
	}
	if n := len(g.PresenceCalls()); n != 2 {
		t.Errorf("presence calls at the end = %d; want 2 (no clear on shutdown)", n)
	}
}

// freeAddr returns a loopback address nothing listens on now, so that a
// resync can find the daemon through the configuration.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestRunRestartAfterKill kills the daemon with SIGKILL in the middle of a
// meeting and starts it again: the session recorded in the state file is
// still valid, so no second setPresence is sent, and the clear still comes
// at the end.
func TestRunRestartAfterKill(t *testing.T) {
	e := newE2E(t, 3*time.Second, 10*time.Second)
	d := startDaemon(t, e.cfgPath)
	d.serving(t)
	waitCalls(t, e.g, 1, time.Until(e.start)+5*time.Second)
	// Kill once the outcome is recorded (logged right after the write). A
	// kill between Graph's answer and that write leaves the intent
	// uncertain, and the restart rightly sends the set again.
	d.waitLog(t, `"msg":"presence set"`, 5*time.Second)
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.done

	d = startDaemon(t, e.cfgPath)
	d.serving(t)
	calls := waitCalls(t, e.g, 2, time.Until(e.end)+5*time.Second)
	if calls[1].Op != graphtest.OpClearPresence {
		t.Fatalf("after a restart mid-meeting the next call = %s; want clearPresence at the end (no duplicate set)", calls[1].Op)
	}
	if lag := calls[1].Time.Sub(e.end); lag < 0 || lag > time.Second {
		t.Errorf("clearPresence sent %v after the end; want within [0, 1s]", lag)
	}
	if !strings.Contains(d.log(), `"msg":"stored copies loaded"`) {
		t.Errorf("restarted daemon did not load the feed from its state file")
	}

	// clear next to the daemon goes through the daemon; the session is
	// already gone, which Graph answers 404: success.
	stdout, stderr, code := runCLI(t, nil, "clear", "-config", e.cfgPath, "-user", "alice@contoso.com")
	if code != 0 || !strings.Contains(stdout, "clear alice@contoso.com") {
		t.Errorf("clear next to the daemon: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if calls := e.g.PresenceCalls(); len(calls) != 3 || calls[2].Status != 404 {
		t.Errorf("clear made calls %+v; want a third call answered 404", calls)
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
}

// TestRunShutdownWithACallInFlight: Graph stops answering a set; SIGTERM
// still ends the daemon within server.shutdown_timeout, with exit 0, and
// the set stays recorded as uncertain for the next start.
func TestRunShutdownWithACallInFlight(t *testing.T) {
	e := newE2E(t, 3*time.Second, time.Minute)
	e.g.Inject(graphtest.Fault{Op: graphtest.OpSetPresence, Delay: 2 * time.Minute})
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.Replace(string(cfg), "server:\n", "server:\n  shutdown_timeout: 2s\n", 1))
	if err := os.WriteFile(e.cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, e.cfgPath)
	d.serving(t)
	time.Sleep(time.Until(e.start.Add(time.Second))) // the set is in flight

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("daemon exit after SIGTERM: %v; want 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop within 15s of SIGTERM with a 2s shutdown_timeout")
	}
	// 2s of grace, plus the process's own start and stop.
	if d := time.Since(stopped); d > 6*time.Second {
		t.Errorf("daemon stopped %v after SIGTERM; want about the 2s shutdown_timeout", d)
	}
	stdout, _, code := runCLI(t, nil, "state", "check", "-config", e.cfgPath)
	if code != 0 || !strings.Contains(stdout, "sessions    1 good") {
		t.Errorf("state after the interrupted set: exit %d\n%s\nwant one session recorded", code, stdout)
	}
}
