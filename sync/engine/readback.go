package engine

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state"
)

// The read-back: setting presence is half the job, the other half is
// knowing what Teams shows. Every graph.readback_interval, and shortly
// after each burst of sets, the engine reads the presence of everyone it
// holds a session for (getPresencesByUserId, in as few calls as Graph
// allows) and judges each person:
//
//   - shown: Teams shows our availability or a busier one.
//   - lost: Teams shows less while our session should be in force: Graph
//     dropped it. The record is marked Lost and a reconcile sets it again
//     at once, through the executor like every set.
//   - own status: still less after that one re-set: the person chose
//     their own status, which beats every application. The record says so
//     until the span ends (state.Session.OwnStatusUntil): nothing is set
//     for them before then, after a restart too.
//
// Reads run in their own goroutine, outside the reconcile lock: a
// boundary never waits for a read in flight. Only the record updates
// after a read take the lock, for as long as a store write.

// Read-back results, the result label of calpresence_readback_people.
const (
	ReadbackShown     = "shown"
	ReadbackLost      = "lost"
	ReadbackOwnStatus = "own_status"
)

// ReadbackAfterBurst is how long after a burst of sets the read-back
// looks: Graph aggregates a person's sessions within a moment, and a burst
// of hundreds is read in one go, not person by person.
const ReadbackAfterBurst = 2 * time.Second

// readbackSettle is how long a session must have been set before a read
// judges it: a read that raced the set would call it lost.
const readbackSettle = 2 * time.Second

// maxReadIDs is Graph's limit of ids per getPresencesByUserId call, to
// count the calls of a read-back.
const maxReadIDs = 650

// opReadPresences names the read calls in calpresence_graph_requests_total.
const opReadPresences = "getPresencesByUserId"

// ShownPerson is what the last read-back found for one person.
type ShownPerson struct {
	Shown  presence.Shown
	Result string // ReadbackShown, ReadbackLost or ReadbackOwnStatus
	At     time.Time
}

// readback is the read-back's memory: what it found at the last read, and
// the poke of a burst of sets.
type readback struct {
	soon chan struct{}

	mu       sync.Mutex
	last     map[string]ShownPerson // by person id
	messages []messageJob           // status messages to send (statusmessage.go)
	// refused are the people whose status message Graph refused, with the
	// span (start, end) it was refused for: none is tried again for it.
	refused map[string][2]time.Time
}

func newReadback() *readback { return &readback{soon: make(chan struct{}, 1)} }

// poke asks for a read-back shortly (after a burst of sets).
func (r *readback) poke() {
	select {
	case r.soon <- struct{}{}:
	default:
	}
}

// shown returns what the last read-back found for id.
func (r *readback) shown(id string) (ShownPerson, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.last[id]
	return p, ok
}

// readbackLoop runs the read-back until ctx is done: at every
// graph.readback_interval (read at each turn: a reload changes it), and
// ReadbackAfterBurst after a burst of sets. A failed read backs off
// (policy.Wait: Graph's Retry-After, else the back-off) and is logged;
// it never holds up a set. The status messages go out from here too,
// after a burst, and their retries when they are due.
func (e *Engine) readbackLoop(ctx context.Context) {
	failures := 0
	var retryAt, readAt time.Time
	for {
		interval := e.config().Graph.ReadbackInterval
		if readAt.IsZero() {
			wait := interval
			if interval <= 0 {
				wait = time.Minute // off: look again for a reload that turns it on
			}
			if !retryAt.IsZero() {
				wait = max(time.Until(retryAt), 0)
			}
			readAt = time.Now().Add(wait)
		}
		t := time.NewTimer(max(time.Until(readAt), 0))
		var (
			m             *time.Timer
			retryMessages <-chan time.Time
		)
		if at, ok := e.rb.nextMessage(); ok {
			m = time.NewTimer(max(time.Until(at), 0))
			retryMessages = m.C
		}
		stop := func() {
			t.Stop()
			if m != nil {
				m.Stop()
			}
		}
		select {
		case <-ctx.Done():
			stop()
			return
		case <-t.C:
			stop()
		case <-retryMessages:
			// A status message to try again: the read-back keeps its time.
			stop()
			e.flushMessages(ctx)
			continue
		case <-e.rb.soon:
			stop()
			s := time.NewTimer(ReadbackAfterBurst)
			select {
			case <-ctx.Done():
				s.Stop()
				return
			case <-s.C:
			}
			if !retryAt.IsZero() {
				e.flushMessages(ctx)
				continue // backing off: the retry reads everyone anyway
			}
		}
		readAt = time.Time{}
		// A dry run sets nothing: there is nothing in Teams to judge it by.
		g := e.config().Graph
		e.flushMessages(ctx)
		if g.ReadbackInterval <= 0 || g.DryRun || !e.startedUp() {
			retryAt = time.Time{}
			continue
		}
		err := e.readBack(ctx)
		switch {
		case err == nil:
			failures, retryAt = 0, time.Time{}
		case ctx.Err() != nil:
			return
		default:
			failures++
			wait := policy.Wait(err, failures)
			if interval > 0 {
				wait = min(wait, interval)
			}
			retryAt = time.Now().Add(wait)
			e.log.Warn("read back presence failed; will retry", "err", err, "retry_in", wait.String(), "attempt", failures)
		}
	}
}

