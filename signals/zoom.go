package signals

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/calpresence/calpresence/internal/mailaddr"
	"github.com/calpresence/calpresence/sources/ical"
	"github.com/calpresence/calpresence/state"
)

// ZoomMaxSkew is how far x-zm-request-timestamp may be from our clock:
// an older (replayed) or future delivery is refused.
const ZoomMaxSkew = 5 * time.Minute

// Zoom's event names.
const (
	zoomURLValidation = "endpoint.url_validation"
	zoomEnded         = "meeting.ended"
	zoomLeft          = "meeting.participant_left"
	zoomJoined        = "meeting.participant_joined"
	// Webinars: the same events and payloads (their join links are
	// zoom.us/w/<number>).
	zoomWebinarEnded  = "webinar.ended"
	zoomWebinarLeft   = "webinar.participant_left"
	zoomWebinarJoined = "webinar.participant_joined"
	// zoomPresence: what Zoom knows a person is doing (Zoom Phone
	// calls included), with the person's email.
	zoomPresence = "user.presence_status_updated"
)

// ZoomPresenceKey is the Meeting of every Zoom presence signal: one
// stream of statuses per person.
const ZoomPresenceKey = "zoom-presence"

// ZoomSignature is the x-zm-signature Zoom sends with body at timestamp:
// "v0=" + hex(HMAC-SHA256(secret, "v0:" + timestamp + ":" + body)).
func ZoomSignature(secret, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("v0:" + timestamp + ":"))
	m.Write(body)
	return "v0=" + hex.EncodeToString(m.Sum(nil))
}

// ErrSignature is wrapped by every refusal of a delivery's signature or
// timestamp.
var ErrSignature = errors.New("signature check failed")

// VerifyZoom checks a Zoom delivery: the signature over the raw body, in
// constant time, and a timestamp (Unix seconds, as Zoom sends it) within
// ZoomMaxSkew of now.
func VerifyZoom(secret, timestamp, signature string, body []byte, now time.Time) error {
	if err := checkZoomHeaders(timestamp, signature, now); err != nil {
		return err
	}
	want := ZoomSignature(secret, timestamp, body)
	if !hmac.Equal([]byte(signature), []byte(want)) {
		return fmt.Errorf("%w: x-zm-signature does not match", ErrSignature)
	}
	return nil
}

// checkZoomHeaders is what VerifyZoom can check without the body: both
// headers there, the signature shaped as Zoom's ("v0=" and 64 hex
// digits), the timestamp within ZoomMaxSkew.
func checkZoomHeaders(timestamp, signature string, now time.Time) error {
	if timestamp == "" || signature == "" {
		return fmt.Errorf("%w: no x-zm-signature or x-zm-request-timestamp", ErrSignature)
	}
	if h, ok := strings.CutPrefix(signature, "v0="); !ok || !isHex(h, sha256.Size) {
		return fmt.Errorf("%w: x-zm-signature is not v0= and a SHA-256 in hex", ErrSignature)
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: x-zm-request-timestamp %.40q is not a Unix time", ErrSignature, timestamp)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > ZoomMaxSkew || d < -ZoomMaxSkew {
		return fmt.Errorf("%w: x-zm-request-timestamp is %s away from now (at most %s)", ErrSignature, d.Round(time.Second), ZoomMaxSkew)
	}
	return nil
}

