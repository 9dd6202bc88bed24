package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/identity"
	"github.com/calpresence/calpresence/sync/plan"
)

// Presence is what sync needs from Microsoft Graph. graph.Client implements
// it; tests use fakes. Errors should be *presence.Error so they can be
// classified.
type Presence interface {
	SetPresence(ctx context.Context, userID, availability, activity string, expiration time.Duration) error
	ClearPresence(ctx context.Context, userID string) error
	// ResolveUser names the Entra user a calendar address belongs to (UPN,
	// mail or proxy address, any case; an object id). It caches nothing.
	ResolveUser(ctx context.Context, address string) (presence.Person, error)
	// ReadPresences returns what Teams shows for each of ids, in as few
	// calls as Graph allows (getPresencesByUserId); an id missing from
	// the map was not read. A partial answer may come with an error.
	ReadPresences(ctx context.Context, ids []string) (map[string]presence.Shown, error)
	// SetStatusMessage sets the person's Teams status message until
	// expires; ClearStatusMessage removes it, whoever wrote it (the
	// caller makes sure it is the worker's).
	SetStatusMessage(ctx context.Context, userID, message string, expires time.Time) error
	ClearStatusMessage(ctx context.Context, userID string) error
}

// Store records the sessions we hold, by person, and what Entra said of
// each address. Every state.Store implements it; state/mem keeps them in memory
// (dry run).
type Store interface {
	// Sessions may return the sessions that decode together with a
	// *state.BadRecordsError for those that do not: not fatal.
	Sessions(ctx context.Context) (map[string]state.Session, error)
	PutSession(ctx context.Context, sess state.Session) error
	PutSessions(ctx context.Context, sessions []state.Session) error
	DeleteSession(ctx context.Context, key string) error
	Identities(ctx context.Context) (map[string]state.Identity, error)
	PutIdentities(ctx context.Context, ids []state.Identity) error
	DeleteIdentity(ctx context.Context, address string) error
}

// Result is what became of one action.
type Result struct {
	Action plan.Action
	Err    error // nil on success
	Sent   time.Time
}

// executor sends actions to Graph with a concurrency sized to the work
// (policy.Gate), recording each session before and after the call, and
// keeps the per-person holds that the verdict of a failed call asks for
// (graph/policy decides the verdict; the executor only applies it): an id
// Graph does not know, a set refused for its span, a retry after Graph's
// Retry-After or the policy's back-off (policy.Wait). Actions name people
// by object id: no lookup is on its path. The presence rate limit is the
// Graph client's pacer (policy.Pacer, graph.WithPacer): only the client
// sees each attempt, its own retries included.
type executor struct {
	presence Presence
	store    Store
	dir      *identity.Directory
	gate     *policy.Gate
	grace    time.Duration // a call in flight at shutdown may take this long
	log      *slog.Logger
	metrics  *Metrics

	mu    sync.Mutex
	holds map[string]hold

	recent recentErrors // the last failed Graph calls, for the status page
}

type hold struct {
	until   time.Time
	unknown bool // Graph does not know the id (reported once)
	tries   int
	why     string
	code    int // the HTTP status of the last failure (0: none, or no answer)
}

// kind says why h holds someone back: one of the Hold kinds but
// HoldOperator (an operator's clear is kept with the sessions).
func (h hold) kind() string {
	switch {
	case h.unknown:
		return HoldUnknown
	case h.tries > 0 && (h.code == 429 || h.code == 503):
		return HoldThrottle
	case h.tries > 0:
		return HoldRetry
	}
	return HoldRefused
}

func newExecutor(p Presence, st Store, dir *identity.Directory, g *policy.Gate, log *slog.Logger, m *Metrics) *executor {
	return &executor{presence: p, store: st, dir: dir, gate: g, log: log, metrics: m, holds: make(map[string]hold)}
}

// heldAt is a snapshot of the holds in force at now: person id → until.
// Holds that ended more than holdMemory ago are deleted on the way.
func (x *executor) heldAt(now time.Time) map[string]time.Time {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make(map[string]time.Time)
	for id, h := range x.holds {
		switch {
		case now.Before(h.until):
			out[id] = h.until
		case now.Sub(h.until) > holdMemory:
			delete(x.holds, id)
		}
	}
	return out
}

