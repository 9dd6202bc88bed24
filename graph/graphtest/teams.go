package graphtest

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/calpresence/calpresence/presence"
)

// MaxPresenceIDs is the most ids getPresencesByUserId accepts in one call;
// more is answered 400, as Graph does.
const MaxPresenceIDs = 650

// StatusMessage is a person's Teams status message as the fake holds it.
type StatusMessage struct {
	Content string
	Expires time.Time // zero: no expiry
	Set     time.Time // by the fake's clock
}

// person is what a person set in Teams themself, or what the fake was told
// about their Teams clients.
type person struct {
	preferred *presence.Pair // their own status: beats every session
	signedOut bool           // no Teams client session
	message   *StatusMessage
}

// personLocked returns the state of user, creating it.
func (s *Server) personLocked(user string) *person {
	k := strings.ToLower(user)
	p := s.people[k]
	if p == nil {
		p = &person{}
		s.people[k] = p
	}
	return p
}

// SetPreferred sets the status user chose themself in Teams
// (availability/activity, e.g. Available/Available or DoNotDisturb/
// DoNotDisturb). It beats every session, the application's included, for
// as long as the person has one session at least (Graph docs,
// "setUserPreferredPresence").
func (s *Server) SetPreferred(user, availability, activity string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.personLocked(user).preferred = &presence.Pair{Availability: availability, Activity: activity}
}

// ClearPreferred removes the status user chose themself.
func (s *Server) ClearPreferred(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.personLocked(user).preferred = nil
}

// SetSignedIn says whether user runs a Teams client (default: yes, showing
// Available/Available). A person with neither a client nor an application
// session shows Offline.
func (s *Server) SetSignedIn(user string, signedIn bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.personLocked(user).signedOut = !signedIn
}

// LoseSession drops the application's session for user without a word,
// as Graph sometimes does: no call fails, and Teams shows what it would
// without the session.
func (s *Server) LoseSession(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, sessionKey{strings.ToLower(user), s.clientID})
}

// SetStatusMessage sets user's status message as if they wrote it
// themself (content "" removes it).
func (s *Server) SetStatusMessage(user string, m StatusMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.personLocked(user)
	if m.Content == "" {
		p.message = nil
		return
	}
	if m.Set.IsZero() {
		m.Set = s.nowLocked()
	}
	p.message = &m
}

// StatusMessage returns user's unexpired status message, whoever set it.
func (s *Server) StatusMessage(user string) (StatusMessage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.messageLocked(strings.ToLower(user), s.nowLocked())
	if m == nil {
		return StatusMessage{}, false
	}
	return *m, true
}

func (s *Server) messageLocked(k string, now time.Time) *StatusMessage {
	p := s.people[k]
	if p == nil || p.message == nil {
		return nil
	}
	if !p.message.Expires.IsZero() && !now.Before(p.message.Expires) {
		return nil
	}
	return p.message
}

// Shown is what Teams shows for user, as getPresencesByUserId answers it
// (MessageExpires stays zero: Graph does not tell one user when another's
// message expires). It aggregates as Graph does: the person's own
// preferred status beats every session; among the sessions — their Teams
// client unless signed out, and the live application sessions —
// DoNotDisturb > Busy > Available > Away; with no session at all, Offline.
func (s *Server) Shown(user string) presence.Shown {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := strings.ToLower(user)
	now := s.nowLocked()
	var live []Session
	for key, se := range s.sessions {
		if key.user == k && now.Before(se.Expires) {
			live = append(live, se)
		}
	}
	return s.shownLocked(k, live, now)
}

// shownLocked aggregates the presence of k (lower-cased) from its live
// application sessions.
func (s *Server) shownLocked(k string, live []Session, now time.Time) presence.Shown {
	p := s.people[k]
	var sessions []presence.Pair
	if p == nil || !p.signedOut {
		sessions = append(sessions, presence.Pair{Availability: presence.Available, Activity: presence.ActivityAvailable})
	}
	for _, se := range live {
		sessions = append(sessions, presence.Pair{Availability: se.Availability, Activity: se.Activity})
	}
	var sh presence.Shown
	switch {
	case len(sessions) == 0:
		sh.Availability, sh.Activity = presence.Offline, presence.ActivityOffline
	case p != nil && p.preferred != nil:
		sh.Availability, sh.Activity = p.preferred.Availability, p.preferred.Activity
	default:
		best := sessions[0]
		for _, x := range sessions[1:] {
			if presence.AvailabilityRank(x.Availability) > presence.AvailabilityRank(best.Availability) {
				best = x
			}
		}
		sh.Availability, sh.Activity = best.Availability, best.Activity
	}
	if m := s.messageLocked(k, now); m != nil {
		sh.StatusMessage = m.Content
	}
	return sh
}

type idsBody struct {
	IDs []string `json:"ids"`
}

