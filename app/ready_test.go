package app

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/server"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/mem"
	"github.com/calpresence/calpresence/sync/engine"
)

// hungStore is a state store that does not answer (a database behind a
// dropped connection): Ping waits until its ctx ends.
type hungStore struct{ *mem.Store }

func (hungStore) Ping(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestReadyzStoreDeadline: /readyz asks the state store under
// ReadyTimeout, so a store that does not answer makes it answer 503 with
// the reason after that long, instead of hanging the probe. In virtual
// time: without the deadline the request would block for ever and
// synctest would report the deadlock.
func TestReadyzStoreDeadline(t *testing.T) {
	const storeReason = "the state store does not answer: context deadline exceeded"
	for _, tt := range []struct {
		name       string
		store      state.Store
		wantReason bool
		wantTook   time.Duration
	}{
		{"hung", hungStore{mem.New()}, true, ReadyTimeout},
		{"answering", mem.New(), false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := &App{store: tt.store, down: "the engine has not started yet"}
				h := server.Handler(a, prometheus.NewRegistry(), "", slog.New(slog.DiscardHandler))
				req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8080/readyz", nil)
				req.RemoteAddr = "127.0.0.1:40000"
				rec := httptest.NewRecorder()
				start := time.Now()
				h.ServeHTTP(rec, req)
				if took := time.Since(start); took != tt.wantTook {
					t.Errorf("GET /readyz took %v; want %v", took, tt.wantTook)
				}
				if rec.Code != http.StatusServiceUnavailable {
					t.Errorf("GET /readyz = %d; want 503 (no engine runs)", rec.Code)
				}
				var rd engine.Readiness
				if err := json.Unmarshal(rec.Body.Bytes(), &rd); err != nil {
					t.Fatalf("GET /readyz body %q: %v", rec.Body, err)
				}
				if got := slices.Contains(rd.Reasons, storeReason); got != tt.wantReason {
					t.Errorf("GET /readyz reasons = %q; want %q among them: %v", rd.Reasons, storeReason, tt.wantReason)
				}
			})
		})
	}
}
