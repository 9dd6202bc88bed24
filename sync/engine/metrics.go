package engine

import (
	"strings"
	"time"

	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/sync/identity"
	"github.com/calpresence/calpresence/sync/plan"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus metrics of the worker (docs/operations.md).
type Metrics struct {
	// Feeds are the per-source series: fetches by result, occurrences in
	// the window, the last good read, health, dropped calendar data,
	// staleness.
	Feeds           *FeedMetrics
	GraphRequests   *prometheus.CounterVec   // op, code
	GraphRetryAfter *prometheus.HistogramVec // op: ObserveRetryAfter
	TransitionLag   prometheus.Histogram     // boundary → call sent, seconds
	Sessions        prometheus.Gauge         // presence sessions held
	UsersBusy       prometheus.Gauge         // users inside a span now
	Reconciles      prometheus.Counter
	Addresses       *prometheus.GaugeVec // state: resolved|unknown|pending
	ClearsPending   prometheus.Gauge     // clears failed and awaiting retry
	// ReadbackPeople: people the last read-back found, by result
	// (shown, own_status).
	ReadbackPeople    *prometheus.GaugeVec
	ReadbackReasserts prometheus.Counter // lost sessions set again
	// PresenceChanges: sets and clears Graph accepted, by action (set,
	// clear) and reason (changeReason).
	PresenceChanges *prometheus.CounterVec
	// PeopleHeld: people held back from Graph calls now, by kind (the
	// Hold kinds: the status page's "Held back").
	PeopleHeld *prometheus.GaugeVec
	// OwnFeeds: people's own feeds in force (selfservice.feeds), by
	// user (UPN); never their URLs.
	OwnFeeds *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Feeds: newFeedMetrics(),
		GraphRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calpresence_graph_requests_total", Help: "Graph presence calls by operation and HTTP status (0: transport error).",
		}, []string{"op", "code"}),
		GraphRetryAfter: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "calpresence_graph_retry_after_seconds",
			Help:    "Waits Graph asked for with Retry-After (and that were honoured), by operation.",
			Buckets: []float64{.5, 1, 2, 5, 10, 30, 60, 120, 300, 900},
		}, []string{"op"}),
		TransitionLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "calpresence_transition_lag_seconds",
			Help:    "Delay from a scheduled span boundary to the Graph call being sent.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		Sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "calpresence_sessions", Help: "Presence sessions held.",
		}),
		UsersBusy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "calpresence_users_busy", Help: "Users inside a busy span now.",
		}),
		Reconciles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "calpresence_reconciles_total", Help: "Reconcile passes.",
		}),
		Addresses: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "calpresence_addresses",
			Help: "Calendar addresses met since start, by resolution: resolved (to a person), unknown (no Entra user), pending (not looked up yet, or the lookup failed).",
		}, []string{"state"}),
		ClearsPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "calpresence_clears_pending",
			Help: "Sessions whose clear has not succeeded yet (retried with back-off until the lease runs out).",
		}),
		ReadbackPeople: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "calpresence_readback_people",
			Help: "People the last read-back of Teams presence found, by result: shown (Teams shows our session or busier), own_status (their own status wins; left alone until the span ends).",
		}, []string{"result"}),
		ReadbackReasserts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "calpresence_readback_reasserts_total",
			Help: "Sessions the read-back found lost (Teams showed less than we set while it should be in force) and set again.",
		}),
		PresenceChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calpresence_presence_changes_total",
			Help: "Presence sets and clears Graph accepted, by action (set, clear) and reason (start, keep-alive, extended, changed, restart, expired, lost, hold-ended, retry, end, shortened, early-end, operator, other).",
		}, []string{"action", "reason"}),
		PeopleHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "calpresence_people_held",
			Help: "People held back from Graph calls now, by kind: unknown (no such user in Entra), throttled, retrying, refused (for the span), operator (cleared by an operator).",
		}, []string{"kind"}),
		OwnFeeds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "calpresence_own_feeds",
			Help: "ICS feeds people added on their self-service page and the worker polls, by user.",
		}, []string{"user"}),
	}
	if reg != nil {
		reg.MustRegister(m.Feeds,
			m.GraphRequests, m.GraphRetryAfter, m.TransitionLag, m.Sessions, m.UsersBusy, m.Reconciles, m.Addresses, m.ClearsPending,
			m.ReadbackPeople, m.ReadbackReasserts, m.PresenceChanges, m.PeopleHeld, m.OwnFeeds)
	}
	return m
}

// ObserveRetryAfter notes a Retry-After of d honoured for a Graph call of
// op (policy's name), labelled as calpresence_graph_requests_total labels
// it (setPresence: set, clearPresence: clear). It is what the daemon hands
// graph.WithRetryAfterObserver.
func (m *Metrics) ObserveRetryAfter(op string, d time.Duration) {
	switch op {
	case policy.OpSetPresence:
		op = plan.OpSet
	case policy.OpClearPresence:
		op = plan.OpClear
	}
	m.GraphRetryAfter.WithLabelValues(op).Observe(d.Seconds())
}

// ResetGauges forgets what the gauges say of an engine that stopped: a
// replica whose engine stopped when it lost the lead must not go on
// showing the feeds, sessions and people of the time it led (the leader
// shows them now). Counters and the histogram keep counting.
func (m *Metrics) ResetGauges() {
	m.Feeds.resetGauges()
	for _, g := range []*prometheus.GaugeVec{m.Addresses, m.ReadbackPeople, m.PeopleHeld, m.OwnFeeds} {
		g.Reset()
	}
	for _, g := range []prometheus.Gauge{m.Sessions, m.UsersBusy, m.ClearsPending} {
		g.Set(0)
	}
}

// forIdentity is the part of m the address directory updates.
func (m *Metrics) forIdentity() *identity.Metrics {
	return &identity.Metrics{GraphRequests: m.GraphRequests, Addresses: m.Addresses}
}

// changeReason is the reason label of calpresence_presence_changes_total:
// the reconcile's reason (plan.Reason*), the early ends (removed, moved,
// cancelled, declined, a live signal, a removed source) as one,
// "early-end", and anything else "other", so that the label keeps a small
// fixed set of values. The log says which early end it was.
func changeReason(reason string) string {
	switch reason {
	case plan.ReasonStart, plan.ReasonKeepAlive, plan.ReasonExtended, plan.ReasonChanged, plan.ReasonRestart,
		plan.ReasonExpired, plan.ReasonLost, plan.ReasonHoldEnded, plan.ReasonRetry, plan.ReasonEnd,
		plan.ReasonShortened, plan.ReasonOperator:
		return reason
	}
	if strings.HasPrefix(reason, earlyEnd) {
		return earlyEnd
	}
	return "other"
}

// earlyEnd begins the reasons of a clear before the span's scheduled end.
const earlyEnd = "early-end"

// heldKinds are the values of calpresence_people_held's kind label.
var heldKinds = []string{HoldUnknown, HoldThrottle, HoldRetry, HoldRefused, HoldOperator}
