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
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/sources/ical"
	"github.com/calpresence/calpresence/sync/plan"
)

// The status message (opt-in, presence.status_message): a span's set is
// followed by setStatusMessage with the template filled in, expiring at
// the span's end. Graph keeps one message per person, whoever wrote it,
// and does not say who did: before setting or clearing, the read-back
// reads what Teams shows, and a message that is not the worker's own text
// is the person's and is left alone. The messages go out from the
// read-back's goroutine, after the burst of sets they follow: they never
// take a boundary's place.

// messageJob is a status message to set (or clear) for one person.
type messageJob struct {
	id        string
	text      string    // the worker's text
	expires   time.Time // the span's end (set)
	spanStart time.Time // the span it belongs to (set)
	clear     bool
	// prev is the worker's text for the span that this set replaces (the
	// span's end moved): shown, it is ours to replace, not the person's.
	prev string

	tries     int       // failed attempts so far
	notBefore time.Time // a retry waits until then (zero: at once)
}

// messageConcurrency bounds the status message calls in flight: they are
// paced as presence writes anyway.
const messageConcurrency = 8

// queueMessages queues the status messages that a pass's results call
// for: a set of a new span gets the template filled in; a clear of a span
// with the worker's message has it cleared (while it is still ours).
func (e *Engine) queueMessages(results []Result, now time.Time) {
	cfg := e.config()
	tmpl := cfg.Presence.StatusMessage
	var (
		jobs  []messageJob
		zones map[string]*time.Location // by person id, once a set needs them
	)
	for _, r := range results {
		a := r.Action
		if r.Err != nil {
			continue
		}
		switch {
		case a.Op == plan.OpSet && tmpl != "":
			ours := a.HasPrev && a.Prev.SpanStart.Equal(a.Span.Start) && a.Prev.Message != ""
			if ours && a.Prev.SpanEnd.Equal(a.Span.End) {
				continue // already set for this span
			}
			if e.rb.gaveUp(a.User, a.Span.Start, now) {
				continue // refused for this span already (logged then)
			}
			if zones == nil {
				zones = e.personZones(cfg)
			}
			loc, ok := zones[a.User]
			if !ok {
				loc = cfg.Location()
			}
			text := fillMessage(tmpl, a.Span.Meeting(now), a.Span.End, loc)
			j := messageJob{id: a.User, text: text, expires: a.Span.End, spanStart: a.Span.Start}
			if ours {
				// The span's end moved later: the message follows it (its
				// {end}, and its expiry).
				j.prev = a.Prev.Message
			}
			jobs = append(jobs, j)
		case a.Op == plan.OpClear && a.HasPrev && a.Prev.Message != "":
			jobs = append(jobs, messageJob{id: a.User, text: a.Prev.Message, clear: true})
		}
	}
	if len(jobs) == 0 {
		return
	}
	e.rb.mu.Lock()
	for _, j := range jobs {
		e.rb.queue(j, true)
	}
	e.rb.mu.Unlock()
	e.rb.poke()
}

// personZones maps the people whose users: entry has a timezone, by
// object id, to that zone (config.UserLocations): the end time in their
// status message is theirs. Others use schedule.timezone.
func (e *Engine) personZones(cfg *config.Config) map[string]*time.Location {
	out := make(map[string]*time.Location)
	for user, loc := range cfg.UserLocations() {
		if id, ok := e.dir.Lookup(user); ok {
			if _, dup := out[id]; !dup {
				out[id] = loc
			}
		}
	}
	return out
}

// queue adds j to the messages to send, r.mu held. A person has one job
// at most: with replace, j (newer) takes the place of the one queued (a
// set replaces the message whatever it is; a clear ends the span a set
// was for); without, j (a retry) yields to a newer job queued meanwhile.
func (r *readback) queue(j messageJob, replace bool) {
	for i, q := range r.messages {
		if q.id == j.id {
			if replace {
				r.messages[i] = j
			}
			return
		}
	}
	r.messages = append(r.messages, j)
}

