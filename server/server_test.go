package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/sync/engine"
	"github.com/calpresence/calpresence/sync/identity"
	"github.com/calpresence/calpresence/sync/plan"
)

type fakeEngine struct {
	ready   bool
	resyncs []engine.ResyncRequest
	clears  [][]string
	reloads int
	err     error
	status  engine.Status
}

func (f *fakeEngine) Reload(ctx context.Context) (engine.ReloadReport, error) {
	f.reloads++
	return engine.ReloadReport{Added: []string{"webex"}, Unchanged: 1}, f.err
}

func (f *fakeEngine) Status(ctx context.Context, now time.Time) engine.Status { return f.status }

func (f *fakeEngine) Readiness(ctx context.Context, all bool) engine.Readiness {
	r := engine.Readiness{Ready: f.ready, SourceCounts: engine.SourceCounts{Total: 1, Loaded: 1},
		Sources:    []engine.SourceStatus{},
		Unresolved: &identity.UnresolvedSummary{Count: 1200, First: []identity.Unresolved{{Address: "ghost@contoso.com", Reason: "unknown"}}}}
	if all || !f.ready {
		// As the engine lists them: a healthy source only when asked.
		r.Sources = append(r.Sources, engine.SourceStatus{Name: "zoom", URL: "https://example.zoom.us/feed.ics?<redacted>", Loaded: true, Healthy: f.ready})
	}
	if !f.ready {
		r.Reasons = []string{"the first reconcile is not done yet"}
	}
	return r
}

func (f *fakeEngine) Resync(ctx context.Context, req engine.ResyncRequest) ([]engine.Result, error) {
	f.resyncs = append(f.resyncs, req)
	return []engine.Result{{Action: plan.Action{Op: plan.OpSet, User: "9a1f3c2e-4b5d-4e6f-8a7b-0c1d2e3f4a5b", Name: "alice@contoso.com", Reason: "start"}}}, f.err
}

func (f *fakeEngine) Clear(ctx context.Context, users []string, all bool) ([]engine.Result, error) {
	f.clears = append(f.clears, users)
	return nil, f.err
}

// podHost is the Host a probe or a scrape names: the pod's address.
const podHost = "10.0.0.5:8080"

func do(t *testing.T, h http.Handler, method, path, remote, auth, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = remote
	req.Host = podHost // as a probe or Prometheus sends it, not httptest's example.com
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func TestEndpoints(t *testing.T) {
	eng := &fakeEngine{}
	h := Handler(eng, prometheus.NewRegistry(), "tok3n", slog.New(slog.DiscardHandler))
	if code, _ := do(t, h, "GET", "/healthz", "10.0.0.9:1234", "", ""); code != 200 {
		t.Errorf("/healthz = %d; want 200", code)
	}
	if code, body := do(t, h, "GET", "/readyz", "10.0.0.9:1234", "", ""); code != 503 || !strings.Contains(body, `"ready":false`) ||
		!strings.Contains(body, `"reasons":["the first reconcile is not done yet"]`) {
		t.Errorf("/readyz before the first pass = %d %s; want 503 with the reason", code, body)
	}
	eng.ready = true
	if code, body := do(t, h, "GET", "/readyz", "10.0.0.9:1234", "", ""); code != 200 || strings.Contains(body, `"healthy":true`) ||
		!strings.Contains(body, `"source_counts":{"total":1,"loaded":1,"failing":0,"stale":0}`) ||
		!strings.Contains(body, `"unresolved_addresses":{"count":1200,"first":[{"address":"ghost@contoso.com","reason":"unknown"}]}`) {
		t.Errorf("/readyz = %d %s; want 200 with the sources counted, none listed, and the unresolved addresses summarised", code, body)
	}
	if code, body := do(t, h, "GET", "/readyz?verbose", "10.0.0.9:1234", "", ""); code != 200 || !strings.Contains(body, `"name":"zoom"`) ||
		!strings.Contains(body, `"healthy":true`) {
		t.Errorf("/readyz?verbose = %d %s; want 200 with every source's health", code, body)
	}
	if code, _ := do(t, h, "GET", "/metrics", "10.0.0.9:1234", "", ""); code != 200 {
		t.Errorf("/metrics = %d; want 200", code)
	}
}

// adminReq is one admin request as a client sends it.
type adminReq struct {
	path, remote, host string
	headers            map[string]string
	body               string
}

// send serves req on h and returns the status and body.
func send(t *testing.T, h http.Handler, req adminReq) (int, string) {
	t.Helper()
	rec := sendRec(t, h, req)
	return rec.Code, rec.Body.String()
}

// sendRec serves req on h and returns the whole answer.
func sendRec(t *testing.T, h http.Handler, req adminReq) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest("POST", req.path, strings.NewReader(req.body))
	r.RemoteAddr = req.remote
	if req.host != "" {
		r.Host = req.host
	}
	for k, v := range req.headers {
		r.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// The headers a browser sends with the forgery, a page on another
// site running
//
//	fetch('http://127.0.0.1:8080/-/clear', {method:'POST', mode:'no-cors', body:'{"all":true}'})
//
// (Chromium's, as sent: a string body makes it text/plain, with no preflight.)
var noCORS = map[string]string{
	"Content-Type":   "text/plain;charset=UTF-8",
	"Origin":         "http://evil.example",
	"Sec-Fetch-Site": "cross-site",
	"Sec-Fetch-Mode": "no-cors",
	"Sec-Fetch-Dest": "empty",
	"Referer":        "http://evil.example/",
	"User-Agent":     "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
}

func with(h map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(out, kv[i])
		} else {
			out[kv[i]] = kv[i+1]
		}
	}
	return out
}

