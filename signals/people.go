package signals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/mailaddr"
)

// ErrNoPerson is wrapped by a lookup Webex answered, for good, with no
// person (404) or one without an address: nothing to retry.
var ErrNoPerson = errors.New("no such person")

// WebexPeople looks up the address of a Webex person by id
// (GET {API}/people/{personId}, whose answer lists "emails"), once:
// the answers are cached. Webex Calling's events name the person by id.
// The token, given to each Email (a renewed one is used at once), needs
// spark:people_read (or an admin's spark-admin:people_read).
type WebexPeople struct {
	API    string       // "": config.DefaultWebhooks().Webex.API
	Client *http.Client // nil: one with a 10 s timeout

	mu    sync.Mutex
	cache map[string]string // person id → address
}

// maxPeople bounds the cache; past it, it starts again.
const maxPeople = 100000

// Email returns the person's address. A failure other than ErrNoPerson is
// transient (the network, 429, 5xx, a token being renewed): the caller
// tries again later.
func (p *WebexPeople) Email(ctx context.Context, personID, token string) (string, error) {
	p.mu.Lock()
	e, ok := p.cache[personID]
	p.mu.Unlock()
	if ok {
		return e, nil
	}
	api := p.API
	if api == "" {
		api = config.DefaultWebhooks().Webex.API
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(api, "/")+"/people/"+url.PathEscape(personID), nil)
	if err != nil {
		return "", fmt.Errorf("look up webex person: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	c := p.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("look up webex person: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("look up webex person: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return "", fmt.Errorf("look up webex person: HTTP 404: %w", ErrNoPerson)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("look up webex person: HTTP %d", resp.StatusCode)
	}
	var v struct {
		Emails []string `json:"emails"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return "", fmt.Errorf("look up webex person: %w", err)
	}
	if len(v.Emails) == 0 || mailaddr.Normalize(v.Emails[0]) == "" {
		return "", fmt.Errorf("look up webex person: no emails: %w", ErrNoPerson)
	}
	e = mailaddr.Normalize(v.Emails[0])
	p.mu.Lock()
	if p.cache == nil || len(p.cache) >= maxPeople {
		p.cache = make(map[string]string)
	}
	p.cache[personID] = e
	p.mu.Unlock()
	return e, nil
}