// takeMessages removes from the queue and returns the jobs due at now.
func (r *readback) takeMessages(now time.Time) []messageJob {
	r.mu.Lock()
	defer r.mu.Unlock()
	var due, rest []messageJob
	for _, j := range r.messages {
		if j.notBefore.After(now) {
			rest = append(rest, j)
		} else {
			due = append(due, j)
		}
	}
	r.messages = rest
	return due
}

// nextMessage is when the earliest queued message is due (false: none).
func (r *readback) nextMessage() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var t time.Time
	for i, j := range r.messages {
		if i == 0 || j.notBefore.Before(t) {
			t = j.notBefore
		}
	}
	return t, len(r.messages) > 0
}

// giveUp notes that Graph refused id's message for the span from
// spanStart to spanEnd: no other is tried for that span.
func (r *readback) giveUp(id string, spanStart, spanEnd time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refused == nil {
		r.refused = make(map[string][2]time.Time)
	}
	r.refused[id] = [2]time.Time{spanStart, spanEnd}
}

// gaveUp reports whether id's message was refused for the span from
// spanStart; refusals of spans over at now are forgotten on the way.
func (r *readback) gaveUp(id string, spanStart, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range r.refused {
		if !now.Before(v[1]) {
			delete(r.refused, k)
		}
	}
	v, ok := r.refused[id]
	return ok && v[0].Equal(spanStart)
}

// fillMessage fills in a status message template (config
// StatusMessagePlaceholders): {vendor} is Zoom or Webex when the meeting's
// links say so, else the source's name; {title} the meeting's summary;
// {end} the span's end, 15:04 in loc (the person's zone when known).
func fillMessage(tmpl string, m *plan.Match, end time.Time, loc *time.Location) string {
	vendor, title := "", ""
	if m != nil {
		vendor = m.Source
		for _, k := range m.Occ.MeetingKeys {
			switch {
			case strings.HasPrefix(k, ical.KeyZoom):
				vendor = "Zoom"
			case strings.HasPrefix(k, ical.KeyWebex):
				vendor = "Webex"
			}
		}
		title = m.Occ.Summary
		if _, own := ownFeedID(m.Source); own {
			// A person's own calendar: its titles are theirs, not for
			// everyone who sees their status; nor is the source's name.
			title = ""
			if vendor == m.Source {
				vendor = "calendar"
			}
		}
	}
	return strings.NewReplacer("{vendor}", vendor, "{title}", title, "{end}", end.In(loc).Format("15:04")).Replace(tmpl)
}

// flushMessages sends the status messages that are due; in a dry run,
// which sends nothing, it forgets them.
func (e *Engine) flushMessages(ctx context.Context) {
	if e.config().Graph.DryRun {
		e.rb.mu.Lock()
		e.rb.messages = nil
		e.rb.mu.Unlock()
		return
	}
	e.sendMessages(ctx)
}

