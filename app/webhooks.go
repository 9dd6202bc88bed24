package app

import (
	"context"
	"log/slog"
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/server"
	"github.com/calpresence/calpresence/signals"
)

// webhooks is the live meeting signal receiver of the daemon: its own listener
// (webhooks.listen, the one exposed through the ingress) and the queue
// that hands signals to the engine.
type webhooks struct {
	err chan error // the listener's failure; never sent when off
	wg  sync.WaitGroup
}

// startWebhooks starts the receiver when the configuration has webhooks:
// until ctx is done.
func startWebhooks(ctx context.Context, cfg *config.Config, sink signals.Sink, reg prometheus.Registerer, log *slog.Logger) *webhooks {
	w := &webhooks{err: make(chan error, 1)}
	wc := cfg.Webhooks
	if wc == nil {
		return w
	}
	o := signals.Options{Sink: sink, Logger: log.With("component", "webhooks"), Metrics: signals.NewMetrics(reg)}
	if wc.Zoom != nil {
		o.ZoomSecret = string(wc.Zoom.SecretToken)
	}
	if wc.Webex != nil {
		o.WebexSecret = string(wc.Webex.Secret)
	}
	h := signals.New(o)
	// The queue outlives the listener: what was acknowledged is handed to
	// the engine (and stored) before the process exits.
	queueCtx, stopQueue := context.WithCancel(context.WithoutCancel(ctx))
	w.wg.Add(2)
	go func() {
		defer w.wg.Done()
		h.Run(queueCtx)
	}()
	go func() {
		defer w.wg.Done()
		defer stopQueue()
		err := server.Serve(ctx, wc.Listen, h, cfg.Server.ShutdownTimeout, func(a net.Addr) {
			log.Info("serving webhooks", "addr", a.String(), "zoom", o.ZoomSecret != "", "webex", o.WebexSecret != "")
		})
		if err != nil {
			w.err <- err
		}
	}()
	return w
}

// wait waits for the receiver to stop (ctx done).
func (w *webhooks) wait() { w.wg.Wait() }
