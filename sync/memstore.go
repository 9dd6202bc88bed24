package sync

import (
	gosync "sync"

	"github.com/calpresence/calpresence/state"
)

// MemStore is a Store kept in memory: for dry runs, which must neither
// need nor touch the state file, and for tests.
type MemStore struct {
	mu       gosync.Mutex
	sessions map[string]state.Session
	ids      map[string]string
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{sessions: make(map[string]state.Session), ids: make(map[string]string)}
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
	m.sessions[s.User] = s
	return nil
}

// PutSessions records many sessions.
func (m *MemStore) PutSessions(ss []state.Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range ss {
		m.sessions[s.User] = s
	}
	return nil
}

// DeleteSession forgets the session of user.
func (m *MemStore) DeleteSession(user string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, user)
	return nil
}

// UserID returns the cached object id of user.
func (m *MemStore) UserID(user string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.ids[user]
	return id, ok, nil
}

// PutUserID caches the object id of user.
func (m *MemStore) PutUserID(user, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ids[user] = id
	return nil
}
