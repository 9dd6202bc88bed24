package testutil

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/calpresence/calpresence/presence"
)

// Call is one presence call a Presence received.
type Call struct {
	At         time.Duration // since Presence.Begin
	Op, User   string        // "set", "clear", "message" or "unmessage"; the user id
	Activity   string
	Expiration time.Duration
}

func (c Call) String() string {
	switch c.Op {
	case "set":
		return fmt.Sprintf("%v set %s %s %v", c.At, c.User, c.Activity, c.Expiration)
	case "message":
		return fmt.Sprintf("%v message %s %q", c.At, c.User, c.Activity)
	}
	return fmt.Sprintf("%v %s %s", c.At, c.Op, c.User)
}

// Presence is a fake Graph for the engine and the address directory: it
// records the presence calls it receives (Calls, Got), answering them with
// Fail's error when Fail is set. ResolveUser answers from People (by
// lower-cased address), else with the address itself, lower-cased, as id
// and UPN; ResolveErr, when set, may answer a lookup with an error
// instead. Set the fields before use, or inside Locked while in use.
type Presence struct {
	Begin      time.Time
	People     map[string]presence.Person
	Fail       func(op, user string) error
	ResolveErr func(address string) error
	// Shows answers ReadPresences for one id: what Teams shows, whether
	// it was read, or an error for the whole read. nil: every id shows
	// what was last set for it (Available once cleared).
	Shows func(id string) (presence.Shown, bool, error)

	mu    sync.Mutex
	calls []Call
	reads int
	shown map[string]presence.Shown
	// messages are the status messages, by id, kept apart from shown: a
	// set or clear of presence leaves the message as it is.
	messages map[string]string
	lookups  map[string]int
}

// Locked runs fn with p locked: to change its fields, or what they refer
// to, while it is in use.
func (p *Presence) Locked(fn func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fn()
}

func (p *Presence) record(op, user, activity string, exp time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Fail != nil {
		if err := p.Fail(op, user); err != nil {
			return err
		}
	}
	p.calls = append(p.calls, Call{time.Since(p.Begin), op, user, activity, exp})
	return nil
}

// SetPresence records a set.
func (p *Presence) SetPresence(_ context.Context, id, availability, activity string, exp time.Duration) error {
	if err := p.record("set", id, activity, exp); err != nil {
		return err
	}
	p.show(id, presence.Shown{Availability: availability, Activity: activity})
	return nil
}

// ClearPresence records a clear.
func (p *Presence) ClearPresence(_ context.Context, id string) error {
	if err := p.record("clear", id, "", 0); err != nil {
		return err
	}
	p.show(id, presence.Shown{Availability: presence.Available, Activity: presence.Available})
	return nil
}

func (p *Presence) show(id string, s presence.Shown) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown == nil {
		p.shown = make(map[string]presence.Shown)
	}
	p.shown[id] = s
}

// ReadPresences answers a read-back from Shows, else from the last set or
// clear of each id (Available for an id never set), and counts it (Reads).
// Shows is called without p locked: it may block, as a slow Graph does,
// while sets and clears go on.
func (p *Presence) ReadPresences(_ context.Context, ids []string) (map[string]presence.Shown, error) {
	p.mu.Lock()
	p.reads++
	shows := p.Shows
	shown := maps.Clone(p.shown)
	messages := maps.Clone(p.messages)
	p.mu.Unlock()
	out := make(map[string]presence.Shown, len(ids))
	for _, id := range ids {
		if shows != nil {
			s, ok, err := shows(id)
			if err != nil {
				return nil, err
			}
			if ok {
				if s.StatusMessage == "" {
					s.StatusMessage = messages[id]
				}
				out[id] = s
			}
			continue
		}
		s, ok := shown[id]
		if !ok {
			s = presence.Shown{Availability: presence.Available, Activity: presence.Available}
		}
		s.StatusMessage = messages[id]
		out[id] = s
	}
	return out, nil
}

// SetStatusMessage records a status message set (Call.Op "message", the
// text as Activity); the read-back shows it from then on.
func (p *Presence) SetStatusMessage(_ context.Context, id, message string, _ time.Time) error {
	if err := p.record("message", id, message, 0); err != nil {
		return err
	}
	p.setMessage(id, message)
	return nil
}

// ClearStatusMessage records a status message cleared (Call.Op
// "unmessage").
func (p *Presence) ClearStatusMessage(_ context.Context, id string) error {
	if err := p.record("unmessage", id, "", 0); err != nil {
		return err
	}
	p.setMessage(id, "")
	return nil
}

// SetMessage sets id's status message as if they wrote it themself.
func (p *Presence) SetMessage(id, message string) { p.setMessage(id, message) }

func (p *Presence) setMessage(id, message string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.messages == nil {
		p.messages = make(map[string]string)
	}
	p.messages[id] = message
}

// Lose has Graph drop id's session without a word: the read-back shows
// them Available until the next set.
func (p *Presence) Lose(id string) {
	p.show(id, presence.Shown{Availability: presence.Available, Activity: presence.Available})
}

// Reads is how many read-backs the fake answered.
func (p *Presence) Reads() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reads
}

// ResolveUser answers a lookup and counts it (LookupsOf).
func (p *Presence) ResolveUser(_ context.Context, address string) (presence.Person, error) {
	a := strings.ToLower(address)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lookups == nil {
		p.lookups = make(map[string]int)
	}
	p.lookups[a]++
	if p.ResolveErr != nil {
		if err := p.ResolveErr(a); err != nil {
			return presence.Person{}, err
		}
	}
	if person, ok := p.People[a]; ok {
		return person, nil
	}
	return presence.Person{ID: a, UPN: a}, nil
}

// Calls returns the presence calls recorded so far.
func (p *Presence) Calls() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

// Got returns the presence calls recorded so far, as Call.String.
func (p *Presence) Got() []string {
	var out []string
	for _, c := range p.Calls() {
		out = append(out, c.String())
	}
	return out
}

// Reset forgets the calls recorded so far.
func (p *Presence) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = nil
}

// LookupsOf is how often address (lower-cased) was looked up.
func (p *Presence) LookupsOf(address string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lookups[address]
}

// Lookups returns how often each address (lower-cased) was looked up.
func (p *Presence) Lookups() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.lookups)
}
