package engine

import (
	"context"
	"strings"
	"sync"
	"time"

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
	var jobs []messageJob
	for _, r := range results {
		a := r.Action
		if r.Err != nil {
			continue
		}
		switch {
		case a.Op == plan.OpSet && tmpl != "":
			if a.HasPrev && a.Prev.SpanStart.Equal(a.Span.Start) && a.Prev.Message != "" {
				continue // already set for this span
			}
			text := fillMessage(tmpl, a.Span.Meeting(now), a.Span.End, cfg.Location())
			jobs = append(jobs, messageJob{id: a.User, text: text, expires: a.Span.End, spanStart: a.Span.Start})
		case a.Op == plan.OpClear && a.HasPrev && a.Prev.Message != "":
			jobs = append(jobs, messageJob{id: a.User, text: a.Prev.Message, clear: true})
		}
	}
	if len(jobs) == 0 {
		return
	}
	e.rb.mu.Lock()
	e.rb.messages = append(e.rb.messages, jobs...)
	e.rb.mu.Unlock()
	e.rb.poke()
}

// fillMessage fills in a status message template (config
// StatusMessagePlaceholders): {vendor} is Zoom or Webex when the meeting's
// links say so, else the source's name; {title} the meeting's summary;
// {end} the span's end, 15:04 in loc.
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
	}
	return strings.NewReplacer("{vendor}", vendor, "{title}", title, "{end}", end.In(loc).Format("15:04")).Replace(tmpl)
}

// sendMessages sets and clears the queued status messages: it reads
// what Teams shows for their people first (one bulk read), and leaves
// alone every message that is not the worker's.
func (e *Engine) sendMessages(ctx context.Context) {
	e.rb.mu.Lock()
	jobs := e.rb.messages
	e.rb.messages = nil
	e.rb.mu.Unlock()
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
		// Those not read are left alone: an unknown message may be theirs.
		e.log.Warn("read status messages before setting them", "err", err)
	}
	var (
		wg  sync.WaitGroup
		sem = make(chan struct{}, messageConcurrency)
	)
	for _, j := range jobs {
		sh, ok := shown[j.id]
		if !ok {
			continue
		}
		log := e.log.With("user", e.dir.UPN(j.id), "user_id", j.id)
		mine := sh.StatusMessage == j.text
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
			} else if !mine {
				err = e.exec.presence.SetStatusMessage(ctx, j.id, j.text, j.expires)
			}
			if j.clear || !mine {
				e.metrics.GraphRequests.WithLabelValues(op, presence.StatusCode(err)).Inc()
			}
			if err != nil {
				log.Warn("status message call failed", "op", op, "err", err)
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
