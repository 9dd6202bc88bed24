// Package signals owns live meeting signals (DESIGN "Live meeting
// signals"): the Zoom and Webex receivers, which check each delivery's
// signature, answer at once and hand the "ended / left / joined" facts to
// the engine through a bounded queue, off the request's path (the vendors
// retry deliveries that are slow to answer); the facts' inbox a standby
// queues them in for the leader (Queue); and Apply, the pure function that
// says what they do to the feeds' matches.
package signals

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/state"
)

// Paths the handler serves (POST only).
const (
	PathZoom  = "/webhooks/zoom"
	PathWebex = "/webhooks/webex"
)

// Defaults of Options.
const (
	DefaultMaxBody = 1 << 20 // bytes; a vendor's event is a few KB
	DefaultQueue   = 1024
)

// Sink takes a signal: *engine.Engine implements it. It returns what it did
// with it ("applied", "duplicate", "ignored"), for the metric.
type Sink interface {
	Signal(ctx context.Context, s state.Signal) (string, error)
}

// Options configure a Handler. A vendor whose secret is empty is not
// served (404).
type Options struct {
	ZoomSecret  string
	WebexSecret string
	Sink        Sink
	Logger      *slog.Logger
	Metrics     *Metrics
	MaxBody     int64 // 0: DefaultMaxBody
	Queue       int   // 0: DefaultQueue
	// Now is the clock for timestamps (nil: time.Now).
	Now func() time.Time
}

// Metrics count deliveries by vendor, event and result:
// calpresence_webhook_signals_total.
type Metrics struct {
	Signals *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{Signals: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "calpresence_webhook_signals_total",
		Help: "Webhook deliveries by vendor, event and result: refused (signature or timestamp), invalid, unused (an event not used), dropped (queue full), validated (Zoom url_validation), noted (a Webex meeting start), then what the engine did: applied, duplicate, ignored (nobody covered), error.",
	}, []string{"vendor", "event", "result"})}
	if reg != nil {
		reg.MustRegister(m.Signals)
	}
	return m
}

// Handler is the webhook receiver. Run must be running for deliveries to
// reach the Sink.
type Handler struct {
	o         Options
	queue     chan state.Signal
	mux       *http.ServeMux
	instances instances
}

// New builds a Handler.
func New(o Options) *Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Handler{o: o, queue: make(chan state.Signal, o.Queue), mux: http.NewServeMux()}
	if o.ZoomSecret != "" {
		h.mux.HandleFunc("POST "+PathZoom, h.zoom)
	}
	if o.WebexSecret != "" {
		h.mux.HandleFunc("POST "+PathWebex, h.webex)
	}
	return h
}

// ServeHTTP serves the webhook paths.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Run hands queued signals to the Sink, one at a time in arrival order,
// until ctx is done; then it hands over what is still queued (the vendor
// was answered 200 for it: the engine stores it, and a restart applies
// it) and returns. Stop the listener first, so that nothing is queued
// after Run has returned.
func (h *Handler) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			h.drain(context.WithoutCancel(ctx), nil)
			return
		case s := <-h.queue:
			if ctx.Err() != nil {
				h.drain(context.WithoutCancel(ctx), &s)
				return
			}
			h.hand(ctx, s)
		}
	}
}

// DrainTimeout bounds how long Run spends on the signals still queued when
// it is stopped.
const DrainTimeout = 5 * time.Second

// drain hands over first (when not nil) and the queue, within DrainTimeout.
func (h *Handler) drain(ctx context.Context, first *state.Signal) {
	ctx, cancel := context.WithTimeout(ctx, DrainTimeout)
	defer cancel()
	if first != nil {
		h.hand(ctx, *first)
	}
	for ctx.Err() == nil {
		select {
		case s := <-h.queue:
			h.hand(ctx, s)
		default:
			return
		}
	}
}

func (h *Handler) hand(ctx context.Context, s state.Signal) {
	res, err := h.o.Sink.Signal(ctx, s)
	if err != nil {
		res = "error"
		h.o.Logger.Error("live meeting signal not applied", "vendor", s.Vendor, "event", s.Event, "meeting", s.Meeting, "err", err)
	}
	h.count(s.Vendor, s.Event, res)
}

func (h *Handler) count(vendor, event, result string) {
	h.o.Metrics.Signals.WithLabelValues(vendor, event, result).Inc()
}

// body reads the request body up to MaxBody; false when it answered.
func (h *Handler) body(w http.ResponseWriter, r *http.Request, vendor string) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.o.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		code := http.StatusBadRequest
		if errors.As(err, &tooBig) {
			code = http.StatusRequestEntityTooLarge
		}
		h.refuse(w, r, vendor, "", "invalid", code, err)
		return nil, false
	}
	return body, true
}

