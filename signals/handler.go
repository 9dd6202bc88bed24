// Package signals owns live meeting signals (docs/webhooks.md): the Zoom and Webex receivers, which check each delivery's
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
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/internal/logsample"
	"github.com/calpresence/calpresence/state"
)

// Paths the handler serves (POST only).
const (
	PathZoom  = "/webhooks/zoom"
	PathWebex = "/webhooks/webex"
)

// Defaults of Options.
const (
	// DefaultMaxBody caps a delivery's body, before its signature is
	// checked: a vendor's event is a few KB.
	DefaultMaxBody = 64 << 10
	DefaultQueue   = 1024
	// DefaultMaxInFlight bounds the bodies being read at once; beyond
	// it, 503.
	DefaultMaxInFlight = 64
	// DefaultMaxSmallInFlight bounds, besides, the bodies of at most
	// SmallBody bytes being read at once (see Handler.body).
	DefaultMaxSmallInFlight = 4096
	// SmallBody is the most a small body declares: a vendor's event.
	SmallBody = 8 << 10
	// DefaultBodyTimeout is how long reading one body may take (64 KiB in
	// 2 s is 32 KiB/s): a slow upload is cut, and its slot freed, well
	// before a vendor's next delivery would find none.
	DefaultBodyTimeout = 2 * time.Second
	// DefaultRefusalLogEvery: at most one line per interval about
	// refused deliveries, with the number not logged.
	DefaultRefusalLogEvery = 10 * time.Second
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
	// Inbox, when set, keeps every accepted signal durably before the
	// vendor is answered 2xx (503 when it cannot): the store's inbox
	// (Queue), from which the record is dropped once the Sink took the
	// signal, and which the engine applies when the process stopped
	// first (engine TakeInbox).
	Inbox       Store
	Logger      *slog.Logger
	Metrics     *Metrics
	MaxBody     int64 // 0: DefaultMaxBody
	Queue       int   // 0: DefaultQueue
	MaxInFlight int   // 0: DefaultMaxInFlight
	// MaxSmallInFlight: 0: DefaultMaxSmallInFlight.
	MaxSmallInFlight int
	// BodyTimeout bounds reading one body (0: DefaultBodyTimeout).
	BodyTimeout time.Duration
	// RefusalLogEvery spaces the log lines about refused deliveries
	// (0: DefaultRefusalLogEvery).
	RefusalLogEvery time.Duration
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
		Help: "Webhook deliveries by vendor, event and result: refused (signature or timestamp), too_large (body over the cap), busy (too many bodies being read), invalid (unreadable, or signed but not JSON), unused (an event not used, or one naming nobody), dropped (queue full, no inbox), unstored (the store could not keep it: 503), validated (Zoom url_validation), noted (a Webex meeting start), then what the engine did: applied, duplicate, ignored (nobody covered), queued (for the leader), pending (a person to look up), error.",
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
	queue     chan queued
	mux       *http.ServeMux
	instances instances
	// One per body being read: small ones (SmallBody at most) and the
	// others.
	slots, smallSlots chan struct{}
	refusals          logsample.Sampler
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
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxSmallInFlight <= 0 {
		o.MaxSmallInFlight = DefaultMaxSmallInFlight
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = DefaultBodyTimeout
	}
	if o.RefusalLogEvery <= 0 {
		o.RefusalLogEvery = DefaultRefusalLogEvery
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Handler{o: o, queue: make(chan queued, o.Queue), mux: http.NewServeMux(),
		slots: make(chan struct{}, o.MaxInFlight), smallSlots: make(chan struct{}, o.MaxSmallInFlight), refusals: logsample.Sampler{Every: o.RefusalLogEvery}}
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

// queued is a signal accepted, and the id of its record in the Inbox ("":
// none).
type queued struct {
	s       state.Signal
	inboxID string
}

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
func (h *Handler) drain(ctx context.Context, first *queued) {
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

func (h *Handler) hand(ctx context.Context, q queued) {
	s := q.s
	res, err := h.o.Sink.Signal(ctx, s)
	if err != nil {
		res = "error"
		h.o.Logger.Error("live meeting signal not applied; it waits in the inbox", "vendor", s.Vendor, "event", s.Event, "meeting", s.Meeting, "err", err)
	}
	// Taken: its record in the inbox is no longer needed. Not when it
	// waits there (pending, or queued for the leader) or failed.
	if q.inboxID != "" && err == nil && res != Pending && res != Queued {
		if err := h.o.Inbox.DeleteSignal(ctx, q.inboxID); err != nil {
			h.o.Logger.Warn("drop a live meeting signal from the inbox", "err", err)
		}
	}
	h.count(s.Vendor, labelOf(s), res)
}

// labelOf is the metric's event label of a signal.
func labelOf(s state.Signal) string { return s.Event }

func (h *Handler) count(vendor, event, result string) {
	h.o.Metrics.Signals.WithLabelValues(vendor, event, result).Inc()
}

// body reads a delivery's body, or answers and returns false. What can be
// refused on its headers is refused before a byte of the body is read: a
// Content-Length over MaxBody (413), a signature header that cannot be
// right (signed, the vendor's check; 401). The rest is read within
// BodyTimeout and at most MaxBody bytes (413), a bounded number at once
// (503 beyond).
//
// The bound is two: MaxInFlight bodies of any size, and besides them
// MaxSmallInFlight bodies that declare at most SmallBody bytes, a vendor's
// event (Zoom's and Webex's are 0.5–3 KB). Uploads that stall hold their
// slot until BodyTimeout cuts them; were there one bound, a flood of them
// would hold every slot and the vendor's delivery sent meanwhile would be
// answered 503 (retried minutes later). Small bodies cost little — at
// most MaxSmallInFlight × SmallBody, 32 MiB — so their bound can be wide
// enough that a flood of thousands of stalled connections leaves room for
// the vendor.
func (h *Handler) body(w http.ResponseWriter, r *http.Request, vendor string, signed func(http.Header) error) ([]byte, bool) {
	// A refusal before the body is read closes the connection: the rest
	// of the body is not read either.
	if r.ContentLength > h.o.MaxBody {
		w.Header().Set("Connection", "close")
		h.refuse(w, r, vendor, "", "too_large", http.StatusRequestEntityTooLarge,
			fmt.Errorf("Content-Length %d over %d bytes", r.ContentLength, h.o.MaxBody))
		return nil, false
	}
	if err := signed(r.Header); err != nil {
		w.Header().Set("Connection", "close")
		h.refuse(w, r, vendor, "", "refused", http.StatusUnauthorized, err)
		return nil, false
	}
	slots := h.slots
	small := r.ContentLength >= 0 && r.ContentLength <= SmallBody
	if small {
		slots = h.smallSlots
	}
	select {
	case slots <- struct{}{}:
		defer func() { <-slots }()
	default:
		w.Header().Set("Retry-After", "5")
		w.Header().Set("Connection", "close")
		h.refuse(w, r, vendor, "", "busy", http.StatusServiceUnavailable,
			fmt.Errorf("%d deliveries of this size being read already", cap(slots)))
		return nil, false
	}
	// The server's ReadTimeout bounds the whole request; a body gets
	// less, so that a slot is held for BodyTimeout at most. Not every
	// ResponseWriter can (a test recorder): then the server's bound is
	// the one.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(h.o.BodyTimeout))
	var body []byte
	var err error
	if small {
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, h.o.MaxBody))
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		code, result := http.StatusBadRequest, "invalid"
		if errors.As(err, &tooBig) {
			code, result = http.StatusRequestEntityTooLarge, "too_large"
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			code = http.StatusRequestTimeout
		}
		h.refuse(w, r, vendor, "", result, code, err)
		return nil, false
	}
	// Read to the end: no further read of this request can block, and
	// none must be cut by the deadline (the server reads on, in the
	// background, to see the client go).
	_ = rc.SetReadDeadline(time.Time{})
	return body, true
}

// refuse answers a delivery that has no effect and counts it. It logs at
// most one line per RefusalLogEvery (a flood must not write one line per
// request), with the number of refusals not logged since.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, vendor, event, result string, code int, err error) {
	if event == "" {
		event = "unknown"
	}
	h.count(vendor, event, result)
	if skipped, ok := h.refusals.Allow(time.Now()); ok {
		h.o.Logger.Warn("webhook delivery refused", "vendor", vendor, "event", event, "result", result, "status", code,
			"remote", r.RemoteAddr, "err", err, "refused_unlogged", skipped)
	}
	http.Error(w, http.StatusText(code), code)
}

