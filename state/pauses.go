package state

import (
	"time"
)

// Pause is a person's own opt-out (the self-service page's "pause"): the
// worker clears them at once and sets nothing for them until Until —
// calendar spans and live signals alike — or until they resume. Keyed by
// Entra object id; shared by every replica through the store, so that any
// replica can take it and the leader carries it out.
type Pause struct {
	// ID is the person's Entra object id; the key.
	ID string `json:"-"`
	// Since is when the person paused.
	Since time.Time `json:"since"`
	// Until is when the pause ends by itself; zero: until they resume.
	Until time.Time `json:"until,omitzero"`
}

// Active reports whether the pause is in force at now.
func (p Pause) Active(now time.Time) bool { return p.Until.IsZero() || now.Before(p.Until) }
