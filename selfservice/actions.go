package selfservice

import (
	"fmt"
	"net/http"
	"strings"
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