// holdMemory is how long a hold is remembered after it ended: a call that
// fails again within it backs off from where the last back-off stopped
// (and an unknown id is not reported again); after it, a failure starts
// afresh and the hold is gone (people come and go: the map must not keep
// everyone who ever failed once).
const holdMemory = 15 * time.Minute

// nextRelease is the earliest time a timed hold ends (zero: none).
func (x *executor) nextRelease(now time.Time) time.Time {
	x.mu.Lock()
	defer x.mu.Unlock()
	var t time.Time
	for _, h := range x.holds {
		if h.until.After(now) && (t.IsZero() || h.until.Before(t)) {
			t = h.until
		}
	}
	return t
}

// run carries out the actions, starting them in the order given with as
// many in flight as the gate allows, and returns their results in that
// order.
//
// The intent of every call is recorded before the call is made, in
// batches ahead of the calls (intentBatch): if we die mid-burst, the next
// start knows which sessions are uncertain, and the first call of a large
// burst does not wait for the records of the last (81,840 of them at a
// restart over 100,000 feeds).
func (x *executor) run(ctx context.Context, actions []plan.Action) []Result {
	results := make([]Result, len(actions))
	pending := make([]state.Session, len(actions))
	now := time.Now()
	for i, a := range actions {
		if a.Op == plan.OpSet || a.Op == plan.OpClear {
			pending[i] = intent(a, now)
		}
	}
	recorded, batch := 0, intentBatch
	var wg sync.WaitGroup
	for i, a := range actions {
		if i == recorded {
			end := min(i+batch, len(actions))
			batch = min(2*batch, maxIntentBatch)
			if err := x.recordIntents(ctx, actions[i:end], pending[i:end]); err != nil {
				// No call without its record: back off as for a failed
				// call, so a broken state file does not spin the loop.
				err = fmt.Errorf("record intent: %w", err)
				for j := i; j < len(actions); j++ {
					results[j] = Result{Action: actions[j], Err: err}
					x.fail(ctx, actions[j], err, x.logFor(actions[j]))
				}
				break
			}
			recorded = end
		}
		if a.Op == plan.OpForget || a.Op == plan.OpNote {
			err := x.record(ctx, a)
			if err != nil {
				// Logged and backed off like a failed call: a full disk
				// must not turn the loop into a thousand writes a second.
				err = fmt.Errorf("record: %w", err)
				x.fail(ctx, a, err, x.logFor(a))
			}
			results[i] = Result{Action: a, Err: err}
			continue
		}
		if ctx.Err() != nil || x.gate.Acquire(ctx) != nil {
			// Shutting down: no new call. The recorded intent stays, and
			// the next start treats it as uncertain.
			results[i] = Result{Action: a, Err: ctx.Err()}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The slot bounds concurrent Graph calls only: it is freed as
			// soon as Graph has answered, and the record of the outcome is
			// written while the next call goes out (concurrent writes share
			// one fsync through bbolt's Batch).
			var once sync.Once
			done := func(latency time.Duration) { once.Do(func() { x.gate.Release(latency) }) }
			defer done(0)
			results[i] = x.call(ctx, a, pending[i], done)
		}()
	}
	wg.Wait()
	return results
}

// The intents of a pass are recorded in batches that double from
// intentBatch to maxIntentBatch: the first calls leave after a small
// write, and a burst of 80,000 takes a few dozen transactions, each
// written while the calls of the batch before are in flight.
const (
	intentBatch    = 64
	maxIntentBatch = 4096
)

// recordIntents records, in one transaction, the intents among pending
// (those of the sets and clears of actions).
func (x *executor) recordIntents(ctx context.Context, actions []plan.Action, pending []state.Session) error {
	var intents []state.Session
	for i, a := range actions {
		if a.Op == plan.OpSet || a.Op == plan.OpClear {
			intents = append(intents, pending[i])
		}
	}
	if len(intents) == 0 {
		return nil
	}
	return x.store.PutSessions(ctx, intents)
}

