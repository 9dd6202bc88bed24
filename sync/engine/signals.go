package engine

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/internal/mailaddr"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/signals"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/plan"
)

// Signal is a live meeting fact from a Zoom or Webex webhook (docs/webhooks.md): a meeting ended, a participant left or joined it.
type Signal = state.Signal

// withMeeting returns copies of the busy matches whose occurrence names
// meeting and is in effect at t. It reads the feeds in place, under their
// lock: a signal must not cost a copy of every match (hundreds of people
// join at the top of the hour).
func (fs *feedSet) withMeeting(meeting string, t time.Time) []plan.Match {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var out []plan.Match
	for _, f := range fs.feeds {
		for i := range f.matches {
			m := &f.matches[i]
			if m.Busy() && slices.Contains(m.Occ.MeetingKeys, meeting) && !t.Before(m.Occ.Start.Add(-m.Lead)) && t.Before(m.Occ.End.Add(m.Grace)) {
				out = append(out, *m)
			}
		}
	}
	return out
}

// signalSet is the engine's live meeting signals: in memory, and in the
// store when it keeps them.
type signalSet struct {
	mu    sync.Mutex
	store signals.Store // nil: memory only
	byID  map[string]Signal
	gen   uint64 // counts the changes of byID: the engine's spans follow it
}

func newSignalSet(ctx context.Context, st Store, log *slog.Logger) *signalSet {
	ss := &signalSet{byID: make(map[string]Signal)}
	if s, ok := st.(signals.Store); ok {
		ss.store = s
		got, err := s.Signals(ctx)
		if err != nil {
			// Not fatal: the good ones are back; a bad record is skipped.
			log.Warn("read live meeting signals", "err", err)
		}
		for id, sig := range got {
			if strings.HasPrefix(id, state.QueuedPrefix) {
				continue // queued by a standby, not applied yet (TakeInbox)
			}
			if strings.HasPrefix(id, state.InstancePrefix) {
				// A Webex meeting instance's meeting (the webhook
				// receiver's): no signal. Forgotten here once expired.
				if !time.Now().Before(sig.Expires) {
					if err := s.DeleteSignal(ctx, id); err != nil {
						log.Warn("forget an expired webex meeting instance", "err", err)
					}
				}
				continue
			}
			ss.byID[id] = sig
		}
	}
	return ss
}

// at returns the signals in force at now, and forgets the expired ones.
func (ss *signalSet) at(ctx context.Context, now time.Time, log *slog.Logger) ([]Signal, uint64) {
	var out []Signal
	var expired []string
	ss.mu.Lock()
	for id, s := range ss.byID {
		if !now.Before(s.Expires) {
			delete(ss.byID, id)
			expired = append(expired, id)
			continue
		}
		out = append(out, s)
	}
	if len(expired) > 0 {
		ss.gen++
	}
	gen := ss.gen
	ss.mu.Unlock()
	if ss.store != nil {
		for _, id := range expired {
			// A record left behind is forgotten again at the next start.
			if err := ss.store.DeleteSignal(ctx, id); err != nil {
				log.Warn("forget an expired live meeting signal", "err", err)
			}
		}
	}
	return out, gen
}

// lastJoined is the time of the latest "joined" of meeting (by email; by
// anyone when email is empty) at or before t; zero when there is none.
func (ss *signalSet) lastJoined(meeting, email string, t time.Time) time.Time {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var last time.Time
	for _, s := range ss.byID {
		if s.Event == state.SignalJoined && s.Meeting == meeting && (email == "" || s.Email == email) && !s.At.After(t) && s.At.After(last) {
			last = s.At
		}
	}
	return last
}

// add records s unless it is known already; it reports whether it was new.
func (ss *signalSet) add(ctx context.Context, s Signal) (bool, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, ok := ss.byID[s.ID]; ok {
		return false, nil
	}
	if ss.store != nil {
		if err := ss.store.PutSignal(ctx, s); err != nil {
			return false, err
		}
	}
	ss.byID[s.ID] = s
	ss.gen++
	return true, nil
}

// Signals returns the signals in force, newest first, for the status page.
func (e *Engine) Signals() []Signal {
	e.sig.mu.Lock()
	out := make([]Signal, 0, len(e.sig.byID))
	for _, s := range e.sig.byID {
		out = append(out, s)
	}
	e.sig.mu.Unlock()
	slices.SortFunc(out, func(a, b Signal) int { return b.Received.Compare(a.Received) })
	return out
}

// withSignals is input's step between the feeds' matches and the spans.
func (e *Engine) withSignals(matches []plan.Match, sigs []Signal, key plan.KeyFunc) []plan.Match {
	if len(sigs) == 0 {
		return matches
	}
	sigs = e.covered(sigs)
	p := e.config().Presence
	return signals.Apply(matches, sigs, presence.Pair{Availability: p.Availability, Activity: p.Activity}, e.maxUnscheduled(), e.target, key)
}