// readPresences answers POST /communications/getPresencesByUserId: the
// aggregated presence of each id asked for, in the order asked.
func (s *Server) readPresences(r *http.Request, body []byte) reply {
	if rp, ok := checkJSON(r); !ok {
		return rp
	}
	var b idsBody
	if err := decodeStrict(body, &b); err != nil {
		return odataError(http.StatusBadRequest, "BadRequest", "Invalid request body: "+err.Error())
	}
	switch {
	case len(b.IDs) == 0:
		return odataError(http.StatusBadRequest, "BadRequest", "ids is required.")
	case len(b.IDs) > MaxPresenceIDs:
		return odataError(http.StatusBadRequest, "BadRequest",
			fmt.Sprintf("At most %d ids are supported per request (got %d).", MaxPresenceIDs, len(b.IDs)))
	}
	s.mu.Lock()
	now := s.nowLocked()
	asked := make(map[string]bool, len(b.IDs))
	for _, id := range b.IDs {
		asked[strings.ToLower(id)] = true
	}
	live := make(map[string][]Session)
	for key, se := range s.sessions {
		if asked[key.user] && now.Before(se.Expires) {
			live[key.user] = append(live[key.user], se)
		}
	}
	value := make([]map[string]any, 0, len(b.IDs))
	for _, id := range b.IDs {
		k := strings.ToLower(id)
		sh := s.shownLocked(k, live[k], now)
		var sm any
		if sh.StatusMessage != "" {
			sm = map[string]any{"message": map[string]any{"content": sh.StatusMessage, "contentType": "text"}}
		}
		value = append(value, map[string]any{
			"id":                  id,
			"availability":        sh.Availability,
			"activity":            sh.Activity,
			"statusMessage":       sm,
			"outOfOfficeSettings": map[string]any{"message": nil, "isOutOfOffice": false},
			"sequenceNumber":      strconv.FormatInt(now.UnixNano(), 36),
		})
	}
	s.mu.Unlock()
	return jsonReply(http.StatusOK, map[string]any{
		"@odata.context": "https://" + r.Host + "/v1.0/$metadata#Collection(microsoft.graph.presence)",
		"value":          value,
	})
}

// statusMessageBody is setStatusMessage's body; kiota may send
// @odata.type with each object.
type statusMessageBody struct {
	StatusMessage *struct {
		OdataType string `json:"@odata.type"`
		Message   *struct {
			OdataType   string  `json:"@odata.type"`
			Content     *string `json:"content"`
			ContentType string  `json:"contentType"`
		} `json:"message"`
		ExpiryDateTime *struct {
			OdataType string `json:"@odata.type"`
			DateTime  string `json:"dateTime"`
			TimeZone  string `json:"timeZone"`
		} `json:"expiryDateTime"`
	} `json:"statusMessage"`
}

// setStatusMessage answers POST /users/{id}/presence/setStatusMessage: the
// message replaces the person's, whoever wrote it; an empty one removes it.
// Only contentType text is accepted (Graph docs, presenceStatusMessage);
// the expiry's timeZone must be UTC or an IANA name (Graph also takes
// Windows names; the client sends UTC).
func (s *Server) setStatusMessage(user string, r *http.Request, body []byte) reply {
	if rp, ok := checkJSON(r); !ok {
		return rp
	}
	var b statusMessageBody
	if err := decodeStrict(body, &b); err != nil {
		return odataError(http.StatusBadRequest, "BadRequest", "Invalid request body: "+err.Error())
	}
	if b.StatusMessage == nil || b.StatusMessage.Message == nil || b.StatusMessage.Message.Content == nil {
		return odataError(http.StatusBadRequest, "BadRequest", "statusMessage.message.content is required.")
	}
	if ct := b.StatusMessage.Message.ContentType; ct != "" && ct != "text" {
		return odataError(http.StatusBadRequest, "BadRequest", fmt.Sprintf("Unsupported contentType %q: only text is supported.", ct))
	}
	m := StatusMessage{Content: *b.StatusMessage.Message.Content}
	if e := b.StatusMessage.ExpiryDateTime; e != nil {
		loc := time.UTC
		if e.TimeZone != "" && e.TimeZone != "UTC" {
			l, err := time.LoadLocation(e.TimeZone)
			if err != nil {
				return odataError(http.StatusBadRequest, "BadRequest", fmt.Sprintf("Invalid timeZone %q.", e.TimeZone))
			}
			loc = l
		}
		t, err := time.ParseInLocation("2006-01-02T15:04:05.9999999", e.DateTime, loc)
		if err != nil {
			return odataError(http.StatusBadRequest, "BadRequest", fmt.Sprintf("Invalid expiryDateTime.dateTime %q (no zone offset allowed).", e.DateTime))
		}
		m.Expires = t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.personLocked(user)
	if m.Content == "" {
		p.message = nil
	} else {
		m.Set = s.nowLocked()
		p.message = &m
	}
	return reply{status: http.StatusOK}
}