// intent is the record of a call about to be made at now: for a set, the
// session it will create; for a clear, the session it will end.
//
// A set's intent records as Expires the latest the new lease can end
// (now + its expiration): while the set is uncertain, and for a clear
// that follows it, that is how long Graph may show the person busy, so a
// clear is retried until then.
func intent(a plan.Action, now time.Time) state.Session {
	p := a.Prev
	if a.Op == plan.OpSet || !a.HasPrev {
		p = state.Session{UserID: a.User, Availability: a.Pair.Availability, Activity: a.Pair.Activity,
			SpanStart: a.Span.Start, SpanEnd: a.Span.End, Expires: a.Prev.Expires, SetAt: a.Prev.SetAt, Events: a.Span.Events()}
	}
	if a.Op == plan.OpSet {
		p.Expires = maxTime(p.Expires, now.Add(a.Expiration))
		// One re-set of a lost session per span: the read-back judges a
		// second loss to be the person's own status.
		sameSpan := a.HasPrev && a.Prev.SpanStart.Equal(a.Span.Start)
		p.Reasserted = a.Reason == plan.ReasonLost || (sameSpan && a.Prev.Reasserted)
		if sameSpan {
			p.OwnStatusUntil, p.Message = a.Prev.OwnStatusUntil, a.Prev.Message
		}
	}
	p.UserID, p.Pending = a.User, a.Op
	p.HeldUntil = maxTime(p.HeldUntil, a.HoldUntil)
	if a.Name != "" {
		p.UPN = a.Name
	}
	return p
}

// record applies a record-only action.
func (x *executor) record(ctx context.Context, a plan.Action) error {
	switch a.Op {
	case plan.OpForget:
		return x.store.DeleteSession(ctx, a.User)
	case plan.OpNote:
		if !a.HasPrev {
			return nil
		}
		s := a.Prev
		s.SpanStart, s.SpanEnd, s.Events = a.Span.Start, a.Span.End, a.Span.Events()
		return x.store.PutSession(ctx, s)
	}
	return nil
}

// afterGrace returns a context that ends grace after parent does (or when
// cancel is called).
func afterGrace(parent context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() { time.AfterFunc(grace, cancel) })
	return ctx, func() { stop(); cancel() }
}

// logFor is the logger of one action: the person by UPN, with their id.
func (x *executor) logFor(a plan.Action) *slog.Logger {
	return x.log.With("user", a.Display(), "user_id", a.User, "op", a.Op, "reason", a.Reason)
}

// call makes one Graph call; it calls answered with the call's latency
// once Graph has answered.
func (x *executor) call(ctx context.Context, a plan.Action, pending state.Session, answered func(time.Duration)) Result {
	log := x.logFor(a)
	id := a.User
	var err error
	// A call once started may finish when we are shutting down (SIGTERM):
	// its outcome is then recorded, not left uncertain. It gets x.grace
	// after ctx ends, no more, so that shutdown ends within Kubernetes'
	// grace period; a call cut short stays recorded as uncertain.
	ctx, cancel := afterGrace(ctx, x.grace)
	defer cancel()
	sent := time.Now()
	if !a.Due.IsZero() {
		x.metrics.TransitionLag.Observe(max(sent.Sub(a.Due), 0).Seconds())
	}
	switch a.Op {
	case plan.OpSet:
		err = x.presence.SetPresence(ctx, id, a.Pair.Availability, a.Pair.Activity, a.Expiration)
	case plan.OpClear:
		err = x.presence.ClearPresence(ctx, id)
		if presence.KindOf(err) == presence.NotFound && err != nil {
			err = nil // the session is already gone: success
		}
	}
	answered(time.Since(sent))
	x.count(a.Op, err)
	x.recent.add(a, err, sent)

	if err == nil {
		x.metrics.PresenceChanges.WithLabelValues(a.Op, changeReason(a.Reason)).Inc()
		x.clearHold(a.User)
		var rerr error
		if a.Op == plan.OpSet {
			pending.Pending, pending.SetAt, pending.Expires = "", sent, sent.Add(a.Expiration)
			rerr = x.store.PutSession(ctx, pending)
		} else {
			rerr = x.ended(ctx, pending, sent)
		}
		attrs := []any{"span_start", a.Span.Start, "span_end", a.Span.End}
		if !a.HoldUntil.IsZero() {
			attrs = append(attrs, "held_until", a.HoldUntil)
		}
		if a.Op == plan.OpSet {
			attrs = append(attrs, "availability", a.Pair.Availability, "activity", a.Pair.Activity, "expiration", a.Expiration.String())
		}
		log.Info("presence "+a.Op, attrs...)
		if rerr != nil {
			// Graph has it, our record does not: back off rather than
			// repeat the call at once.
			rerr = fmt.Errorf("record outcome: %w", rerr)
			x.fail(ctx, a, rerr, log)
		}
		return Result{Action: a, Err: rerr, Sent: sent}
	}

	if k := presence.KindOf(err); a.Op == plan.OpSet && (k == presence.Permanent || k == presence.NotFound) {
		// Graph refused the set: nothing changed there.
		x.undo(ctx, a)
	}
	// Anything else leaves the record pending: the next pass repeats the
	// call. A clear is never undone, whatever Graph answered (a 403 while
	// an admin changes consent is no reason to leave someone Busy): it is
	// retried with back-off until the lease it clears has run out.
	x.fail(ctx, a, err, log)
	return Result{Action: a, Err: err, Sent: sent}
}

