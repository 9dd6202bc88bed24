package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/server"
	"github.com/calpresence/calpresence/signals"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/engine"
)

const feed = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//app test//EN\r\nEND:VCALENDAR\r\n"

// daemon is an App running a dry-run configuration of file feeds, serving
// on a free loopback port.
type daemon struct {
	dir, cfgPath string
	app          *App
	addr         string
	logs         *testutil.LogBuffer
}

// writeConfig writes the configuration with the named sources (each a
// file feed in the folder) and extra top-level YAML.
func (d *daemon) writeConfig(t *testing.T, extra string, names ...string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "graph:\n  dry_run: true\nstate:\n  path: %s\nserver:\n  listen: \"\"\n  admin_token_file: token\n%s\nsources:\n",
		filepath.Join(d.dir, "state.db"), extra)
	for _, n := range names {
		fmt.Fprintf(&b, "  - name: %s\n    url: file://%s\n    users: [%s@contoso.com]\n", n, filepath.Join(d.dir, n+".ics"), n)
		if err := os.WriteFile(filepath.Join(d.dir, n+".ics"), []byte(feed), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(d.cfgPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (d *daemon) setToken(t *testing.T, token string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(d.dir, "token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func startDaemon(t *testing.T, names ...string) *daemon {
	t.Helper()
	d := &daemon{dir: t.TempDir(), logs: &testutil.LogBuffer{}}
	d.cfgPath = filepath.Join(d.dir, "config.yaml")
	d.setToken(t, "tok3n")
	d.writeConfig(t, "", names...)
	cfg, err := config.Load(d.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	bound := make(chan net.Addr, 1)
	a, err := New(context.Background(), cfg, WithLogger(slog.New(slog.NewJSONHandler(d.logs, nil))),
		WithRegistry(prometheus.NewRegistry()), WithListen("127.0.0.1:0", func(a net.Addr) { bound <- a }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	d.app, d.addr = a, (<-bound).String()
	t.Cleanup(func() {
		cancel()
		if err := a.Wait(); err != nil {
			t.Errorf("Wait = %v; want nil", err)
		}
		a.Close()
		if t.Failed() {
			t.Logf("logs:\n%s", d.logs.String())
		}
	})
	if !testutil.WaitUntil(10*time.Second, func() bool { return a.Readiness(ctx, true).Ready }) {
		t.Fatalf("not ready: %+v", a.Readiness(ctx, true))
	}
	return d
}

// post sends POST path with the headers, as the CLI would with them.
func (d *daemon) post(t *testing.T, path string, headers map[string]string) (int, server.ActionResponse) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+d.addr+path, strings.NewReader("{}"))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out server.ActionResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return resp.StatusCode, out
}

func (d *daemon) readyz(t *testing.T) (int, engine.Readiness) {
	t.Helper()
	resp, err := http.Get("http://" + d.addr + "/readyz?verbose") // every source
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r engine.Readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, r
}

func names(r engine.Readiness) []string {
	var out []string
	for _, s := range r.Sources {
		out = append(out, s.Name)
	}
	return out
}

var withToken = map[string]string{"Content-Type": "application/json", "Authorization": "Bearer tok3n"}

func TestReloadOverHTTP(t *testing.T) {
	d := startDaemon(t, "zoom")

	// The admin rules of resync and clear.
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{"no token", map[string]string{"Content-Type": "application/json"}, 401},
		{"wrong token", map[string]string{"Content-Type": "application/json", "Authorization": "Bearer nope"}, 401},
		{"browser form", map[string]string{"Content-Type": "text/plain", "Authorization": "Bearer tok3n"}, 415},
		{"cross-site", map[string]string{"Content-Type": "application/json", "Authorization": "Bearer tok3n", "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, 403},
	} {
		if code, resp := d.post(t, "/-/reload", tc.headers); code != tc.want || resp.Reload != nil {
			t.Errorf("%s: POST /-/reload = %d %+v; want %d and no reload", tc.name, code, resp, tc.want)
		}
	}
	if d.app.lastReload() != nil {
		t.Fatal("a refused request reloaded")
	}

	// A source added.
	d.writeConfig(t, "", "zoom", "webex")
	code, resp := d.post(t, "/-/reload", withToken)
	if code != 200 || resp.Reload == nil || !slices.Equal(resp.Reload.Added, []string{"webex"}) || resp.Reload.Unchanged != 1 {
		t.Fatalf("POST /-/reload = %d %+v; want 200, webex added", code, resp)
	}
	if !testutil.WaitUntil(10*time.Second, func() bool {
		_, r := d.readyz(t)
		return slices.Equal(names(r), []string{"webex", "zoom"}) && r.Sources[0].Loaded
	}) {
		_, r := d.readyz(t)
		t.Fatalf("/readyz sources = %+v; want webex read, and zoom", r.Sources)
	}

	// An invalid one: refused, the one in force stays, and says so.
	d.writeConfig(t, "presence:\n  activity: Napping\n", "zoom", "webex", "Bad_Name")
	code, resp = d.post(t, "/-/reload", withToken)
	if code != 422 || !strings.Contains(resp.Error, "configuration refused") || !strings.Contains(resp.Error, "presence.activity") ||
		!strings.Contains(resp.Error, "sources[2].name") {
		t.Errorf("POST /-/reload of an invalid configuration = %d %+v; want 422 naming every problem", code, resp)
	}
	code, r := d.readyz(t)
	if code != 200 || !r.Ready || r.Reload == nil || !strings.Contains(r.Reload.Error, "presence.activity") {
		t.Errorf("/readyz = %d %+v; want 200, ready, with the reload error", code, r)
	}
	if !slices.ContainsFunc(r.Degraded, func(s string) bool { return strings.HasPrefix(s, "reload failed at ") }) {
		t.Errorf("/readyz degraded = %q; want a reload failed line", r.Degraded)
	}
	if got := names(r); !slices.Equal(got, []string{"webex", "zoom"}) {
		t.Errorf("/readyz sources = %v; want the ones in force", got)
	}
	if got := d.logs.Lines("reload: configuration problem"); len(got) != 2 {
		t.Errorf("problems logged = %q; want one line each", got)
	}
	metrics := get(t, "http://"+d.addr+"/metrics")
	for _, want := range []string{`calpresence_config_reloads_total{result="ok"} 1`, `calpresence_config_reloads_total{result="refused"} 1`,
		"calpresence_config_last_reload_successful 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	page := get(t, "http://"+d.addr+"/")
	if !strings.Contains(page, "reload failed") || !strings.Contains(page, "presence.activity") {
		t.Errorf("status page lacks the reload error:\n%s", page)
	}

	// A new token file: rotated by the reload, and a key that needs a
	// restart named.
	d.setToken(t, "n3w")
	d.writeConfig(t, "webhooks:\n  zoom:\n    secret_token: s\n", "zoom")
	code, resp = d.post(t, "/-/reload", withToken)
	if code != 200 || !slices.Equal(resp.Reload.Removed, []string{"webex"}) || !slices.Equal(resp.Reload.NeedsRestart, []string{"webhooks"}) {
		t.Errorf("POST /-/reload = %d %+v; want webex removed, webhooks needing a restart", code, resp)
	}
	if code, _ := d.post(t, "/-/reload", withToken); code != 401 {
		t.Errorf("the old token after rotation = %d; want 401", code)
	}
	if code, _ := d.post(t, "/-/reload", map[string]string{"Content-Type": "application/json", "Authorization": "Bearer n3w"}); code != 200 {
		t.Errorf("the new token = %d; want 200", code)
	}
	if _, r := d.readyz(t); r.Reload == nil || r.Reload.Error != "" {
		t.Errorf("/readyz reload = %+v; want the last, successful one", r.Reload)
	}
}

// TestReloadHostnames: the pages answer the names in server.hostnames of
// the configuration in force; a reload that lists a new one puts it in
// force at once, with no restart.
func TestReloadHostnames(t *testing.T) {
	d := startDaemon(t, "zoom")
	getAs := func(host, path string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+d.addr+path, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/", "/readyz", "/metrics"} {
		if code := getAs("calpresence.internal:8080", path); code != 421 {
			t.Errorf("GET %s as calpresence.internal before it is listed = %d; want 421", path, code)
		}
	}
	// extra lands right after the server keys: it is server.hostnames.
	d.writeConfig(t, "  hostnames: [calpresence.internal]\n", "zoom")
	code, resp := d.post(t, "/-/reload", withToken)
	if code != 200 || resp.Reload == nil || len(resp.Reload.NeedsRestart) != 0 {
		t.Fatalf("POST /-/reload = %d %+v; want 200, nothing needing a restart", code, resp)
	}
	for _, path := range []string{"/", "/readyz", "/metrics"} {
		if code := getAs("calpresence.internal:8080", path); code != 200 {
			t.Errorf("GET %s as calpresence.internal once listed = %d; want 200", path, code)
		}
		if code := getAs("evil.example:8080", path); code != 421 {
			t.Errorf("GET %s as evil.example = %d; want 421", path, code)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestNoEngine: an App that runs no engine (a replica standing by) says
// why on /readyz and the status page, and answers admin actions 503.
func TestNoEngine(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Graph.DryRun = true
	cfg.Sources = []config.Source{{Name: "zoom", URL: "file://" + filepath.Join(dir, "zoom.ics"), Users: []string{"a@contoso.com"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := New(context.Background(), cfg, WithRegistry(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	srv := httptest.NewServer(server.Handler(a, a.Registry(), "", slog.New(slog.DiscardHandler)))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var r engine.Readiness
	json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if resp.StatusCode != 503 || len(r.Reasons) != 1 || !strings.HasPrefix(r.Reasons[0], "no engine running: ") {
		t.Errorf("/readyz = %d %+v; want 503 saying no engine runs", resp.StatusCode, r)
	}
	for _, path := range []string{"/-/resync", "/-/clear"} {
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(`{"all":true}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || !strings.Contains(string(b), "no engine running") {
			t.Errorf("POST %s = %d %s; want 503 saying why", path, resp.StatusCode, b)
		}
	}
	if page := get(t, srv.URL+"/"); !strings.Contains(page, "no engine running") {
		t.Errorf("status page does not say no engine runs:\n%s", page)
	}
	// A signal with no engine to take it waits in the store's inbox, for
	// the engine that starts next.
	if res, err := a.Signal(context.Background(), engine.Signal{Vendor: "zoom", Event: state.SignalEnded, Meeting: "zoom:83412345678", At: time.Now()}); res != signals.Queued || err != nil {
		t.Errorf("Signal = %q, %v; want %q", res, err, signals.Queued)
	}

	// Later (a standby become leader): an engine started behind the same
	// server answers.
	if err := os.WriteFile(filepath.Join(dir, "zoom.ics"), []byte(feed), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	eng, err := a.StartEngine(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); a.bg.Wait() }()
	if a.Engine() != eng {
		t.Error("Engine() is not the engine started")
	}
	if !testutil.WaitUntil(10*time.Second, func() bool {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}) {
		t.Errorf("/readyz not 200 after StartEngine: %+v", a.Readiness(ctx, true))
	}
	resp, err = http.Post(srv.URL+"/-/resync", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("POST /-/resync after StartEngine = %d; want 200", resp.StatusCode)
	}
}
