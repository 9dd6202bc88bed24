package selfservice

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Feeds are people's own ICS feeds (selfservice.feeds): the People that
// keeps them also implements Feeds. Each is fetched and parsed once
// before it is accepted, stored with its URL sealed (FeedKey), polled
// like a source whose users: is that person alone, and shown to them
// redacted.
type Feeds interface {
	// AddFeed checks the feed at rawURL (fetched and parsed now) and
	// records it for the person. A feed refused for what the person can
	// fix (no calendar there, a private address, too many feeds) is a
	// *FeedRefusal; any other error means the worker could not record it.
	AddFeed(ctx context.Context, oid, upn, rawURL string) (FeedAdded, error)
	// DeleteFeed forgets the person's feed id: false when they have none
	// of that id (another person's is none of theirs).
	DeleteFeed(ctx context.Context, oid, id string) (bool, error)
}

// FeedAdded is what a feed held when it was accepted.
type FeedAdded struct {
	ID string
	// Shown is the URL redacted.
	Shown string
	// Meetings are the occurrences it has in the next 36 hours.
	Meetings int
}

// FeedRefusal is a feed the person must fix before it is accepted: the
// page shows Reason.
type FeedRefusal struct{ Reason string }

func (r *FeedRefusal) Error() string { return r.Reason }

// Feed is one of a person's own feeds, as their page shows it.
type Feed struct {
	ID string
	// Shown is the URL with its secret parts redacted.
	Shown string
	// Added is when they added it.
	Added time.Time
	// Checked is false until the worker that sets presence has read it
	// (or on a standby, which does not read feeds).
	Checked bool
	Healthy bool
	// LastError is the last read's failure ("" when it worked).
	LastError   string
	LastSuccess time.Time
	// Meetings are its occurrences in the window the worker keeps.
	Meetings int
}

// MaxFeeds is how many own feeds a person may have.
const MaxFeeds = 5

// ownFeeds returns the People's Feeds, or refuses with 404 when
// selfservice.feeds is off.
func (s *Server) ownFeeds(w http.ResponseWriter) (Feeds, bool) {
	feeds, ok := s.people.(Feeds)
	if !s.cfg.Feeds || !ok {
		s.refuseAction(w, http.StatusNotFound, "Own feeds are off", "The administrators have not turned on people's own feeds (selfservice.feeds).")
		return nil, false
	}
	return feeds, true
}

// addFeed is POST /feeds with url: the feed is fetched and parsed now and
// recorded when it holds a calendar; refused with 400 and the reason
// otherwise. 404 unless selfservice.feeds is on.
func (s *Server) addFeed(w http.ResponseWriter, r *http.Request, se session) {
	feeds, ok := s.ownFeeds(w)
	if !ok {
		return
	}
	raw := strings.TrimSpace(r.PostForm.Get("url"))
	if raw == "" {
		s.refuseAction(w, http.StatusBadRequest, "Feed not added: no address", "Paste the address of your calendar's ICS feed, e.g. Google Calendar's \"Secret address in iCal format\".")
		return
	}
	added, err := feeds.AddFeed(r.Context(), se.OID, se.UPN, raw)
	var refusal *FeedRefusal
	switch {
	case errors.As(err, &refusal):
		s.logger.InfoContext(r.Context(), "selfservice: feed refused", "oid", se.OID, "reason", refusal.Reason)
		s.refuseAction(w, http.StatusBadRequest, "Feed not added", refusal.Reason)
		return
	case err != nil:
		s.logger.ErrorContext(r.Context(), "selfservice: add feed", "oid", se.OID, "err", err)
		s.refuseAction(w, http.StatusServiceUnavailable, "Feed not added: the worker could not record it", "Nothing was changed. Try again in a minute.")
		return
	}
	s.logger.InfoContext(r.Context(), "selfservice: feed added", "oid", se.OID, "feed", added.ID, "url", added.Shown, "meetings", added.Meetings)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// deleteFeed is POST /feeds/delete with id: the person's feed is
// forgotten, and what it made them busy for ends. 404 for an id that is
// not one of theirs.
func (s *Server) deleteFeed(w http.ResponseWriter, r *http.Request, se session) {
	feeds, ok := s.ownFeeds(w)
	if !ok {
		return
	}
	id := strings.TrimSpace(r.PostForm.Get("id"))
	found, err := feeds.DeleteFeed(r.Context(), se.OID, id)
	if err != nil {
		s.logger.ErrorContext(r.Context(), "selfservice: delete feed", "oid", se.OID, "feed", id, "err", err)
		s.refuseAction(w, http.StatusServiceUnavailable, "Feed not removed: the worker could not record it", "Nothing was changed. Try again in a minute.")
		return
	}
	if !found {
		s.refuseAction(w, http.StatusNotFound, "No such feed", fmt.Sprintf("You have no feed %q. Nothing was changed.", id))
		return
	}
	s.logger.InfoContext(r.Context(), "selfservice: feed removed", "oid", se.OID, "feed", id)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