// ended records that a clear went through at t: the record goes, or,
// while an operator's clear holds the person back, stays as that hold with
// no lease and nothing pending.
func (x *executor) ended(ctx context.Context, s state.Session, t time.Time) error {
	if !s.HeldAt(t) {
		return x.store.DeleteSession(ctx, s.Key())
	}
	s.Pending, s.Expires = "", t
	return x.store.PutSession(ctx, s)
}

// undo voids the intent recorded for a call that Graph never acted on:
// the previous session comes back (a set), or the record goes (a clear
// that cannot be made, or a set with nothing before it).
func (x *executor) undo(ctx context.Context, a plan.Action) {
	var err error
	if a.Op == plan.OpSet && a.HasPrev {
		err = x.store.PutSession(ctx, a.Prev)
	} else {
		err = x.store.DeleteSession(ctx, a.User)
	}
	if err != nil {
		x.log.Error("restore session record", "user", a.User, "err", err)
	}
}

// fail logs a failed call and holds the user back as its kind (policy.Classify's
// verdict) requires: gone on a set, the id is looked up again; held on a
// set, until the span ends; anything else, including every failed clear,
// is tried again after policy.Wait (Retry-After, else the back-off, which
// grows with the tries held in holdMemory).
func (x *executor) fail(ctx context.Context, a plan.Action, err error, log *slog.Logger) {
	if presence.KindOf(err) == presence.NotFound && a.Op == plan.OpSet && x.dir != nil {
		x.dir.Forget(ctx, a.User)
	}
	now := time.Now()
	x.mu.Lock()
	defer x.mu.Unlock()
	h := x.holds[a.User]
	switch kind := presence.KindOf(err); {
	case errors.Is(err, context.Canceled):
		return
	case errors.Is(err, state.ErrFenced):
		// The store refused the record: another replica leads now, and
		// this engine is being stopped. Nothing to retry or hold back.
		return
	case kind == presence.NotFound && a.Op == plan.OpSet:
		// Graph does not know the id (a user deleted, perhaps re-created
		// with a new id): the directory looks the person's addresses up
		// again; this id is left alone for identity.UnknownUserRecheck.
		if !h.unknown {
			log.Error("user id not found in Entra; looking the person up again", "err", err, "recheck_in", identity.UnknownUserRecheck.String())
		}
		x.holds[a.User] = hold{until: now.Add(identity.UnknownUserRecheck), unknown: true, why: "user id not found"}
	case kind == presence.Permanent && a.Op == plan.OpSet:
		// Not retried: hold until the span it was for is over.
		log.Error("graph refused the call; not retried for this span", "err", err)
		x.holds[a.User] = hold{until: maxTime(a.Span.End, now.Add(time.Minute)), why: err.Error()}
	default:
		h.tries++
		wait := policy.Wait(err, h.tries)
		code := 0 // the status, for the hold's kind (throttled or retrying)
		var pe *presence.Error
		if errors.As(err, &pe) {
			code = pe.Status
		}
		log.Warn("graph call failed; will retry", "err", err, "retry_in", wait.String(), "attempt", h.tries)
		x.holds[a.User] = hold{until: now.Add(wait), tries: h.tries, why: err.Error(), code: code}
	}
}

// clearHold ends a retry back-off or an unknown-user hold after a
// successful call; a refusal for the span stays until the span is over.
func (x *executor) clearHold(user string) {
	x.mu.Lock()
	if h := x.holds[user]; h.tries > 0 || h.unknown {
		delete(x.holds, user)
	}
	x.mu.Unlock()
}

func (x *executor) count(op string, err error) {
	x.metrics.GraphRequests.WithLabelValues(op, presence.StatusCode(err)).Inc()
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
