package state

import (
	"time"
)

// OwnCall is a call a person declared on their self-service page ("I'm on
// a call"): Busy/InACall from Since until Until, unless they end it
// earlier (the record is then deleted). Keyed by Entra object id, one per
// person; shared by every replica through the store.
type OwnCall struct {
	// ID is the person's Entra object id; the key.
	ID    string    `json:"-"`
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
}