// sendMessages sets and clears the queued status messages that are due:
// it reads what Teams shows for their people first (one bulk read), and
// leaves alone every message that is not the worker's. A call (or the
// read before it) that fails with a retryable outcome is tried again
// after a back-off (messageFailed).
func (e *Engine) sendMessages(ctx context.Context) {
	now := time.Now()
	jobs := e.currentMessages(ctx, e.rb.takeMessages(now), now)
	if len(jobs) == 0 {
		return
	}
	ids := make([]string, 0, len(jobs))
	for _, j := range jobs {
		ids = append(ids, j.id)
	}
	shown, err := e.exec.presence.ReadPresences(ctx, ids)
	e.countReads(len(ids), err)
	if err != nil {
		// Those not read are not sent now: an unknown message may be
		// theirs. They are tried again after a back-off.
		e.log.Warn("read status messages before setting them", "err", err)
	}
	var (
		wg  sync.WaitGroup
		sem = make(chan struct{}, messageConcurrency)
	)
	for _, j := range jobs {
		log := e.log.With("user", e.dir.UPN(j.id), "user_id", j.id)
		sh, ok := shown[j.id]
		if !ok {
			if err != nil {
				e.messageFailed(ctx, j, "getPresencesByUserId", err, log)
			}
			continue
		}
		mine := sh.StatusMessage == j.text || (j.prev != "" && sh.StatusMessage == j.prev)
		switch {
		case j.clear && !mine:
			continue // theirs now, or gone: nothing of ours to clear
		case !j.clear && sh.StatusMessage != "" && !mine:
			log.Info("the person's own status message stays; none set for this span")
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var err error
			op := "setStatusMessage"
			if j.clear {
				op = "clearStatusMessage"
				err = e.exec.presence.ClearStatusMessage(ctx, j.id)
			} else {
				// Ours already (a restart, or the last span's same text):
				// set again all the same, for this span's expiry.
				err = e.exec.presence.SetStatusMessage(ctx, j.id, j.text, j.expires)
			}
			e.metrics.GraphRequests.WithLabelValues(op, presence.StatusCode(err)).Inc()
			if err != nil {
				e.messageFailed(ctx, j, op, err, log)
				return
			}
			if j.clear {
				log.Info("status message cleared", "message", j.text)
				return
			}
			log.Info("status message set", "message", j.text, "expires", j.expires)
			e.recordMessage(ctx, j)
		})
	}
	wg.Wait()
}

// currentMessages drops the sets whose span is over at now or no longer
// the person's recorded one (cleared, replaced): a retry must not set a
// message for a span that has ended.
func (e *Engine) currentMessages(ctx context.Context, jobs []messageJob, now time.Time) []messageJob {
	if !slices.ContainsFunc(jobs, func(j messageJob) bool { return !j.clear }) {
		return jobs
	}
	sessions, err := e.readSessions(ctx, false)
	if err != nil {
		return jobs // recordMessage checks again after the call
	}
	return slices.DeleteFunc(jobs, func(j messageJob) bool {
		if j.clear {
			return false
		}
		s, ok := sessions[j.id]
		return !now.Before(j.expires) || !ok || !s.SpanStart.Equal(j.spanStart) || s.Pending == "clear"
	})
}

// messageFailed decides what becomes of a status message whose call op
// failed, by policy.Classify's verdict: a retryable outcome (Retry, a 401
// after the token's refresh, no answer) is queued again after policy.Wait
// (the server's Retry-After, else the back-off); a refusal is given up,
// for that span if it was a set, and logged once.
func (e *Engine) messageFailed(ctx context.Context, j messageJob, op string, err error, log *slog.Logger) {
	kind := presence.KindOf(err)
	switch {
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return // stopping; the record says no message was set
	case kind == presence.NotFound && j.clear:
		return // gone already
	case kind == presence.Permanent || kind == presence.NotFound:
		if j.clear {
			log.Error("graph refused to clear the status message; not retried", "op", op, "err", err, "message", j.text)
			return
		}
		log.Error("graph refused the status message; not retried for this span", "op", op, "err", err, "span_start", j.spanStart)
		e.rb.giveUp(j.id, j.spanStart, j.expires)
		return
	}
	j.tries++
	wait := policy.Wait(err, j.tries)
	j.notBefore = time.Now().Add(wait)
	log.Warn("status message call failed; will retry", "op", op, "err", err, "retry_in", wait.String(), "attempt", j.tries)
	e.rb.mu.Lock()
	e.rb.queue(j, false)
	e.rb.mu.Unlock()
}

// recordMessage notes on the person's session that the worker's message
// is set for the span, if the record is still that span's.
func (e *Engine) recordMessage(ctx context.Context, j messageJob) {
	e.reconcileMu.Lock()
	defer e.reconcileMu.Unlock()
	sessions, err := e.readSessions(ctx, false)
	if err != nil {
		return
	}
	s, ok := sessions[j.id]
	if !ok || !s.SpanStart.Equal(j.spanStart) || s.Pending != "" {
		return
	}
	s.Message = j.text
	if err := e.store.PutSession(ctx, s); err != nil {
		e.log.Warn("record status message", "user_id", j.id, "err", err)
	}
}