var jsonCT = map[string]string{"Content-Type": "application/json"}

// TestAdminAccess runs the admin rules (docs/operations.md) over
// token configured or not × loopback or remote caller × right, wrong or
// missing token × what a browser adds.
func TestAdminAccess(t *testing.T) {
	const loop4, loop6, remote = "127.0.0.1:5000", "[::1]:5000", "10.0.0.9:5000"
	right := with(jsonCT, "Authorization", "Bearer tok3n")
	wrong := with(jsonCT, "Authorization", "Bearer nope")
	tests := []struct {
		name  string
		token string
		req   adminReq
		want  int
	}{
		// An admin token is configured: it is needed by everyone.
		{"token: loopback with it", "tok3n", adminReq{remote: loop4, host: "127.0.0.1:8080", headers: right}, 200},
		{"token: loopback without it", "tok3n", adminReq{remote: loop4, host: "127.0.0.1:8080", headers: jsonCT}, 401},
		{"token: loopback with a wrong one", "tok3n", adminReq{remote: loop4, host: "127.0.0.1:8080", headers: wrong}, 401},
		{"token: sidecar (loopback peer, service name) without it", "tok3n", adminReq{remote: loop4, host: "calpresence.ops.svc:8080", headers: jsonCT}, 401},
		{"token: sidecar with it", "tok3n", adminReq{remote: loop4, host: "calpresence.ops.svc:8080", headers: right}, 200},
		{"token: remote with it", "tok3n", adminReq{remote: remote, host: "calpresence:8080", headers: right}, 200},
		{"token: remote without it", "tok3n", adminReq{remote: remote, host: "calpresence:8080", headers: jsonCT}, 401},
		{"token: remote with a wrong one", "tok3n", adminReq{remote: remote, host: "calpresence:8080", headers: wrong}, 401},
		{"token: remote with an empty bearer", "tok3n", adminReq{remote: remote, headers: with(jsonCT, "Authorization", "Bearer ")}, 401},
		{"token: the token as Basic credentials", "tok3n", adminReq{remote: loop4, headers: with(jsonCT, "Authorization", "Basic tok3n")}, 401},
		{"token: no-cors forgery from loopback", "tok3n", adminReq{remote: loop4, host: "127.0.0.1:8080", headers: noCORS}, 403},
		{"token: with it, but cross-site", "tok3n", adminReq{remote: remote, headers: with(right, "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site")}, 403},
		{"token: with it, but text/plain", "tok3n", adminReq{remote: remote, headers: with(right, "Content-Type", "text/plain")}, 415},

		// No admin token: loopback only, and nothing a browser can forge.
		{"no token: loopback v4", "", adminReq{remote: loop4, host: "127.0.0.1:8080", headers: jsonCT}, 200},
		{"no token: loopback v6", "", adminReq{remote: loop6, host: "[::1]:8080", headers: jsonCT}, 200},
		{"no token: localhost", "", adminReq{remote: loop4, host: "localhost:8080", headers: jsonCT}, 200},
		{"no token: localhost with a trailing dot", "", adminReq{remote: loop4, host: "LOCALHOST.:8080", headers: jsonCT}, 200},
		{"no token: v4-mapped loopback", "", adminReq{remote: loop6, host: "[::ffff:127.0.0.1]:8080", headers: jsonCT}, 200},
		{"no token: a listed-looking name", "", adminReq{remote: loop4, host: "calpresence.internal:8080", headers: jsonCT}, 403},
		{"no token: JSON with a charset", "", adminReq{remote: loop4, host: "127.0.0.1:8080", headers: with(jsonCT, "Content-Type", "application/json; charset=utf-8")}, 200},
		{"no token: a bearer token is no use", "", adminReq{remote: loop4, host: "127.0.0.1:8080", headers: wrong}, 200},
		{"no token: remote", "", adminReq{remote: remote, host: "calpresence:8080", headers: jsonCT}, 403},
		{"no token: remote with a token", "", adminReq{remote: remote, host: "calpresence:8080", headers: right}, 403},
		{"no token: sidecar (loopback peer, service name)", "", adminReq{remote: loop4, host: "calpresence.ops.svc:8080", headers: jsonCT}, 403},
		{"no token: the issue's no-cors forgery", "", adminReq{remote: loop4, host: "127.0.0.1:8080", headers: noCORS}, 403},
		{"no token: no-cors from a browser without Origin or Fetch Metadata", "", adminReq{remote: loop4, host: "127.0.0.1:8080", headers: with(noCORS, "Origin", "", "Sec-Fetch-Site", "", "Sec-Fetch-Mode", "", "Sec-Fetch-Dest", "")}, 415},
		{"no token: a cross-site form post", "", adminReq{remote: loop4, host: "127.0.0.1:8080", headers: with(noCORS, "Content-Type", "application/x-www-form-urlencoded", "Sec-Fetch-Mode", "navigate")}, 403},
		{"no token: a form post with no Origin", "", adminReq{remote: loop4, host: "127.0.0.1:8080", headers: map[string]string{"Content-Type": "multipart/form-data; boundary=x"}}, 415},
		{"no token: no Content-Type", "", adminReq{remote: loop4, host: "127.0.0.1:8080"}, 415},
		{"no token: JSON from another site (needs a preflight, refused anyway)", "", adminReq{remote: loop4, host: "127.0.0.1:8080", headers: with(jsonCT, "Origin", "http://localhost:3000", "Sec-Fetch-Site", "same-site")}, 403},
		{"no token: Sec-Fetch-Site same-site alone", "", adminReq{remote: loop4, host: "127.0.0.1:8080", headers: with(jsonCT, "Sec-Fetch-Site", "same-site")}, 403},
		{"no token: Origin null", "", adminReq{remote: loop4, host: "127.0.0.1:8080", headers: with(jsonCT, "Origin", "null")}, 403},
		{"no token: same origin", "", adminReq{remote: loop4, host: "127.0.0.1:8080", headers: with(jsonCT, "Origin", "http://127.0.0.1:8080", "Sec-Fetch-Site", "same-origin")}, 200},
		{"no token: typed into the address bar (none)", "", adminReq{remote: loop4, host: "localhost:8080", headers: with(jsonCT, "Sec-Fetch-Site", "none")}, 200},
		{"no token: DNS rebinding (same-origin, foreign Host)", "", adminReq{remote: loop4, host: "evil.example:8080", headers: with(jsonCT, "Origin", "http://evil.example:8080", "Sec-Fetch-Site", "same-origin")}, 403},
	}
	for _, tt := range tests {
		for _, path := range []string{"/-/resync", "/-/clear", "/-/reload"} {
			t.Run(tt.name+" "+path, func(t *testing.T) {
				eng := &fakeEngine{ready: true}
				var logs testutil.LogBuffer
				h := Handler(eng, prometheus.NewRegistry(), tt.token, slog.New(slog.NewTextHandler(&logs, nil)))
				req := tt.req
				req.path, req.body = path, `{"all":true}`
				rec := sendRec(t, h, req)
				code, body := rec.Code, rec.Body.String()
				if code != tt.want {
					t.Fatalf("POST %s = %d %s; want %d", path, code, body, tt.want)
				}
				acted := len(eng.resyncs) + len(eng.clears) + eng.reloads
				if code != 200 {
					if acted != 0 {
						t.Errorf("refused request still acted: resyncs %v, clears %v, reloads %d", eng.resyncs, eng.clears, eng.reloads)
					}
					if !strings.Contains(body, `"error":"refused: `) {
						t.Errorf("answer = %s; want a JSON error saying why", body)
					}
					if got := logs.Lines("admin request refused", "remote_addr="+req.remote, "path="+path, "reason="); len(got) != 1 {
						t.Errorf("log = %q; want one refusal line with the caller, path and reason", logs.String())
					}
					if got := rec.Header().Get("WWW-Authenticate"); code == 401 && got != `Bearer realm="calpresence"` {
						t.Errorf("WWW-Authenticate = %q; want the Bearer challenge", got)
					}
					if strings.Contains(logs.String(), "tok3n") {
						t.Errorf("log shows the token: %s", logs.String())
					}
					return
				}
				if acted != 1 {
					t.Errorf("allowed request: resyncs %v, clears %v, reloads %d; want one action", eng.resyncs, eng.clears, eng.reloads)
				}
			})
		}
	}
}

