// Package server serves the worker's HTTP endpoints: the status page at /,
// /healthz, /readyz, /metrics, and the admin actions under /-/ (resync,
// clear, reload), which refuse anything a browser page could forge and answer only
// the admin token when one is configured, else only loopback callers
// (authorize says exactly how). The status page, /readyz and /metrics
// answer only a Host that is a loopback name, an IP literal or listed in
// server.hostnames, else 421 (host.go says why).
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/calpresence/calpresence/internal/logsample"
	"github.com/calpresence/calpresence/sync/engine"
	"github.com/calpresence/calpresence/sync/plan"
)

// Engine is what the server needs from the worker.
type Engine interface {
	// Readiness is /readyz, under the request's ctx; all lists every
	// source (/readyz?verbose), not only those that want a look.
	Readiness(ctx context.Context, all bool) engine.Readiness
	Resync(ctx context.Context, req engine.ResyncRequest) ([]engine.Result, error)
	Clear(ctx context.Context, users []string, all bool) ([]engine.Result, error)
	// Status is the snapshot the status page shows.
	Status(ctx context.Context, now time.Time) engine.Status
	// Reload reads the configuration file again and puts it in force
	// (POST /-/reload). An error wrapping ErrRefused means the new
	// configuration was refused and the one in force stays.
	Reload(ctx context.Context) (engine.ReloadReport, error)
}

// ErrUnavailable marks an admin action that cannot be done now (no
// engine runs): answered 503.
var ErrUnavailable = errors.New("unavailable")

// ErrRefused marks a reload whose configuration was refused: answered 422.
var ErrRefused = errors.New("configuration refused")

// ActionRequest is the body of POST /-/resync and POST /-/clear.
type ActionRequest struct {
	Sources []string `json:"sources,omitempty"`
	Users   []string `json:"users,omitempty"`
	All     bool     `json:"all,omitempty"`
	DryRun  bool     `json:"dry_run,omitempty"`
}

// ActionResponse is the answer to an admin action.
type ActionResponse struct {
	Actions []ActionReport `json:"actions"`
	// Reload is what POST /-/reload changed.
	Reload *engine.ReloadReport `json:"reload,omitempty"`
	Error  string               `json:"error,omitempty"`
}

// ActionReport is one presence call made (or planned, in a dry run).
type ActionReport struct {
	Op         string `json:"op"`
	User       string `json:"user"`    // the person's UPN
	UserID     string `json:"user_id"` // their Entra object id
	Reason     string `json:"reason"`
	Expiration string `json:"expiration,omitempty"`
	Activity   string `json:"activity,omitempty"`
	Error      string `json:"error,omitempty"`
}

// Reports turns results into reports.
func Reports(results []engine.Result) []ActionReport {
	out := make([]ActionReport, 0, len(results))
	for _, r := range results {
		a := ActionReport{Op: r.Action.Op, User: r.Action.User, UserID: r.Action.User, Reason: r.Action.Reason}
		if r.Action.Name != "" {
			a.User = r.Action.Name
		}
		if r.Action.Op == plan.OpSet {
			a.Expiration, a.Activity = r.Action.Expiration.String(), r.Action.Pair.Activity
		}
		if r.Err != nil {
			a.Error = r.Err.Error()
		}
		out = append(out, a)
	}
	return out
}

// Settings are what the handler takes from the configuration. It asks
// for them at every request, so that a reload puts a change in force at
// once.
type Settings struct {
	// Token is the admin token: when set, every admin request must bear
	// it; "" lets only loopback callers use the admin actions (see
	// authorize).
	Token string
	// Hostnames are the Host names the pages answer besides loopback
	// names and IP literals (server.hostnames; see pageHost).
	Hostnames []string
}

// Handler returns the HTTP handler. token is the admin token: when set,
// every admin request must bear it; "" lets only loopback callers use the
// admin actions (see authorize). The pages answer loopback names and IP
// literals only (no server.hostnames).
func Handler(eng Engine, gatherer prometheus.Gatherer, token string, log *slog.Logger) http.Handler {
	return HandlerSettings(eng, gatherer, func() Settings { return Settings{Token: token} }, log)
}

