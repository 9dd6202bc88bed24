package app

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/server"
	"github.com/calpresence/calpresence/sync/engine"
)

// Reload reads the configuration file again (SIGHUP, POST /-/reload) and
// puts it in force without a restart: it is checked as run checks it
// (config.Load, then Preflight, which contacts nothing), then handed to the
// engine (engine.Engine.Reload says what changes how); the admin token file
// is read again, so a new token is in force at once. Keys read only at
// start are listed in the report as needing a restart, and not applied.
//
// A configuration that fails any check is refused: the one in force
// stays, every problem is logged, and /readyz and the status page show the
// error until a reload succeeds. The error then wraps server.ErrRefused.
func (a *App) Reload(ctx context.Context) (engine.ReloadReport, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	path := a.Config().Path
	report, err := a.reloadFrom(ctx, path)
	st := &engine.ReloadStatus{At: time.Now(), ReloadReport: report}
	a.reloads.WithLabelValues("ok").Add(0)
	a.reloads.WithLabelValues("refused").Add(0)
	if err == nil {
		a.reloads.WithLabelValues("ok").Inc()
		a.reloadOK.Set(1)
	} else {
		a.reloads.WithLabelValues("refused").Inc()
		a.reloadOK.Set(0)
	}
	if err != nil {
		st = &engine.ReloadStatus{At: st.At, Error: err.Error()}
		for _, problem := range strings.Split(err.Error(), "\n") {
			a.log.Error("reload: configuration problem", "config", path, "problem", problem)
		}
		a.log.Error("reload refused; the configuration in force stays", "config", path)
		err = fmt.Errorf("%w: %w", server.ErrRefused, err)
	}
	a.mu.Lock()
	a.reload = st
	a.mu.Unlock()
	return report, err
}

func (a *App) reloadFrom(ctx context.Context, path string) (engine.ReloadReport, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return engine.ReloadReport{}, err
	}
	if err := Preflight(ctx, cfg); err != nil {
		return engine.ReloadReport{}, err
	}
	token, err := AdminToken(cfg)
	if err != nil {
		return engine.ReloadReport{}, err
	}
	var report engine.ReloadReport
	if eng, _ := a.current(); eng != nil {
		if report, err = eng.Reload(ctx, cfg); err != nil {
			return engine.ReloadReport{}, err
		}
	} else {
		// No engine: the next one starts with cfg.
		report.NeedsRestart = config.NeedsRestart(a.started, cfg)
	}
	a.token.Store(&token)
	a.mu.Lock()
	a.cfg = cfg
	a.mu.Unlock()
	return report, nil
}