// refuse answers a delivery that has no effect, with one log line.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, vendor, event, result string, code int, err error) {
	if event == "" {
		event = "unknown"
	}
	h.count(vendor, event, result)
	lvl := slog.LevelWarn
	if result == "unused" {
		lvl = slog.LevelInfo // an event subscribed to by mistake: harmless
	}
	h.o.Logger.Log(r.Context(), lvl, "webhook delivery refused", "vendor", vendor, "event", event, "result", result, "status", code, "remote", r.RemoteAddr, "err", err)
	http.Error(w, http.StatusText(code), code)
}

// enqueue hands signals to Run and answers 200, or 503 when the queue is
// full (the vendor retries later).
func (h *Handler) enqueue(w http.ResponseWriter, r *http.Request, vendor string, sigs []state.Signal) {
	now := h.o.Now()
	for _, s := range sigs {
		s.Received = now
		select {
		case h.queue <- s:
		default:
			h.refuse(w, r, vendor, s.Event, "dropped", http.StatusServiceUnavailable, errors.New("signal queue full"))
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

func (h *Handler) zoom(w http.ResponseWriter, r *http.Request) {
	body, ok := h.body(w, r, "zoom")
	if !ok {
		return
	}
	// Every delivery is checked, the url_validation challenge included
	// (Zoom signs it): the challenge's answer is an HMAC under the same
	// secret.
	if err := VerifyZoom(h.o.ZoomSecret, r.Header.Get("x-zm-request-timestamp"), r.Header.Get("x-zm-signature"), body, h.o.Now()); err != nil {
		h.refuse(w, r, "zoom", "", "refused", http.StatusUnauthorized, err)
		return
	}
	ev, err := ParseZoom(body)
	label := zoomLabel(ev.Event)
	switch {
	case errors.Is(err, ErrUnknownEvent):
		h.refuse(w, r, "zoom", label, "unused", http.StatusOK, err)
		return
	case err != nil:
		h.refuse(w, r, "zoom", label, "invalid", http.StatusBadRequest, err)
		return
	case ev.PlainToken != "":
		v, err := zoomValidate(h.o.ZoomSecret, ev.PlainToken)
		if err != nil {
			h.refuse(w, r, "zoom", label, "invalid", http.StatusBadRequest, err)
			return
		}
		h.count("zoom", label, "validated")
		h.o.Logger.Info("zoom endpoint validated", "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
		return
	}
	h.enqueue(w, r, "zoom", []state.Signal{ev.Signal})
}

// zoomLabel bounds the metric's event label to the events used.
func zoomLabel(event string) string {
	switch event {
	case zoomEnded, zoomWebinarEnded:
		return state.SignalEnded
	case zoomLeft, zoomWebinarLeft:
		return state.SignalLeft
	case zoomJoined, zoomWebinarJoined:
		return state.SignalJoined
	case zoomURLValidation:
		return "url_validation"
	}
	return "other"
}

func (h *Handler) webex(w http.ResponseWriter, r *http.Request) {
	body, ok := h.body(w, r, "webex")
	if !ok {
		return
	}
	if err := VerifyWebex(h.o.WebexSecret, r.Header.Get("X-Spark-Signature"), body); err != nil {
		h.refuse(w, r, "webex", "", "refused", http.StatusUnauthorized, err)
		return
	}
	d, err := ParseWebex(body)
	sigs := d.Signals
	label := "other"
	if len(sigs) > 0 {
		label = sigs[0].Event
	} else if d.Instance != "" {
		label = "started"
	}
	switch {
	case errors.Is(err, ErrUnknownEvent):
		h.refuse(w, r, "webex", label, "unused", http.StatusOK, err)
		return
	case err != nil:
		h.refuse(w, r, "webex", label, "invalid", http.StatusBadRequest, err)
		return
	case d.Instance != "":
		h.instances.put(d.Instance, d.Meeting)
		h.count("webex", label, "noted")
		w.WriteHeader(http.StatusOK)
		return
	}
	for i := range sigs {
		// A participant event names the meeting instance: the meeting
		// number, when its start was seen, links it to the calendar.
		if id, ok := strings.CutPrefix(sigs[i].Meeting, keyWebexInstance); ok && sigs[i].Event != state.SignalEnded {
			if m, ok := h.instances.get(id); ok {
				sigs[i].Meeting = m
			}
		}
	}
	h.enqueue(w, r, "webex", sigs)
}

// maxInstances bounds the Webex instance → meeting number memory: a
// meeting's participant events come within hours of its start.
const maxInstances = 10000

// instances remembers the meeting number of each Webex meeting instance
// whose start was seen (in memory: after a restart, participant events of
// meetings already running are unscheduled calls, ended by "ended").
type instances struct {
	mu sync.Mutex
	m  map[string]string
}

func (x *instances) put(id, meeting string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.m == nil || len(x.m) >= maxInstances {
		x.m = make(map[string]string)
	}
	x.m[id] = meeting
}

func (x *instances) get(id string) (string, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	m, ok := x.m[id]
	return m, ok
}
