package app

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph"
	"github.com/calpresence/calpresence/selfservice"
	"github.com/calpresence/calpresence/server"
	"github.com/calpresence/calpresence/sources"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync/engine"
)

// selfserviceListener is the people's listener of the daemon
// (selfservice.listen, exposed through the ingress): each person signs in
// and sees their own page (docs/selfservice.md).
type selfserviceListener struct {
	err chan error // the listener's failure; never sent when off
	wg  sync.WaitGroup
}

// startSelfservice starts the self-service listener when selfservice.url
// is set, until ctx is done. It serves on every replica: a standby signs
// people in (from the addresses resolved in the shared state) and takes
// their pauses and calls into it, but only the leader's engine holds a
// person's spans: a standby's page shows the pause and call alone. A cookie key that cannot be read or a graph block sign-in
// cannot use is a *ConfigError, returned before anything listens.
func startSelfservice(ctx context.Context, cfg *config.Config, a *App, log *slog.Logger) (*selfserviceListener, error) {
	l := &selfserviceListener{err: make(chan error, 1)}
	sc := cfg.Selfservice
	if !sc.Enabled() {
		return l, nil
	}
	key, err := selfservice.ReadKey(sc.CookieKeyFile)
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("selfservice.cookie_key_file: %w", err)}
	}
	si, err := graph.NewSignIn(cfg.Graph)
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("selfservice: %w", err)}
	}
	h, err := selfservice.New(selfservice.Config{
		URL:          sc.URL,
		Authority:    si.Authority,
		TenantID:     cfg.Graph.TenantID,
		ClientID:     cfg.Graph.ClientID,
		ClientSecret: string(cfg.Graph.ClientSecret),
		// With auth client_certificate, the certificate instead: it signs
		// the code exchange's client assertion.
		ClientCertificate: si.Certificate,
		ClientKey:         si.Key,
		CookieKey:         key,
		HTTPClient:        si.HTTPClient,
		Location:          cfg.Location(),
		MaxCall:           sc.MaxCall,
		Feeds:             sc.Feeds,
	}, &selfDirectory{a: a}, selfPeople{a: a}, log.With("component", "selfservice"))
	if err != nil {
		return nil, &ConfigError{err}
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		err := server.ServeWith(ctx, sc.Listen, selfserviceServer(h), cfg.Server.ShutdownTimeout, func(addr net.Addr) {
			log.Info("serving self-service", "addr", addr.String(), "url", sc.URL, "redirect_uri", h.RedirectURI())
		})
		if err != nil {
			l.err <- fmt.Errorf("selfservice: %w", err)
		}
	}()
	return l, nil
}

// wait waits for the listener to stop (ctx done).
func (l *selfserviceListener) wait() { l.wg.Wait() }

// selfserviceServer is the http.Server of the people's listener: it faces
// the internet, like the webhooks' (webhookServer). A sign-in's callback
// waits for the authority's code exchange, hence the longer write timeout.
func selfserviceServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      45 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
}

// selfDirectory is the self-service page's Directory: a person may use the
// page when the worker knows them, that is when one of the addresses the
// configuration or a feed names was resolved to their object id. From the
// engine's directory when one runs here; on a standby, from the resolved
// addresses in the shared state, read at most once a minute.
//
// Entra's accountEnabled is not asked: a person disabled in Entra cannot
// sign in there anyway, and a session ends within 8 hours.
type selfDirectory struct {
	a *App

	mu     sync.Mutex
	read   time.Time
	byID   map[string]string // object id → UPN
	stored func() (map[string]state.Identity, error)
}

// directoryRefresh is how often a standby reads the resolved addresses.
const directoryRefresh = time.Minute