// HandlerSettings is Handler with settings that may change while it
// serves (a reload reads the token file and server.hostnames again):
// settings is asked at every request.
func HandlerSettings(eng Engine, gatherer prometheus.Gatherer, settings func() Settings, log *slog.Logger) http.Handler {
	token := func() string { return settings().Token }
	pages := &hostGuard{hostnames: func() []string { return settings().Hostnames }, log: log, refusals: logsample.Sampler{Every: logRefusalsEvery}}
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", pages.wrap(serveStatus(eng, log)))
	// /healthz says "ok" and nothing else, so it answers any Host: a
	// health check that sends none (HTTP/1.0) or a load balancer's own
	// name still gets its answer.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /readyz", pages.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rd := eng.Readiness(r.Context(), r.URL.Query().Has("verbose"))
		code := http.StatusOK
		if !rd.Ready {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(rd)
	})))
	mux.Handle("GET /metrics", pages.wrap(promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{})))
	admin := func(do func(ctx context.Context, req ActionRequest) ([]engine.Result, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if why := authorize(r, token()); why != nil {
				refuse(w, r, why, log)
				return
			}
			var req ActionRequest
			if r.ContentLength != 0 {
				if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
					http.Error(w, "bad request body: "+err.Error(), http.StatusBadRequest)
					return
				}
			}
			log.Info("admin action", "remote_addr", r.RemoteAddr, "path", r.URL.Path, "sources", req.Sources, "users", req.Users, "all", req.All, "dry_run", req.DryRun)
			results, err := do(r.Context(), req)
			resp := ActionResponse{Actions: Reports(results)}
			code := http.StatusOK
			if err != nil {
				resp.Error = err.Error()
				code = errorCode(err)
				log.Warn("admin action failed", "path", r.URL.Path, "err", err)
			}
			writeJSON(w, code, resp)
		}
	}
	mux.Handle("POST /-/resync", admin(func(ctx context.Context, req ActionRequest) ([]engine.Result, error) {
		return eng.Resync(ctx, engine.ResyncRequest{Sources: req.Sources, Users: req.Users, DryRun: req.DryRun})
	}))
	mux.Handle("POST /-/clear", admin(func(ctx context.Context, req ActionRequest) ([]engine.Result, error) {
		return eng.Clear(ctx, req.Users, req.All)
	}))
	mux.HandleFunc("POST /-/reload", func(w http.ResponseWriter, r *http.Request) {
		if why := authorize(r, token()); why != nil {
			refuse(w, r, why, log)
			return
		}
		log.Info("admin action", "remote_addr", r.RemoteAddr, "path", r.URL.Path)
		report, err := eng.Reload(r.Context())
		resp := ActionResponse{Actions: []ActionReport{}, Reload: &report}
		code := http.StatusOK
		if err != nil {
			resp.Reload, resp.Error = nil, err.Error()
			code = errorCode(err)
		}
		writeJSON(w, code, resp)
	})
	return mux
}

// errorCode is the status an admin action's error is answered with.
func errorCode(err error) int {
	switch {
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrRefused):
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Serve listens on addr and serves h until ctx is done, then shuts down
// gracefully: requests still running after shutdownTimeout (a long admin
// resync) are cut off, so that the process ends within its grace period.
// ready, when not nil, receives the bound address.
func Serve(ctx context.Context, addr string, h http.Handler, shutdownTimeout time.Duration, ready func(net.Addr)) error {
	return ServeWith(ctx, addr, &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, shutdownTimeout, ready)
}

// ServeWith is Serve with a server of the caller's (a listener the
// internet reaches sets tighter timeouts and limits).
func ServeWith(ctx context.Context, addr string, srv *http.Server, shutdownTimeout time.Duration, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil {
		_ = srv.Close() // past the timeout: cut the rest off
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
