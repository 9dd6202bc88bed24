package engine

import (
	"maps"
	"sync"

	"github.com/calpresence/calpresence/state"
)

// MemStore is a Store kept in memory: for dry runs, which must neither
// need nor touch the state file, and for tests.
type MemStore struct {
	mu       sync.Mutex
	sessions map[string]state.Session
	ids      map[string]state.Identity
	signals  map[string]state.Signal
	pauses   map[string]state.Pause   // pauses.go
	ownCalls map[string]state.OwnCall // owncalls.go
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{sessions: make(map[string]state.Session), ids: make(map[string]state.Identity)}
}

// Sessions returns a copy of the sessions.
func (m *MemStore) Sessions() (map[string]state.Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]state.Session, len(m.sessions))
	for k, v := range m.sessions {
		out[k] = v
	}
	return out, nil
}

// PutSession records s.
func (m *MemStore) PutSession(s state.Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[s.Key()] = s
	return nil
}

// PutSessions records many sessions.
func (m *MemStore) PutSessions(ss []state.Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range ss {
		m.sessions[s.Key()] = s
	}
	return nil
}

// DeleteSession forgets the session stored under key.
func (m *MemStore) DeleteSession(key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, key)
	return nil
}

// Identities returns a copy of the identities.
func (m *MemStore) Identities() (map[string]state.Identity, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.ids), nil
}

// PutIdentities records ids under their normalised addresses.
func (m *MemStore) PutIdentities(ids []state.Identity) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		id.Address = state.NormalizeAddress(id.Address)
		m.ids[id.Address] = id
	}
	return nil
}

// DeleteIdentity forgets address.
func (m *MemStore) DeleteIdentity(address string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.ids, state.NormalizeAddress(address))
	return nil
}

// DeleteIdentities forgets addresses.
func (m *MemStore) DeleteIdentities(addresses []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range addresses {
		delete(m.ids, state.NormalizeAddress(a))
	}
	return nil
}

// Signals returns a copy of the live meeting signals (signals.Store).
func (m *MemStore) Signals() (map[string]state.Signal, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.signals), nil
}

// QueuedSignals returns a copy of the signals in the inbox (signals.Store).
func (m *MemStore) QueuedSignals() (map[string]state.Signal, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]state.Signal)
	for id, s := range m.signals {
		if state.Queued(id) {
			out[id] = s
		}
	}
	return out, nil
}

// Signal returns the signal stored under id (signals.Handler's Webex
// instances).
func (m *MemStore) Signal(id string) (state.Signal, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.signals[id]
	return s, ok, nil
}

// PutSignal records s.
func (m *MemStore) PutSignal(s state.Signal) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.signals == nil {
		m.signals = make(map[string]state.Signal)
	}
	m.signals[s.ID] = s
	return nil
}

// DeleteSignal forgets the signal stored under id.
func (m *MemStore) DeleteSignal(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.signals, id)
	return nil
}