// TestAdminActionPassesTheRequest: an allowed request reaches the engine
// as sent, and the answer names each person by UPN and id.
func TestAdminActionPassesTheRequest(t *testing.T) {
	eng := &fakeEngine{ready: true}
	h := Handler(eng, prometheus.NewRegistry(), "tok3n", slog.New(slog.DiscardHandler))
	code, body := send(t, h, adminReq{path: "/-/resync", remote: "10.0.0.9:5000", headers: map[string]string{"Content-Type": "application/json", "Authorization": "Bearer tok3n"},
		body: `{"sources":["zoom"],"users":["alice@contoso.com"],"dry_run":true}`})
	if code != 200 {
		t.Fatalf("POST /-/resync = %d %s; want 200", code, body)
	}
	want := engine.ResyncRequest{Sources: []string{"zoom"}, Users: []string{"alice@contoso.com"}, DryRun: true}
	if len(eng.resyncs) != 1 || eng.resyncs[0].DryRun != want.DryRun || eng.resyncs[0].Sources[0] != "zoom" || eng.resyncs[0].Users[0] != want.Users[0] {
		t.Errorf("Resync calls = %+v; want [%+v]", eng.resyncs, want)
	}
	if !strings.Contains(body, `"op":"set"`) || !strings.Contains(body, `"user":"alice@contoso.com","user_id":"9a1f3c2e-4b5d-4e6f-8a7b-0c1d2e3f4a5b"`) {
		t.Errorf("answer = %s; want the action, with the person's UPN and id", body)
	}
}