// isHex says whether s is n bytes in hex.
func isHex(s string, n int) bool {
	if len(s) != 2*n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// ZoomValidation is the answer to endpoint.url_validation: the plain token
// and its HMAC-SHA256 under the secret token, in hex.
type ZoomValidation struct {
	PlainToken     string `json:"plainToken"`
	EncryptedToken string `json:"encryptedToken"`
}

// zoomValidate answers a url_validation challenge. A plain token that could
// be the start of a signed message ("v0:…") is refused: the answer would
// otherwise be a valid signature of anything its sender chose.
func zoomValidate(secret, plainToken string) (ZoomValidation, error) {
	if plainToken == "" || len(plainToken) > 256 || strings.ContainsRune(plainToken, ':') {
		return ZoomValidation{}, fmt.Errorf("%w: plainToken", ErrMalformed)
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(plainToken))
	return ZoomValidation{PlainToken: plainToken, EncryptedToken: hex.EncodeToString(m.Sum(nil))}, nil
}

// Parse errors.
var (
	// ErrMalformed: not JSON, or not the object a vendor sends.
	ErrMalformed = errors.New("malformed delivery")
	// ErrUnknownEvent: an event calpresence does not use, or one that
	// lacks what it would use (a participant without an email: a phone
	// dial-in or a guest; no meeting number). Acknowledged, ignored.
	ErrUnknownEvent = errors.New("event not used")
)

type zoomBody struct {
	Event   string `json:"event"`
	EventTS int64  `json:"event_ts"` // milliseconds
	Payload struct {
		PlainToken string `json:"plainToken"`
		Object     struct {
			ID      json.RawMessage `json:"id"`
			EndTime string          `json:"end_time"`
			// user.presence_status_updated: the person and their status.
			Email          string `json:"email"`
			PresenceStatus string `json:"presence_status"`
			DateTime       string `json:"date_time"`
			Participant    struct {
				// ID is a signed-in Zoom user\'s participant id; guests
				// and dial-ins have none.
				ID        string `json:"id"`
				Email     string `json:"email"`
				JoinTime  string `json:"join_time"`
				LeaveTime string `json:"leave_time"`
				// LeaveReason says why; moving into a breakout room is a
				// "left" of the main meeting without leaving the call.
				LeaveReason string `json:"leave_reason"`
			} `json:"participant"`
		} `json:"object"`
	} `json:"payload"`
}

// zoomEvent is a parsed Zoom delivery: a signal, or a url_validation
// challenge (PlainToken set).
type zoomEvent struct {
	Event      string // Zoom's name
	PlainToken string
	Signal     state.Signal
}

// ParseZoom reads a Zoom delivery. The signal's time is the event's own
// (end_time, leave_time, join_time), else event_ts, else zero (the
// receiver's clock).
func ParseZoom(body []byte) (zoomEvent, error) {
	var b zoomBody
	if err := json.Unmarshal(body, &b); err != nil {
		return zoomEvent{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	ev := zoomEvent{Event: b.Event}
	o := &b.Payload.Object
	s := state.Signal{Vendor: "zoom"}
	var at string
	switch b.Event {
	case zoomURLValidation:
		if b.Payload.PlainToken == "" {
			return ev, fmt.Errorf("%w: no payload.plainToken", ErrUnknownEvent)
		}
		ev.PlainToken = b.Payload.PlainToken
		return ev, nil
	case zoomEnded, zoomWebinarEnded:
		s.Event, at = state.SignalEnded, o.EndTime
	case zoomLeft, zoomWebinarLeft:
		if strings.Contains(strings.ToLower(o.Participant.LeaveReason), "breakout") {
			return ev, fmt.Errorf("%w: left for a breakout room, still in the call", ErrUnknownEvent)
		}
		s.Event, at = state.SignalLeft, o.Participant.LeaveTime
	case zoomJoined, zoomWebinarJoined:
		s.Event, at = state.SignalJoined, o.Participant.JoinTime
	case zoomPresence:
		s.Event, s.Meeting, s.Status = state.SignalPresence, ZoomPresenceKey, o.PresenceStatus
		s.Email = mailaddr.Normalize(o.Email)
		if s.Email == "" || s.Status == "" {
			return ev, fmt.Errorf("%w: no payload.object.email or presence_status", ErrUnknownEvent)
		}
		s.At = eventTime(o.DateTime, b.EventTS)
		ev.Signal = s
		return ev, nil
	case "":
		return ev, fmt.Errorf("%w: no event", ErrUnknownEvent)
	default:
		return ev, ErrUnknownEvent
	}
	n, err := meetingNumber(o.ID)
	if err != nil {
		return ev, fmt.Errorf("%w: payload.object.id: %v", ErrUnknownEvent, err)
	}
	s.Meeting = ical.KeyZoom + n
	if s.Event != state.SignalEnded {
		s.Email = mailaddr.Normalize(o.Participant.Email)
		if s.Email == "" {
			// A guest without an address (or a phone caller): nobody to
			// find in the configuration. Still answered 2xx: Zoom
			// disables a webhook that keeps failing.
			return ev, fmt.Errorf("%w: no payload.object.participant.email", ErrUnknownEvent)
		}
		// Zoom vouches for the address of a signed-in user only: a guest
		// types what they like into the join or registration form.
		s.Unverified = o.Participant.ID == ""
	}
	s.At = eventTime(at, b.EventTS)
	ev.Signal = s
	return ev, nil
}

// meetingNumber reads a meeting number sent as a JSON number or a string
// of digits (Zoom sends both).
func meetingNumber(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", errors.New("missing")
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		s = strings.ReplaceAll(strings.TrimSpace(s), " ", "")
	}
	if len(s) < 9 || len(s) > 13 || strings.Trim(s, "0123456789") != "" {
		return "", fmt.Errorf("%.40q is not a meeting number", s)
	}
	return s, nil
}

// eventTime reads an RFC 3339 time, else a millisecond Unix time; zero
// when neither is there.
func eventTime(rfc3339 string, ms int64) time.Time {
	if t, err := time.Parse(time.RFC3339, rfc3339); err == nil {
		return t.UTC()
	}
	if ms > 0 {
		return time.UnixMilli(ms).UTC()
	}
	return time.Time{}
}
