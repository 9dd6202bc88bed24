package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/sync"
)

type fakeEngine struct {
	ready   bool
	resyncs []sync.ResyncRequest
	clears  [][]string
	err     error
}

func (f *fakeEngine) Ready() (bool, []sync.SourceStatus) {
	return f.ready, []sync.SourceStatus{{Name: "zoom", URL: "https://example.zoom.us/feed.ics?<redacted>", Loaded: true, Healthy: f.ready}}
}

func (f *fakeEngine) Unresolved() []sync.Unresolved {
	return []sync.Unresolved{{Address: "ghost@contoso.com", Reason: "unknown"}}
}

func (f *fakeEngine) Resync(ctx context.Context, req sync.ResyncRequest) ([]sync.Result, error) {
	f.resyncs = append(f.resyncs, req)
	return []sync.Result{{Action: sync.Action{Op: sync.OpSet, User: "9a1f3c2e-4b5d-4e6f-8a7b-0c1d2e3f4a5b", Name: "alice@contoso.com", Reason: "start"}}}, f.err
}

func (f *fakeEngine) Clear(ctx context.Context, users []string, all bool) ([]sync.Result, error) {
	f.clears = append(f.clears, users)
	return nil, f.err
}

func do(t *testing.T, h http.Handler, method, path, remote, auth, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = remote
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
	if code, body := do(t, h, "GET", "/readyz", "10.0.0.9:1234", "", ""); code != 503 || !strings.Contains(body, `"ready":false`) {
		t.Errorf("/readyz before the first pass = %d %s; want 503", code, body)
	}
	eng.ready = true
	if code, body := do(t, h, "GET", "/readyz", "10.0.0.9:1234", "", ""); code != 200 || !strings.Contains(body, `"healthy":true`) ||
		!strings.Contains(body, `"unresolved_addresses":[{"address":"ghost@contoso.com","reason":"unknown"}]`) {
		t.Errorf("/readyz = %d %s; want 200 with source health and unresolved addresses", code, body)
	}
	if code, _ := do(t, h, "GET", "/metrics", "10.0.0.9:1234", "", ""); code != 200 {
		t.Errorf("/metrics = %d; want 200", code)
	}
}

func TestAdminActionsNeedLoopbackOrToken(t *testing.T) {
	tests := []struct {
		name, remote, auth string
		want               int
	}{
		{"loopback v4", "127.0.0.1:5000", "", 200},
		{"loopback v6", "[::1]:5000", "", 200},
		{"remote without token", "10.0.0.9:5000", "", 403},
		{"remote with wrong token", "10.0.0.9:5000", "Bearer nope", 403},
		{"remote with token", "10.0.0.9:5000", "Bearer tok3n", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eng := &fakeEngine{ready: true}
			h := Handler(eng, prometheus.NewRegistry(), "tok3n", slog.New(slog.DiscardHandler))
			code, body := do(t, h, "POST", "/-/resync", tt.remote, tt.auth, `{"sources":["zoom"],"users":["alice@contoso.com"],"dry_run":true}`)
			if code != tt.want {
				t.Fatalf("POST /-/resync from %s = %d %s; want %d", tt.remote, code, body, tt.want)
			}
			if code != 200 {
				if len(eng.resyncs) != 0 {
					t.Errorf("refused request still resynced")
				}
				return
			}
			want := sync.ResyncRequest{Sources: []string{"zoom"}, Users: []string{"alice@contoso.com"}, DryRun: true}
			if len(eng.resyncs) != 1 || eng.resyncs[0].DryRun != want.DryRun || eng.resyncs[0].Sources[0] != "zoom" || eng.resyncs[0].Users[0] != want.Users[0] {
				t.Errorf("Resync calls = %+v; want [%+v]", eng.resyncs, want)
			}
			if !strings.Contains(body, `"op":"set"`) || !strings.Contains(body, `"user":"alice@contoso.com","user_id":"9a1f3c2e-4b5d-4e6f-8a7b-0c1d2e3f4a5b"`) {
				t.Errorf("answer = %s; want the action, with the person's UPN and id", body)
			}
		})
	}
	// Without a configured token only loopback may act.
	h := Handler(&fakeEngine{}, prometheus.NewRegistry(), "", slog.New(slog.DiscardHandler))
	if code, _ := do(t, h, "POST", "/-/clear", "10.0.0.9:5000", "Bearer ", `{"all":true}`); code != 403 {
		t.Errorf("POST /-/clear from remote with no token configured = %d; want 403", code)
	}
}

func TestAdminActionErrors(t *testing.T) {
	eng := &fakeEngine{err: errors.New(`source "zoom": fetch https://example.zoom.us/feed.ics?<redacted>: timeout`)}
	h := Handler(eng, prometheus.NewRegistry(), "", slog.New(slog.DiscardHandler))
	code, body := do(t, h, "POST", "/-/resync", "127.0.0.1:1", "", "")
	if code != 500 || !strings.Contains(body, `source \"zoom\"`) {
		t.Errorf("failing resync = %d %s; want 500 naming the source", code, body)
	}
	if code, _ := do(t, h, "POST", "/-/resync", "127.0.0.1:1", "", "{not json"); code != 400 {
		t.Errorf("bad body = %d; want 400", code)
	}
	if code, _ := do(t, h, "GET", "/-/resync", "127.0.0.1:1", "", ""); code != 405 {
		t.Errorf("GET /-/resync = %d; want 405", code)
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