// covered returns the signals the configuration in force still takes: a
// reload may have dropped the person (a users: entry, a source's domain)
// since a signal was stored. The others are kept (a later reload may bring
// them back) but act on nobody.
func (e *Engine) covered(sigs []Signal) []Signal {
	conf := e.conf.Load()
	var out []Signal
	for i, s := range sigs {
		ok := s.Email == "" || conf.matcher.Covers(s.Email)
		if ok && out != nil {
			out = append(out, s)
		}
		if !ok && out == nil {
			out = append(make([]Signal, 0, len(sigs)), sigs[:i]...)
		}
	}
	if out == nil {
		return sigs
	}
	return out
}

// maxUnscheduled caps an unscheduled call (a joined with no calendar
// event): webhooks.max_unscheduled, or its default for a configuration
// built without Load. A lost "left" cannot keep anyone Busy longer.
func (e *Engine) maxUnscheduled() time.Duration {
	if w := e.config().Webhooks; w != nil && w.MaxUnscheduled > 0 {
		return w.MaxUnscheduled
	}
	return config.DefaultWebhooks().MaxUnscheduled
}

// target maps a participant's address through users: to the address that
// names them in the configuration.
func (e *Engine) target(email string) string {
	a := mailaddr.Normalize(email)
	if u, ok := e.conf.Load().userIndex[a]; ok {
		return mailaddr.Normalize(u)
	}
	return a
}

// PersonLookup finds the address of a person a vendor names by id only
// (signals.WebexPeople). An error wrapping signals.ErrNoPerson is final;
// any other is transient.
type PersonLookup interface {
	Email(ctx context.Context, personID string) (string, error)
}

// LookupTimeout bounds one look-up of a person: signals are handed to the
// engine one at a time.
const LookupTimeout = 5 * time.Second

// lookupRetries spaces the tries of the signals in the inbox whose person
// could not be looked up (policy.Delay: 1 s, 2 s, … 5 min).
type lookupRetries struct {
	mu    sync.Mutex
	tries map[string]int
	next  map[string]time.Time
}

// due says whether the inbox signal id may be tried at now.
func (l *lookupRetries) due(id string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !now.Before(l.next[id])
}

// failed notes another failed try of id.
func (l *lookupRetries) failed(id string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tries == nil {
		l.tries, l.next = make(map[string]int), make(map[string]time.Time)
	}
	l.tries[id]++
	d := policy.Delay(l.tries[id])
	l.next[id] = now.Add(d)
	return d
}

func (l *lookupRetries) done(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.tries, id)
	delete(l.next, id)
}

// resolvePerson fills in s.Email from s.Person. When the look-up fails
// for now, s goes to the inbox (durably), which TakeInbox tries again
// with back-off: a call's end is never dropped. It returns the result to
// report instead of going on, or "" to go on.
func (e *Engine) resolvePerson(ctx context.Context, s *Signal, log *slog.Logger) (string, error) {
	if e.personLookup == nil {
		log.Info("live meeting signal ignored: it names a person by id, and no look-up is configured (webhooks.webex.access_token_file)")
		return signals.Ignored, nil
	}
	lctx, cancel := context.WithTimeout(ctx, LookupTimeout)
	email, err := e.personLookup.Email(lctx, s.Person)
	cancel()
	switch {
	case errors.Is(err, signals.ErrNoPerson):
		log.Info("live meeting signal ignored: webex knows no address for the person", "person", s.Person, "err", err)
		return signals.Ignored, nil
	case err != nil:
		if e.sig.store == nil {
			return "", err
		}
		if _, qerr := signals.Queue(ctx, e.sig.store, *s); qerr != nil {
			return "", errors.Join(err, qerr)
		}
		log.Warn("live meeting signal waits for its person's look-up; trying again", "person", s.Person, "err", err)
		return signals.Pending, nil
	}
	s.Email = email
	return "", nil
}

// TakeInbox applies the signals standbys queued (signals.Queue), and drops
// them from the inbox: with several replicas, the leader's engine calls it
// every few seconds (Options.Elector). The signals waiting for their
// person's look-up are there too, tried with back-off.
func (e *Engine) TakeInbox(ctx context.Context) {
	st := e.sig.store
	if st == nil {
		return
	}
	queued, err := st.QueuedSignals(ctx)
	if err != nil && queued == nil {
		e.log.Warn("read the live meeting signals standbys queued", "err", err)
		return
	}
	for id, s := range queued {
		if ctx.Err() != nil {
			return
		}
		if !e.lookups.due(id, time.Now()) {
			continue
		}
		s.ID = ""
		res, err := e.Signal(ctx, s)
		if err == nil && res == signals.Pending && !time.Now().Before(s.At.Add(e.maxUnscheduled())) {
			// Its person still not looked up, and it can no longer
			// matter: a call it starts would have ended by the cap, one
			// it ends with it. Kept, it would be tried for ever, and the
			// inbox would grow while the look-up fails (a token gone).
			e.lookups.done(id)
			e.log.Warn("live meeting signal dropped: its person could not be looked up within webhooks.max_unscheduled of it",
				"id", id, "person", s.Person, "at", s.At)
			if err := st.DeleteSignal(ctx, id); err != nil {
				e.log.Warn("drop a queued live meeting signal", "id", id, "err", err)
			}
			continue
		}
		if err == nil && res == signals.Pending {
			d := e.lookups.failed(id, time.Now())
			e.log.Info("live meeting signal still waits for its person's look-up", "id", id, "retry_in", d)
			continue
		}
		e.lookups.done(id)
		if err != nil && !errors.Is(err, signals.ErrInvalid) {
			e.log.Error("live meeting signal a standby queued not applied; trying again", "id", id, "err", err)
			continue
		}
		if err != nil {
			res = "refused: " + err.Error()
		}
		e.log.Info("live meeting signal a standby queued, taken", "id", id, "result", res)
		if err := st.DeleteSignal(ctx, id); err != nil {
			e.log.Warn("drop a queued live meeting signal", "id", id, "err", err)
		}
	}
}

