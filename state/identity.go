package state

import (
	"time"
)

// Identity is what Entra said of one calendar address: the person it
// names, or that it names nobody. The worker resolves every address a feed
// yields ahead of any boundary and keeps the answers here, so that a
// restart knows everyone's object id before Graph answers a single lookup.
type Identity struct {
	Address string `json:"-"` // mailaddr.Normalize'd; the key
	// ID is the person's Entra object id; empty when Unknown.
	ID  string `json:"id,omitempty"`
	UPN string `json:"upn,omitempty"`
	// Unknown records that Entra has no user with this address.
	Unknown bool `json:"unknown,omitempty"`
	// UnknownSince is when Entra first said so, of the answers in a row
	// that did: the lookups of an unknown address back off with it (zero
	// when not Unknown, or from an earlier release).
	UnknownSince time.Time `json:"unknown_since,omitzero"`
	// CheckedAt is when Entra last answered for this address (zero for an
	// id carried over from schema 1: it is looked up again soon).
	CheckedAt time.Time `json:"checked_at,omitzero"`
}