func (d *selfDirectory) Known(ctx context.Context, oid string) (string, bool, error) {
	if eng := d.a.Engine(); eng != nil {
		upn, ok := eng.Known(oid)
		return upn, ok, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.byID == nil || time.Since(d.read) >= directoryRefresh {
		ids, err := d.a.store.Identities(ctx)
		if err != nil && ids == nil {
			return "", false, fmt.Errorf("read resolved addresses: %w", err)
		}
		d.byID, d.read = make(map[string]string), time.Now()
		for addr, idn := range ids {
			if idn.Unknown || idn.ID == "" {
				continue
			}
			if idn.UPN != "" || d.byID[idn.ID] == "" {
				d.byID[idn.ID] = cmp.Or(idn.UPN, addr)
			}
		}
	}
	upn, ok := d.byID[oid]
	return upn, ok, nil
}

// selfPeople is the self-service page's People: the engine's view of the
// one person asking (engine.Engine.Person), nobody else's, and what they
// change of their own presence.
type selfPeople struct{ a *App }

// Pause records the person's pause. The engine running here records it and
// acts at once; on a standby (or while the engine stops) it goes straight
// into the shared store, where the leader's engine takes it within
// engine.InboxEvery.
func (p selfPeople) Pause(ctx context.Context, oid string, until time.Time) error {
	if eng, err := p.a.running(ctx); err == nil && eng.Accepting() {
		return eng.Pause(ctx, oid, until)
	}
	return p.a.store.PutPause(ctx, state.Pause{ID: oid, Since: time.Now(), Until: until})
}

// Resume ends the person's pause, as Pause records one.
func (p selfPeople) Resume(ctx context.Context, oid string) error {
	if eng, err := p.a.running(ctx); err == nil && eng.Accepting() {
		return eng.Resume(ctx, oid)
	}
	return p.a.store.DeletePause(ctx, oid)
}

// StartCall records the person's own call ("I'm on a call"), as Pause
// records a pause: through the engine running here, else straight into
// the shared store for the leader.
func (p selfPeople) StartCall(ctx context.Context, oid string, until time.Time) error {
	if eng, err := p.a.running(ctx); err == nil && eng.Accepting() {
		return eng.StartCall(ctx, oid, until)
	}
	return p.a.store.PutOwnCall(ctx, state.OwnCall{ID: oid, Since: time.Now(), Until: until})
}

// EndCall ends the person's own call, as StartCall records one.
func (p selfPeople) EndCall(ctx context.Context, oid string) error {
	if eng, err := p.a.running(ctx); err == nil && eng.Accepting() {
		return eng.EndCall(ctx, oid)
	}
	return p.a.store.DeleteOwnCall(ctx, oid)
}

func (p selfPeople) View(ctx context.Context, oid string) (selfservice.View, error) {
	eng, err := p.a.running(ctx)
	if err == nil {
		pv := eng.Person(ctx, oid, time.Now())
		v := personView(pv)
		if v.Feeds, err = p.ownFeeds(ctx, oid, &pv); err != nil {
			return selfservice.View{}, err
		}
		return v, nil
	}
	if rep := p.a.replica(ctx); rep == nil || rep.Role != "standby" {
		return selfservice.View{}, err
	}
	// A standby: the person's pause and call from the shared state.
	v := selfservice.View{Standby: true}
	now := time.Now()
	pauses, err := p.a.store.Pauses(ctx)
	if err != nil && pauses == nil {
		return selfservice.View{}, err
	}
	if pa, ok := pauses[oid]; ok && pa.Active(now) {
		v.Paused, v.PausedUntil = true, pa.Until
	}
	calls, err := p.a.store.OwnCalls(ctx)
	if err != nil && calls == nil {
		return selfservice.View{}, err
	}
	if c, ok := calls[oid]; ok && !now.Before(c.Since) && now.Before(c.Until) {
		v.OnCallUntil = c.Until
	}
	if v.Feeds, err = p.ownFeeds(ctx, oid, nil); err != nil {
		return selfservice.View{}, err
	}
	return v, nil
}

// personView is what the page shows of the engine's view of a person.
func personView(pv engine.PersonView) selfservice.View {
	v := selfservice.View{Paused: pv.Paused, PausedUntil: pv.Pause.Until}
	if pv.OnCall {
		v.OnCallUntil = pv.Call.Until
	}
	if pv.ReadBack {
		v.Availability, v.Activity = pv.Shown.Shown.Availability, pv.Shown.Shown.Activity
		v.OwnStatus = pv.Shown.Result == engine.ReadbackOwnStatus
	}
	for _, s := range pv.Spans {
		var why []string
		for _, m := range s.Meetings {
			w := m.Summary
			if w == "" {
				w = "a meeting"
			}
			why = append(why, fmt.Sprintf("%s (source %s)", w, m.Source))
		}
		v.Spans = append(v.Spans, selfservice.Span{Start: s.Start, End: s.End, Why: strings.Join(why, ", ")})
	}
	for _, l := range pv.Live {
		v.Live = append(v.Live, selfservice.Live{Vendor: l.Vendor, Status: l.Status, Since: l.Since})
	}
	return v
}

// AddFeed checks a feed the person offers (selfservice.feeds) and records
// it, its URL sealed: an https URL (webcal:// taken as https; http only
// with selfservice.private_feeds), at most selfservice.MaxFeeds a person,
// not one they have already, and one that answers with a calendar now,
// read as the worker will poll it (engine.CheckOwnFeed). The engine
// running here takes it at once; otherwise the leader's within
// engine.InboxEvery.
func (p selfPeople) AddFeed(ctx context.Context, oid, upn, raw string) (selfservice.FeedAdded, error) {
	a := p.a
	cfg := a.Config()
	key := a.feedKey
	if key == nil {
		return selfservice.FeedAdded{}, errors.New("own feeds are off")
	}
	u, refusal := ownFeedURL(raw, cfg.Selfservice.PrivateFeeds)
	if refusal != "" {
		return selfservice.FeedAdded{}, &selfservice.FeedRefusal{Reason: refusal}
	}
	all, err := a.store.OwnFeeds(ctx)
	if err != nil && all == nil {
		return selfservice.FeedAdded{}, fmt.Errorf("read own feeds: %w", err)
	}
	mine := 0
	for _, f := range all {
		if f.Person != oid {
			continue
		}
		mine++
		if have, err := key.Open(f); err == nil && have == u {
			return selfservice.FeedAdded{}, &selfservice.FeedRefusal{Reason: "You have added this feed already."}
		}
	}
	if mine >= selfservice.MaxFeeds {
		return selfservice.FeedAdded{}, &selfservice.FeedRefusal{Reason: fmt.Sprintf("You have %d feeds, the most a person may have. Remove one first.", mine)}
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	f := key.Seal(state.OwnFeed{ID: hex.EncodeToString(id), Person: oid, Address: upn, Added: time.Now()}, u)
	n, err := engine.CheckOwnFeed(ctx, cfg, a.fetcher, f, u, time.Now())
	if err != nil {
		return selfservice.FeedAdded{}, &selfservice.FeedRefusal{Reason: fmt.Sprintf("The feed could not be used: %v. Nothing was added.", err)}
	}
	if err := a.store.PutOwnFeed(ctx, f); err != nil {
		return selfservice.FeedAdded{}, err
	}
	p.ownFeedsChanged(ctx)
	return selfservice.FeedAdded{ID: f.ID, Shown: sources.RedactURL(u), Meetings: n}, nil
}

// DeleteFeed forgets the person's feed id, as AddFeed records one.
func (p selfPeople) DeleteFeed(ctx context.Context, oid, id string) (bool, error) {
	all, err := p.a.store.OwnFeeds(ctx)
	if err != nil && all == nil {
		return false, fmt.Errorf("read own feeds: %w", err)
	}
	if f, ok := all[id]; !ok || f.Person != oid {
		return false, nil
	}
	if err := p.a.store.DeleteOwnFeed(ctx, id); err != nil {
		return false, err
	}
	p.ownFeedsChanged(ctx)
	return true, nil
}

// ownFeedsChanged has the engine running here read the own feeds now; a
// standby's change reaches the leader within engine.InboxEvery.
func (p selfPeople) ownFeedsChanged(ctx context.Context) {
	if eng, err := p.a.running(ctx); err == nil && eng.Accepting() {
		if err := eng.RefreshOwnFeeds(ctx); err != nil {
			p.a.log.Warn("put own feeds in force", "err", err)
		}
	}
}

// ownFeeds returns the person's own feeds for their page, redacted, by
// when added, with what the engine knows of each (pv: nil on a standby).
func (p selfPeople) ownFeeds(ctx context.Context, oid string, pv *engine.PersonView) ([]selfservice.Feed, error) {
	if p.a.feedKey == nil {
		return nil, nil
	}
	all, err := p.a.store.OwnFeeds(ctx)
	if err != nil && all == nil {
		return nil, err
	}
	status := make(map[string]engine.SourceStatus)
	if pv != nil {
		for _, s := range pv.OwnFeeds {
			status[s.Name] = s
		}
	}
	var out []selfservice.Feed
	for id, f := range all {
		if f.Person != oid {
			continue
		}
		shown := "(an address this server cannot open: remove it and add it again)"
		if u, err := p.a.feedKey.Open(f); err == nil {
			shown = sources.RedactURL(u)
		}
		v := selfservice.Feed{ID: id, Shown: shown, Added: f.Added}
		if s, ok := status[engine.OwnFeedSource(id)]; ok && (s.Loaded || s.LastError != "") {
			v.Checked, v.Healthy, v.LastError, v.LastSuccess, v.Meetings = true, s.Healthy, s.LastError, s.LastSuccess, s.Occurrences
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b selfservice.Feed) int { return cmp.Or(a.Added.Compare(b.Added), strings.Compare(a.ID, b.ID)) })
	return out, nil
}

// ownFeedURL returns the URL a person typed as the worker will fetch it,
// or why it is refused: https (webcal and webcals taken as https), http
// only with selfservice.private_feeds; no user info.
func ownFeedURL(raw string, private bool) (string, string) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return "", "That is not a web address. Paste the feed's full address, beginning with https://."
	}
	switch strings.ToLower(u.Scheme) {
	case "webcal", "webcals", "https":
		u.Scheme = "https"
	case "http":
		if !private {
			return "", "The address must begin with https:// (an http:// feed would send its secret unencrypted)."
		}
	default:
		return "", fmt.Sprintf("The address must begin with https:// (got %s:).", u.Scheme)
	}
	if u.User != nil {
		return "", "The address must not hold a user name or password."
	}
	return u.String(), ""
}