// Signal takes a live meeting signal: it checks that it concerns someone
// the configuration covers (a participant's address resolved to one
// person), stores it durably, and asks for a reconcile at once. It returns
// what it did (signals.Applied, Duplicate, Ignored) and logs one line.
// Idempotent: a vendor's retry of a delivery is a signals.Duplicate.
func (e *Engine) Signal(ctx context.Context, s Signal) (string, error) {
	s, err := signals.Normalize(s)
	if err != nil {
		return "", err
	}
	log := e.log.With("vendor", s.Vendor, "event", s.Event, "meeting", s.Meeting)
	if s.Email == "" && s.Person != "" {
		if res, err := e.resolvePerson(ctx, &s, log); res != "" || err != nil {
			return res, err
		}
		if s, err = signals.Normalize(s); err != nil {
			return "", err
		}
	}
	if s.Status != "" {
		log = log.With("status", s.Status)
	}
	if s.Email != "" {
		log = log.With("participant", s.Email)
		if !e.conf.Load().matcher.Covers(s.Email) {
			log.Info("live meeting signal ignored: the participant is nobody the configuration covers")
			return signals.Ignored, nil
		}
		addr := e.target(s.Email)
		if _, ok := e.dir.Lookup(addr); !ok {
			// Not met in any feed yet (an unscheduled call): look it up now,
			// off the boundary path (the webhook is answered already).
			e.dir.Resolve(ctx, []string{addr})
			if _, ok := e.dir.Lookup(addr); !ok {
				log.Info("live meeting signal ignored: the participant's address names no Entra user (yet)")
				return signals.Ignored, nil
			}
		}
	}
	matches := e.feeds.withMeeting(s.Meeting, s.At)
	if s.Unverified && (s.Event == state.SignalJoined || s.Event == state.SignalLeft) && !names(matches, e.target(s.Email)) {
		// Trust: the vendor does not vouch for the address (a guest may
		// type anyone's), and no occurrence of the meeting names them.
		log.Info("live meeting signal ignored: the vendor does not vouch for the participant's address, and the meeting's calendar occurrence does not name them")
		return signals.Ignored, nil
	}
	key := e.keyFunc()
	// A signal matters while the occurrences it cuts run, and an "ended" or
	// "left" while the unscheduled calls it ends would otherwise go on,
	// including one whose "joined" a vendor's retry delivers late: an
	// "ended" (one per meeting) is kept as long as an unscheduled call may
	// last, a "left" (one per person and meeting: the many) at least
	// LeftKeep.
	s.Expires = s.At.Add(e.maxUnscheduled())
	if s.Event == state.SignalLeft {
		s.Expires = s.At.Add(signals.LeftKeep)
		if j := e.sig.lastJoined(s.Meeting, s.Email, s.At); !j.IsZero() {
			s.Expires = maxTime(s.Expires, j.Add(e.maxUnscheduled()))
		}
	}
	people := make(map[string]bool)
	for i := range matches {
		m := &matches[i]
		s.Expires = maxTime(s.Expires, m.Occ.End.Add(m.Grace).Add(time.Minute))
		if id, ok := key.Of(m); ok {
			people[id] = true
		}
	}
	isNew, err := e.sig.add(ctx, s)
	if err != nil {
		return "", err
	}
	if !isNew {
		log.Info("live meeting signal: duplicate delivery, ignored")
		return signals.Duplicate, nil
	}
	affected := len(people)
	if s.Email != "" {
		affected = 1
	}
	log.Info("live meeting signal", "at", s.At, "people_affected", affected, "expires", s.Expires)
	e.kickReconcile()
	return signals.Applied, nil
}

// Accepting says whether the engine takes signals: it runs, and has not
// been told to stop (a lead lost or handed over, a shutdown). When it does
// not, a signal belongs in the shared inbox (signals.Queue), for the
// engine that runs next to apply.
func (e *Engine) Accepting() bool {
	e.mu.Lock()
	running := e.running
	e.mu.Unlock()
	return running && !e.stopping.Load()
}

// names says whether one of matches is of user.
func names(matches []plan.Match, user string) bool {
	for i := range matches {
		if mailaddr.Normalize(matches[i].User) == user {
			return true
		}
	}
	return false
}
