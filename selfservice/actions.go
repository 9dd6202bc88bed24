package selfservice

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// pause is POST /pause: the person's presence is cleared at once and set
// for nothing until the form's until (RFC 3339; empty: until they resume).
// An until that does not parse, or is not in the future, is refused with
// 400 and changes nothing.
func (s *Server) pause(w http.ResponseWriter, r *http.Request, se session) {
	var until time.Time
	if v := strings.TrimSpace(r.PostForm.Get("until")); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			s.refuse(w, http.StatusBadRequest, "Refused: until is not a time",
				fmt.Sprintf("until must be an RFC 3339 time such as 2027-03-04T17:00:00+01:00 (got %q). Nothing was changed.", v))
			return
		}
		if !t.After(s.now()) {
			s.refuse(w, http.StatusBadRequest, "Refused: until has passed",
				fmt.Sprintf("until (%s) must be in the future. Nothing was changed.", v))
			return
		}
		until = t
	}
	if err := s.people.Pause(r.Context(), se.OID, until); err != nil {
		s.logger.ErrorContext(r.Context(), "selfservice: pause", "oid", se.OID, "err", err)
		s.refuse(w, http.StatusServiceUnavailable, "Not paused: the worker could not record it",
			"Nothing was changed. Try again in a minute.")
		return
	}
	s.logger.InfoContext(r.Context(), "selfservice: paused", "oid", se.OID, "until", until)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// resume is POST /resume: the pause ends now.
func (s *Server) resume(w http.ResponseWriter, r *http.Request, se session) {
	if err := s.people.Resume(r.Context(), se.OID); err != nil {
		s.logger.ErrorContext(r.Context(), "selfservice: resume", "oid", se.OID, "err", err)
		s.refuse(w, http.StatusServiceUnavailable, "Not resumed: the worker could not record it",
			"You are still paused. Try again in a minute.")
		return
	}
	s.logger.InfoContext(r.Context(), "selfservice: resumed", "oid", se.OID)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// call is POST /call: "I'm on a call" — Busy/InACall from now for the
// form's minutes, MinCallMinutes … Config.MaxCall. Other minutes are
// refused with 400 naming the limits.
func (s *Server) call(w http.ResponseWriter, r *http.Request, se session) {
	maxMin := int(s.cfg.MaxCall / time.Minute)
	v := strings.TrimSpace(r.PostForm.Get("minutes"))
	n, err := strconv.Atoi(v)
	if err != nil || n < MinCallMinutes || n > maxMin {
		s.refuse(w, http.StatusBadRequest, "Refused: minutes out of range",
			fmt.Sprintf("minutes must be a whole number from %d to %d (selfservice.max_call is %s); got %q. Nothing was changed.",
				MinCallMinutes, maxMin, s.cfg.MaxCall, v))
		return
	}
	until := s.now().Add(time.Duration(n) * time.Minute)
	if err := s.people.StartCall(r.Context(), se.OID, until); err != nil {
		s.logger.ErrorContext(r.Context(), "selfservice: start call", "oid", se.OID, "err", err)
		s.refuse(w, http.StatusServiceUnavailable, "Not set: the worker could not record your call",
			"Nothing was changed. Try again in a minute.")
		return
	}
	s.logger.InfoContext(r.Context(), "selfservice: on a call", "oid", se.OID, "minutes", n)
	// A paused person's call is recorded but sets nothing until they
	// resume: the page says so rather than let them believe Teams shows
	// them in a call. A view that cannot be read leaves the page to say
	// what it can.
	if v, err := s.people.View(r.Context(), se.OID); err == nil && v.Paused {
		http.Redirect(w, r, "/?call="+callWhilePaused, http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// callWhilePaused is the call parameter of the page POST /call sends a
// paused person to: it shows that their call sets nothing.
const callWhilePaused = "paused"

// endCall is POST /call/end: the person's call ends now.
func (s *Server) endCall(w http.ResponseWriter, r *http.Request, se session) {
	if err := s.people.EndCall(r.Context(), se.OID); err != nil {
		s.logger.ErrorContext(r.Context(), "selfservice: end call", "oid", se.OID, "err", err)
		s.refuse(w, http.StatusServiceUnavailable, "Not ended: the worker could not record it",
			"Your call goes on. Try again in a minute.")
		return
	}
	s.logger.InfoContext(r.Context(), "selfservice: call ended", "oid", se.OID)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// MinCallMinutes is the shortest "I'm on a call" (Graph's shortest
// presence lease is 5 minutes).
const MinCallMinutes = 5

// Each person may take ActionsPerMinute actions (pause, resume, call, end
// call) a minute; more are refused with 429. Every action makes Graph
// calls for them, which share the application's rate limit with everyone.
const ActionsPerMinute = 6

// actionLimiter counts each person's actions in the last minute.
type actionLimiter struct {
	mu   sync.Mutex
	seen map[string][]time.Time // oid → times of the actions in the last minute
}

// allow reports whether oid may act at now, and counts the action when so.
func (l *actionLimiter) allow(oid string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = make(map[string][]time.Time)
	}
	if len(l.seen) > 10000 {
		// Forget the people idle for a minute: the map stays bounded.
		for k, ts := range l.seen {
			if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= time.Minute {
				delete(l.seen, k)
			}
		}
	}
	ts := l.seen[oid]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= time.Minute {
		i++
	}
	ts = ts[i:]
	if len(ts) >= ActionsPerMinute {
		l.seen[oid] = ts
		return false
	}
	l.seen[oid] = append(ts, now)
	return true
}

// limited refuses an action with 429 when the person has taken
// ActionsPerMinute in the last minute.
func (s *Server) limited(h func(http.ResponseWriter, *http.Request, session)) func(http.ResponseWriter, *http.Request, session) {
	return func(w http.ResponseWriter, r *http.Request, se session) {
		if !s.actions.allow(se.OID, s.now()) {
			w.Header().Set("Retry-After", "60")
			s.refuse(w, http.StatusTooManyRequests, "Refused: too many changes",
				fmt.Sprintf("At most %d changes a minute. Nothing was changed; try again in a minute.", ActionsPerMinute))
			return
		}
		h(w, r, se)
	}
}