// judged reports whether the read-back judges sess at now: a session that
// should be in force, set a moment ago or longer, with no call in flight.
func judged(sess state.Session, now time.Time) bool {
	return sess.UserID != "" && sess.Pending == "" && !sess.Lost && sess.Expires.After(now) &&
		!sess.HeldAt(now) && !now.Before(sess.SpanStart) && now.Before(sess.SpanEnd) &&
		now.Sub(sess.SetAt) >= readbackSettle
}

// readBack reads what Teams shows for everyone the worker holds a session
// for and acts on it (see the top of this file).
func (e *Engine) readBack(ctx context.Context) error {
	start := time.Now()
	before, err := e.readSessions(ctx, false)
	if err != nil {
		return err
	}
	var ids []string
	for _, s := range before {
		if s.UserID != "" && s.Live(start) {
			ids = append(ids, s.UserID)
		}
	}
	if len(ids) == 0 {
		e.rb.mu.Lock()
		e.rb.last = nil
		e.rb.mu.Unlock()
		e.setReadbackGauges(0, 0)
		return nil
	}
	shown, err := e.exec.presence.ReadPresences(ctx, ids)
	e.countReads(len(ids), err)

	// The records are judged as they are now, under the reconcile lock: a
	// record that changed during the read (a set, a clear) is left to the
	// next read.
	e.reconcileMu.Lock()
	defer e.reconcileMu.Unlock()
	now := time.Now()
	cur, rerr := e.readSessions(ctx, false)
	if rerr != nil {
		return errors.Join(err, rerr)
	}
	last := make(map[string]ShownPerson, len(shown))
	var puts []state.Session
	nShown, nOwn, lost := 0, 0, 0
	for id, sh := range shown {
		s, ok := cur[id]
		b := before[id]
		if !ok || s.SetAt != b.SetAt || s.SpanStart != b.SpanStart || s.Pending != b.Pending {
			continue
		}
		p := ShownPerson{Shown: sh, At: now, Result: ReadbackShown}
		log := e.log.With("user", e.dir.UPN(id), "user_id", id, "availability", s.Availability,
			"shown", sh.Availability, "span_start", s.SpanStart, "span_end", s.SpanEnd)
		switch {
		case s.OwnStatusAt(now):
			p.Result = ReadbackOwnStatus
		case !judged(s, start):
			if presence.AvailabilityRank(sh.Availability) < presence.AvailabilityRank(s.Availability) {
				p.Result = "" // not judged: shown as read, no verdict
			}
		case presence.AvailabilityRank(sh.Availability) >= presence.AvailabilityRank(s.Availability):
			if s.Reasserted {
				// The re-set showed: a later loss in this span is Graph's
				// again, not the person's own status.
				s.Reasserted = false
				puts = append(puts, s)
			}
		case !s.Reasserted:
			p.Result = ReadbackLost
			s.Lost = true
			puts = append(puts, s)
			lost++
			log.Warn("Teams does not show the session: Graph lost it; setting it again", "reason", "lost")
		default:
			p.Result = ReadbackOwnStatus
			s.OwnStatusUntil = s.SpanEnd
			puts = append(puts, s)
			log.Info("Teams shows the person's own status, which wins: nothing is set for them until the span ends",
				"own_status_until", s.SpanEnd)
		}
		switch p.Result {
		case ReadbackShown:
			nShown++
		case ReadbackOwnStatus:
			nOwn++
		}
		last[id] = p
	}
	if len(puts) > 0 {
		if perr := e.store.PutSessions(ctx, puts); perr != nil {
			err = errors.Join(err, perr)
			lost = 0
		}
	}
	e.metrics.ReadbackReasserts.Add(float64(lost))
	e.setReadbackGauges(nShown, nOwn)
	e.rb.mu.Lock()
	e.rb.last = last
	e.rb.mu.Unlock()
	if lost > 0 {
		e.kickReconcile()
	}
	return err
}

func (e *Engine) setReadbackGauges(shown, own int) {
	e.metrics.ReadbackPeople.WithLabelValues(ReadbackShown).Set(float64(shown))
	e.metrics.ReadbackPeople.WithLabelValues(ReadbackOwnStatus).Set(float64(own))
}

// countReads counts a read-back's getPresencesByUserId calls by status:
// n ids are ⌈n/650⌉ calls, each failed one is in err (joined).
func (e *Engine) countReads(n int, err error) {
	calls := (n + maxReadIDs - 1) / maxReadIDs
	var failed []error
	if err != nil {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			failed = j.Unwrap()
		} else {
			failed = []error{err}
		}
	}
	for _, f := range failed {
		e.metrics.GraphRequests.WithLabelValues(opReadPresences, presence.StatusCode(f)).Inc()
	}
	if ok := calls - len(failed); ok > 0 {
		e.metrics.GraphRequests.WithLabelValues(opReadPresences, "200").Add(float64(ok))
	}
}
