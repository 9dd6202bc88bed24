package signals

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/calpresence/calpresence/internal/mailaddr"
	"github.com/calpresence/calpresence/sources/ical"
	"github.com/calpresence/calpresence/state"
)

// WebexSignature is the X-Spark-Signature Webex sends with body:
// hex(HMAC-SHA1(secret, body)).
func WebexSignature(secret string, body []byte) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// VerifyWebex checks a Webex delivery's X-Spark-Signature over the raw
// body, in constant time. Webex signs no timestamp: a replayed delivery is
// the same fact again, which the engine recognises as a duplicate.
func VerifyWebex(secret, signature string, body []byte) error {
	if err := checkWebexHeader(signature); err != nil {
		return err
	}
	want := WebexSignature(secret, body)
	if !hmac.Equal([]byte(strings.ToLower(signature)), []byte(want)) {
		return fmt.Errorf("%w: X-Spark-Signature does not match", ErrSignature)
	}
	return nil
}

// checkWebexHeader is what VerifyWebex can check without the body: an
// X-Spark-Signature shaped as Webex's (a SHA-1 in hex).
func checkWebexHeader(signature string) error {
	if signature == "" {
		return fmt.Errorf("%w: no X-Spark-Signature", ErrSignature)
	}
	if !isHex(signature, sha1.Size) {
		return fmt.Errorf("%w: X-Spark-Signature is not a SHA-1 in hex", ErrSignature)
	}
	return nil
}

// webexBody is a Webex webhook delivery (developer.webex.com, Webhooks
// guide: resource, event, data). For resource "meetings" data is the
// meeting instance (id, meetingNumber, start, end); for
// "meetingParticipants" the participant (email, state, joinedTime,
// leftTime, meetingId, and on some sites meetingNumber).
type webexBody struct {
	Resource string `json:"resource"`
	Event    string `json:"event"`
	OrgID    string `json:"orgId"` // the webhook's own organisation
	Data     struct {
		ID            string          `json:"id"`
		MeetingID     string          `json:"meetingId"`
		MeetingNumber json.RawMessage `json:"meetingNumber"`
		End           string          `json:"end"`
		Email         string          `json:"email"`
		JoinedTime    string          `json:"joinedTime"`
		LeftTime      string          `json:"leftTime"`
		// Who vouches for a participant: the host, an invitee, or one of
		// the webhook's own organisation.
		Host      bool   `json:"host"`
		HostEmail string `json:"hostEmail"`
		Invitee   bool   `json:"invitee"`
		OrgID     string `json:"orgId"`
		// telephony_calls (Webex Calling): the call, whose it is, its
		// state and when it changed.
		CallID         string `json:"callId"`
		PersonID       string `json:"personId"`
		State          string `json:"state"`
		EventTimestamp string `json:"eventTimestamp"`
	} `json:"data"`
}

// Webex keys for a meeting instance the invitation does not name (a
// participant event without meetingNumber): it pairs joined, left and
// ended of one instance, not calendar events.
const keyWebexInstance = "webex-id:"

// KeyWebexCall prefixes the Meeting of a Webex Calling signal: one
// stream of states per call (callId), so that a person on two calls stays
// busy until both end.
const KeyWebexCall = "webex-call:"

// WebexDelivery is a parsed Webex delivery.
type WebexDelivery struct {
	Event   string // resource/event
	Signals []state.Signal
	// Instance and Meeting, from "meetings started": the meeting instance
	// id participant events carry, and the meeting key it stands for.
	Instance, Meeting string
}

// ParseWebex reads a Webex delivery: one signal for a participant event;
// for a meeting that ended, one by meeting number and one by instance id,
// so that participant events carrying only the instance id are ended too;
// for a meeting that started, the instance id's meeting number (Webex's
// participant events name the instance, not the number).
func ParseWebex(body []byte) (out WebexDelivery, err error) {
	var b webexBody
	if err := json.Unmarshal(body, &b); err != nil {
		return out, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	// From here on the delivery is JSON Webex signed: what it lacks makes
	// it unused (answered 2xx), never an error Webex would count against
	// the webhook.
	if b.Resource == "" || b.Event == "" {
		return out, fmt.Errorf("%w: no resource or event", ErrUnknownEvent)
	}
	event := b.Resource + "/" + b.Event
	out.Event = event
	d := &b.Data
	var keys []string
	if len(d.MeetingNumber) > 0 && string(d.MeetingNumber) != "null" {
		n, err := meetingNumber(d.MeetingNumber)
		if err != nil {
			return out, fmt.Errorf("%w: data.meetingNumber: %v", ErrUnknownEvent, err)
		}
		keys = append(keys, ical.KeyWebex+n)
	}
	s := state.Signal{Vendor: "webex"}
	switch event {
	case "telephony_calls/created", "telephony_calls/updated", "telephony_calls/deleted":
		return webexCall(out, b.Event, d.CallID, d.PersonID, d.State, d.EventTimestamp)
	case "meetings/started":
		if d.ID == "" || len(keys) == 0 {
			return out, fmt.Errorf("%w: no data.id or data.meetingNumber", ErrUnknownEvent)
		}
		out.Instance, out.Meeting = d.ID, keys[0]
		return out, nil
	case "meetings/ended":
		s.Event = state.SignalEnded
		s.At = eventTime(d.End, 0)
		if d.ID != "" {
			keys = append(keys, keyWebexInstance+d.ID)
		}
	case "meetingParticipants/joined", "meetingParticipants/left":
		s.Event, s.At = state.SignalJoined, eventTime(d.JoinedTime, 0)
		if b.Event == "left" {
			s.Event, s.At = state.SignalLeft, eventTime(d.LeftTime, 0)
		}
		s.Email = mailaddr.Normalize(d.Email)
		if s.Email == "" {
			// A phone caller or a guest: nobody to find in the
			// configuration.
			return out, fmt.Errorf("%w: no data.email", ErrUnknownEvent)
		}
		s.Unverified = !d.Host && !d.Invitee && mailaddr.Normalize(d.HostEmail) != s.Email &&
			(d.OrgID == "" || d.OrgID != b.OrgID)
		if len(keys) == 0 && d.MeetingID != "" {
			keys = append(keys, keyWebexInstance+d.MeetingID)
		}
	default:
		return out, ErrUnknownEvent
	}
	if len(keys) == 0 {
		return out, fmt.Errorf("%w: no data.meetingNumber or meeting id", ErrUnknownEvent)
	}
	for _, k := range keys {
		s.Meeting = k
		out.Signals = append(out.Signals, s)
	}
	return out, nil
}

// webexCall reads a Webex Calling event: connected or held (also by the
// other party) makes the person busy, disconnected or deleted ends the
// call; other states (alerting, connecting) change nothing. The event
// names the person by id (data.personId), looked up later.
func webexCall(out WebexDelivery, event, callID, personID, callState, at string) (WebexDelivery, error) {
	if callID == "" || personID == "" {
		return out, fmt.Errorf("%w: no data.callId or data.personId", ErrUnknownEvent)
	}
	status := callState
	switch {
	case event == "deleted", callState == WebexCallEnded:
		status = WebexCallEnded
	case callState == WebexConnected, callState == WebexHeld:
	case callState == "remoteHeld":
		status = WebexHeld // the other party holds: still on the call
	default:
		return out, fmt.Errorf("%w: call state %.20q", ErrUnknownEvent, callState)
	}
	out.Signals = append(out.Signals, state.Signal{Vendor: "webex", Event: state.SignalCall, Meeting: KeyWebexCall + callID,
		Person: personID, Status: status, At: eventTime(at, 0)})
	return out, nil
}
