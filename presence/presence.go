// Package presence holds the vocabulary that the synchronisation packages
// (sync/...) and the Graph client (graph) share without importing each
// other: the presence values Graph accepts from an application, what Teams
// shows for a person, and the vocabulary of a failed Graph call (Error,
// Kind). The verdicts themselves (which status is retried, held or gone,
// and the back-off) are graph/policy's, the one owner of that policy.
//
// It is deliberately tiny and free of heavy dependencies so that sync/...
// and their tests build without msgraph-sdk-go.
package presence

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Graph presence values used by calpresence.
const (
	Available    = "Available"
	Busy         = "Busy"
	DoNotDisturb = "DoNotDisturb"
	Away         = "Away"

	ActivityAvailable         = "Available"
	ActivityInACall           = "InACall"
	ActivityInAConferenceCall = "InAConferenceCall"
	ActivityAway              = "Away"
	ActivityPresenting        = "Presenting"
)

// Pair is an availability/activity combination accepted by Graph's
// setPresence for an application session.
type Pair struct {
	Availability string
	Activity     string
}

// AllowedPairs lists the availability/activity combinations that
// POST /users/{id}/presence/setPresence accepts (Graph docs, "setPresence":
// "Supported combinations of availability and activity"). Any other pair is
// answered with 400.
var AllowedPairs = []Pair{
	{Available, ActivityAvailable},
	{Busy, ActivityInACall},
	{Busy, ActivityInAConferenceCall},
	{Away, ActivityAway},
	{DoNotDisturb, ActivityPresenting},
}

// Allowed reports whether Graph accepts availability/activity as a pair.
func Allowed(availability, activity string) bool {
	for _, p := range AllowedPairs {
		if p.Availability == availability && p.Activity == activity {
			return true
		}
	}
	return false
}

// Strength orders pairs when overlapping meetings from several sources
// want different presence for one user: the higher value wins.
// InAConferenceCall beats InACall (docs/architecture.md).
func Strength(p Pair) int {
	switch p {
	case Pair{DoNotDisturb, ActivityPresenting}:
		return 5
	case Pair{Busy, ActivityInAConferenceCall}:
		return 4
	case Pair{Busy, ActivityInACall}:
		return 3
	case Pair{Away, ActivityAway}:
		return 2
	case Pair{Available, ActivityAvailable}:
		return 1
	}
	return 0
}

// Person is an Entra user as the worker knows them: the object id that
// keys their one presence session, and the UPN shown in logs.
type Person struct {
	ID  string
	UPN string
}

// Graph's limits on expirationDuration for setPresence.
const (
	MinLease = 5 * time.Minute
	MaxLease = 4 * time.Hour
)

// Kind classifies the outcome of a failed Graph call; policy.Classify
// (graph/policy) decides which Kind a status is, per operation.
type Kind int

const (
	// Retry ("retry after") means the call may succeed later: 408, 409,
	// 429, 5xx, network errors and timeouts. RetryAfter says when, if the
	// server said.
	Retry Kind = iota + 1
	// Permanent ("hold") means retrying the same call will not help while
	// nothing changes (most 4xx): a set is held until its span ends.
	Permanent
	// NotFound ("gone") is a 404: for clearPresence the session is already
	// gone (success); for a set or a user lookup the user does not exist.
	NotFound
	// Unauthorized is a 401 that survived one token refresh.
	Unauthorized
)

func (k Kind) String() string {
	switch k {
	case Retry:
		return "retry"
	case Permanent:
		return "permanent"
	case NotFound:
		return "not_found"
	case Unauthorized:
		return "unauthorized"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is a failed Graph call, classified.
type Error struct {
	Op         string        // "setPresence", "clearPresence", "resolveUser"
	User       string        // the user as configured (UPN, mail or object id)
	Status     int           // HTTP status; 0 for transport errors
	Code       string        // Graph error code, e.g. "TooManyRequests"
	Message    string        // Graph error message or a short body excerpt
	Kind       Kind          // how to treat it
	RetryAfter time.Duration // from Retry-After; 0 when absent
	Err        error         // underlying error, if any
}

func (e *Error) Error() string {
	msg := e.Op
	if e.User != "" {
		msg += " for " + e.User
	}
	if e.Status != 0 {
		msg += fmt.Sprintf(": HTTP %d", e.Status)
	}
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the classification of err, or Retry for errors that are
// not *Error (a transport failure is worth another try).
func KindOf(err error) Kind {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Kind
	}
	return Retry
}

// StatusCode is the HTTP status of a Graph call's outcome as a metric
// label: "200" for success, the status of an *Error, "0" when there was
// no response.
func StatusCode(err error) string {
	if err == nil {
		return "200"
	}
	var pe *Error
	if errors.As(err, &pe) && pe.Status != 0 {
		return strconv.Itoa(pe.Status)
	}
	return "0"
}
