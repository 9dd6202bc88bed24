package app

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

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
//
// inbox (nil: none, a dry run's memory) keeps each signal before the vendor
// is answered: what was acknowledged survives a crash, and reaches the
// leader's engine.
func startWebhooks(ctx context.Context, cfg *config.Config, sink signals.Sink, inbox signals.Store, reg prometheus.Registerer, log *slog.Logger) *webhooks {
	w := &webhooks{err: make(chan error, 1)}
	wc := cfg.Webhooks
	if wc == nil {
		return w
	}
	o := signals.Options{Sink: sink, Inbox: inbox, Logger: log.With("component", "webhooks"), Metrics: signals.NewMetrics(reg)}
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
		err := server.ServeWith(ctx, wc.Listen, webhookServer(h), cfg.Server.ShutdownTimeout, func(a net.Addr) {
			log.Info("serving webhooks", "addr", a.String(), "zoom", o.ZoomSecret != "", "webex", o.WebexSecret != "")
		})
		if err != nil {
			w.err <- err
		}
	}()
	return w
}

// The webhook listener's bounds: it faces the internet. A vendor's
// delivery is a few KB sent at once; the handler reads a body within
// signals.DefaultBodyTimeout, these bound the rest of a connection.
const (
	webhookReadHeaderTimeout = 5 * time.Second
	webhookReadTimeout       = 10 * time.Second
	webhookWriteTimeout      = 10 * time.Second
	webhookIdleTimeout       = 60 * time.Second
	webhookMaxHeaderBytes    = 16 << 10
)

// testHookConnState, set by tests before a listener starts, sees its
// connections change state (http.Server.ConnState).
var testHookConnState func(net.Conn, http.ConnState)

// webhookServer is the http.Server of the webhook listener.
func webhookServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ConnState:         testHookConnState,
		ReadHeaderTimeout: webhookReadHeaderTimeout,
		ReadTimeout:       webhookReadTimeout,
		WriteTimeout:      webhookWriteTimeout,
		IdleTimeout:       webhookIdleTimeout,
		MaxHeaderBytes:    webhookMaxHeaderBytes,
		// Connections the server cuts (timeouts, oversized headers) are
		// the flood's; they are counted by the handler's refusals, not
		// logged one line each.
		ErrorLog: log.New(io.Discard, "", 0),
	}
}

// wait waits for the receiver to stop (ctx done).
func (w *webhooks) wait() { w.wg.Wait() }

// webexPeople is the engine's look-up of Webex Calling's people
// (engine.PersonLookup): signals.WebexPeople with the token file and API
// of the configuration in force, so that a reload or a token renewed in
// its file takes effect. One cache, started again when the API changes.
type webexPeople struct {
	config func() *config.Config

	mu  sync.Mutex
	api string
	p   *signals.WebexPeople
}

func (w *webexPeople) Email(ctx context.Context, personID string) (string, error) {
	cfg := w.config()
	if cfg.Webhooks == nil || cfg.Webhooks.Webex == nil || cfg.Webhooks.Webex.AccessTokenFile == "" {
		return "", fmt.Errorf("look up webex person: webhooks.webex.access_token_file not set: %w", signals.ErrNoPerson)
	}
	x := cfg.Webhooks.Webex
	data, err := os.ReadFile(x.AccessTokenFile)
	if err != nil {
		return "", fmt.Errorf("look up webex person: read webhooks.webex.access_token_file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	w.mu.Lock()
	if w.p == nil || w.api != x.API {
		w.api, w.p = x.API, &signals.WebexPeople{API: x.API, Client: &http.Client{Timeout: 10 * time.Second}}
	}
	p := w.p
	w.mu.Unlock()
	return p.Email(ctx, personID, token)
}
