package testutil

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/calpresence/calpresence/sources"
)

// Feeds is a feed fetcher (engine.Fetcher) serving bodies from memory by
// source name, answering "not modified" when a body is unchanged. The zero
// value serves nothing; Set adds or replaces a body.
type Feeds struct {
	mu     sync.Mutex
	bodies map[string][]byte
}

// Set serves body as the feed of source name.
func (f *Feeds) Set(name string, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bodies == nil {
		f.bodies = make(map[string][]byte)
	}
	f.bodies[name] = body
}

// Fetch answers req from memory.
func (f *Feeds) Fetch(_ context.Context, req sources.FetchRequest) (sources.FetchResult, error) {
	f.mu.Lock()
	body, ok := f.bodies[req.Name]
	f.mu.Unlock()
	if !ok {
		return sources.FetchResult{}, fmt.Errorf("feed %q: no such feed", req.Name)
	}
	h := sha256.Sum256(body)
	if h == req.PrevHash {
		return sources.FetchResult{NotModified: true, Hash: h}, nil
	}
	return sources.FetchResult{Body: body, Hash: h, Status: 200}, nil
}