// accept answers 200 to a signed delivery that changes nothing (an event
// not used, one naming nobody, or a body that is not the vendor's JSON):
// Zoom and Webex disable a webhook that keeps failing. Only an invalid
// one is logged (sampled); an unused one is normal (a phone dial-in).
func (h *Handler) accept(w http.ResponseWriter, r *http.Request, vendor, event, result string, err error) {
	h.count(vendor, event, result)
	if result == "invalid" {
		if skipped, ok := h.refusals.Allow(time.Now()); ok {
			h.o.Logger.Warn("signed webhook delivery not understood", "vendor", vendor, "event", event, "remote", r.RemoteAddr,
				"err", err, "refused_unlogged", skipped)
		}
	} else {
		h.o.Logger.Debug("webhook delivery not used", "vendor", vendor, "event", event, "err", err)
	}
	w.WriteHeader(http.StatusOK)
}

// enqueue keeps signals in the Inbox (when set), hands them to Run and
// answers 200. It answers 503 (the vendor retries later) when the Inbox
// cannot take them, or, without an Inbox, when the queue is full; with
// one, a signal the full queue cannot take waits in the Inbox.
func (h *Handler) enqueue(w http.ResponseWriter, r *http.Request, vendor string, sigs []state.Signal) {
	now := h.o.Now()
	for _, s := range sigs {
		s.Received = now
		q := queued{s: s}
		if h.o.Inbox != nil {
			n, err := Normalize(s)
			if err == nil {
				q.inboxID = inboxPrefix + n.ID
				err = h.o.Inbox.PutSignal(r.Context(), withID(n, q.inboxID))
			}
			if err != nil {
				w.Header().Set("Retry-After", "30")
				h.refuse(w, r, vendor, s.Event, "unstored", http.StatusServiceUnavailable, fmt.Errorf("store the signal: %w", err))
				return
			}
		}
		select {
		case h.queue <- q:
		default:
			if q.inboxID != "" {
				continue // stored: the engine takes it from the inbox
			}
			h.refuse(w, r, vendor, s.Event, "dropped", http.StatusServiceUnavailable, errors.New("signal queue full"))
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

func (h *Handler) zoom(w http.ResponseWriter, r *http.Request) {
	body, ok := h.body(w, r, "zoom", func(hd http.Header) error {
		return checkZoomHeaders(hd.Get("x-zm-request-timestamp"), hd.Get("x-zm-signature"), h.o.Now())
	})
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
	// From here on the delivery is Zoom's: answered 2xx whatever it holds.
	ev, err := ParseZoom(body)
	label := zoomLabel(ev.Event)
	switch {
	case errors.Is(err, ErrUnknownEvent):
		h.accept(w, r, "zoom", label, "unused", err)
		return
	case err != nil:
		h.accept(w, r, "zoom", label, "invalid", err)
		return
	case ev.PlainToken != "":
		v, err := zoomValidate(h.o.ZoomSecret, ev.PlainToken)
		if err != nil {
			h.accept(w, r, "zoom", label, "invalid", err)
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
	case zoomPresence:
		return state.SignalPresence
	}
	return "other"
}

func (h *Handler) webex(w http.ResponseWriter, r *http.Request) {
	body, ok := h.body(w, r, "webex", func(hd http.Header) error { return checkWebexHeader(hd.Get("X-Spark-Signature")) })
	if !ok {
		return
	}
	if err := VerifyWebex(h.o.WebexSecret, r.Header.Get("X-Spark-Signature"), body); err != nil {
		h.refuse(w, r, "webex", "", "refused", http.StatusUnauthorized, err)
		return
	}
	// From here on the delivery is Webex's: answered 2xx whatever it
	// holds.
	d, err := ParseWebex(body)
	sigs := d.Signals
	label := webexLabel(d.Event)
	switch {
	case errors.Is(err, ErrUnknownEvent):
		h.accept(w, r, "webex", label, "unused", err)
		return
	case err != nil:
		h.accept(w, r, "webex", label, "invalid", err)
		return
	case d.Instance != "":
		if st, ok := h.o.Inbox.(instanceStore); ok {
			// Shared by the replicas, and kept across restarts: the
			// participant events of this instance may reach another
			// replica, or this one restarted.
			now := h.o.Now()
			rec := state.Signal{ID: state.InstancePrefix + d.Instance, Vendor: "webex", Event: state.SignalEventInstance,
				Meeting: d.Meeting, At: now, Received: now, Expires: now.Add(InstanceKeep)}
			if err := st.PutSignal(r.Context(), rec); err != nil {
				w.Header().Set("Retry-After", "30")
				h.refuse(w, r, "webex", label, "unstored", http.StatusServiceUnavailable, fmt.Errorf("store the meeting instance: %w", err))
				return
			}
		}
		h.instances.put(d.Instance, d.Meeting)
		h.count("webex", label, "noted")
		w.WriteHeader(http.StatusOK)
		return
	}
	for i := range sigs {
		// A participant event names the meeting instance: the meeting
		// number, when its start was seen, links it to the calendar.
		if id, ok := strings.CutPrefix(sigs[i].Meeting, keyWebexInstance); ok && sigs[i].Event != state.SignalEnded {
			if m, ok := h.instance(r.Context(), id); ok {
				sigs[i].Meeting = m
			}
		}
	}
	h.enqueue(w, r, "webex", sigs)
}

// webexLabel bounds the metric's event label to the events used.
func webexLabel(event string) string {
	switch event {
	case "meetings/ended":
		return state.SignalEnded
	case "meetings/started":
		return "started"
	case "meetingParticipants/left":
		return state.SignalLeft
	case "meetingParticipants/joined":
		return state.SignalJoined
	case "telephony_calls/created", "telephony_calls/updated", "telephony_calls/deleted":
		return state.SignalCall
	}
	return "other"
}

// InstanceKeep is how long the meeting of a Webex meeting instance is
// kept in the store: its participants' events come within hours of its
// start. Engines forget expired records at their start.
const InstanceKeep = 24 * time.Hour

// instanceStore is the part of the Inbox's store that keeps Webex meeting
// instances (state.InstancePrefix): both state drivers implement it.
type instanceStore interface {
	Signal(ctx context.Context, id string) (state.Signal, bool, error)
	PutSignal(ctx context.Context, sig state.Signal) error
}

// instance returns the meeting key of a Webex meeting instance: from
// memory, else from the store (its start reached another replica, or this
// one before a restart).
func (h *Handler) instance(ctx context.Context, id string) (string, bool) {
	if m, ok := h.instances.get(id); ok {
		return m, true
	}
	st, ok := h.o.Inbox.(instanceStore)
	if !ok {
		return "", false
	}
	rec, ok, err := st.Signal(ctx, state.InstancePrefix+id)
	if err != nil {
		// Not linked: a join is then an unscheduled call, ended by the
		// meeting's "ended" (which names the instance too).
		h.o.Logger.Warn("read a webex meeting instance", "err", err)
		return "", false
	}
	if !ok || rec.Meeting == "" {
		return "", false
	}
	h.instances.put(id, rec.Meeting)
	return rec.Meeting, true
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