func TestAdminActionErrors(t *testing.T) {
	eng := &fakeEngine{err: errors.New(`source "zoom": fetch https://example.zoom.us/feed.ics?<redacted>: timeout`)}
	h := Handler(eng, prometheus.NewRegistry(), "", slog.New(slog.DiscardHandler))
	code, body := send(t, h, adminReq{path: "/-/resync", remote: "127.0.0.1:1", host: "127.0.0.1:8080", headers: jsonCT})
	if code != 500 || !strings.Contains(body, `source \"zoom\"`) {
		t.Errorf("failing resync = %d %s; want 500 naming the source", code, body)
	}
	if code, _ := send(t, h, adminReq{path: "/-/resync", remote: "127.0.0.1:1", host: "127.0.0.1:8080", headers: jsonCT, body: "{not json"}); code != 400 {
		t.Errorf("bad body = %d; want 400", code)
	}
	if code, _ := do(t, h, "GET", "/-/resync", "127.0.0.1:1", "", ""); code != 405 {
		t.Errorf("GET /-/resync = %d; want 405", code)
	}
}

// TestReloadAnswers: POST /-/reload answers what changed, 422 when the
// new configuration was refused, and 503 when no engine runs.
func TestReloadAnswers(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code int
		want string
	}{
		{"applied", nil, 200, `"reload":{"added":["webex"],"unchanged":1}`},
		{"refused", fmt.Errorf("%w: config.yaml:3: sources[0].url: required", ErrRefused), 422, `"error":"configuration refused: config.yaml:3: sources[0].url: required"`},
		{"no engine", fmt.Errorf("%w: standing by", ErrUnavailable), 503, `"error":"unavailable: standing by"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := Handler(&fakeEngine{err: tt.err}, prometheus.NewRegistry(), "", slog.New(slog.DiscardHandler))
			code, body := send(t, h, adminReq{path: "/-/reload", remote: "127.0.0.1:1", host: "127.0.0.1:8080", headers: jsonCT})
			if code != tt.code || !strings.Contains(body, tt.want) {
				t.Errorf("POST /-/reload = %d %s; want %d with %s", code, body, tt.code, tt.want)
			}
		})
	}
}

// TestHandlerSettingsChange: the settings are asked at every request, so
// a reload that reads a new token file rotates the token, and one that
// changes server.hostnames changes the names the pages answer.
func TestHandlerSettingsChange(t *testing.T) {
	settings := Settings{Token: "first"}
	h := HandlerSettings(&fakeEngine{ready: true}, prometheus.NewRegistry(), func() Settings { return settings }, slog.New(slog.DiscardHandler))
	req := adminReq{path: "/-/reload", remote: "10.0.0.9:1", headers: with(jsonCT, "Authorization", "Bearer first")}
	if code, body := send(t, h, req); code != 200 {
		t.Fatalf("with the first token = %d %s; want 200", code, body)
	}
	page := func() int {
		r := httptest.NewRequest("GET", "/readyz", nil)
		r.Host = "calpresence.internal:8080"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	if code := page(); code != 421 {
		t.Errorf("GET /readyz for calpresence.internal before it is listed = %d; want 421", code)
	}
	settings = Settings{Token: "second", Hostnames: []string{"calpresence.internal"}}
	if code, _ := send(t, h, req); code != 401 {
		t.Errorf("with the old token after rotation = %d; want 401", code)
	}
	if code := page(); code != 200 {
		t.Errorf("GET /readyz for calpresence.internal once listed = %d; want 200", code)
	}
}

// TestServeCutsOffRequestsPastTheShutdownTimeout: a request still running
// when the timeout is over (a long admin resync) does not keep the process
// up, nor make its exit a failure.
func TestServeCutsOffRequestsPastTheShutdownTimeout(t *testing.T) {
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, "127.0.0.1:0", h, 200*time.Millisecond, func(a net.Addr) { addrc <- a }) }()
	addr := <-addrc
	go func() {
		resp, err := http.Post("http://"+addr.String()+"/-/resync", "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v; want nil (a clean exit)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running 10s after cancel with a 200ms shutdown timeout")
	}
}
