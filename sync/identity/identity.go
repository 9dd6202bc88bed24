// Package identity maps calendar addresses to people (Entra object ids):
// resolution ahead of the boundaries, the one cache of the answers, their
// refresh and invalidation.
package identity

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/internal/mailaddr"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state"
	"github.com/prometheus/client_golang/prometheus"
)

// Resolver names the Entra user behind a calendar address (UPN, mail or
// proxy address, any case; an object id). It caches nothing: the
// Directory is the cache.
type Resolver interface {
	ResolveUser(ctx context.Context, address string) (presence.Person, error)
}

// Store keeps what Entra said of each address across restarts.
type Store interface {
	Identities(ctx context.Context) (map[string]state.Identity, error)
	PutIdentities(ctx context.Context, ids []state.Identity) error
	DeleteIdentity(ctx context.Context, address string) error
}

// Metrics are the collectors the Directory updates (the engine registers
// them).
type Metrics struct {
	GraphRequests *prometheus.CounterVec // op, code
	Addresses     *prometheus.GaugeVec   // state: resolved|unknown|pending
}

// An address Entra does not know is looked up again with back-off: first
// after UnknownUserRecheck, then each time after as long as it has been
// unknown (1h, 1h, 2h, 4h, 8h, 16h), at most UnknownUserRecheckMax apart
// (and never less often than schedule.identity_refresh). Never a hot loop,
// and an external attendee costs a lookup a day, not one an hour for ever;
// yet a user created later is picked up without a restart, and at once
// when a feed that names the address changes.
const (
	UnknownUserRecheck    = time.Hour
	UnknownUserRecheckMax = 24 * time.Hour
)

// ForgetAfter is how long the directory keeps an address that no loaded
// feed names, nor the configuration: then what Entra said of it leaves
// memory and the state. Attendees churn (a partner's guests, one-off
// interviews), and nothing may grow with the days. A week, so that the
// people of a weekly meeting stay known even with a horizon shorter than
// that; an address named again later is simply looked up again.
const ForgetAfter = 7 * 24 * time.Hour

// ForgetEvery is how often the resolver looks for addresses to forget,
// and notes those still named.
const ForgetEvery = time.Hour

// idleAfter: an address no feed has named for longer than this is not
// looked up again (refreshed, or rechecked when unknown) until one names it
// again, and forgotten after ForgetAfter. Two sweeps, so that an address
// named all along never counts as idle between them.
const idleAfter = 2 * ForgetEvery

// reObjectID matches an Entra object id (a GUID).
var reObjectID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Directory maps calendar addresses to people (Entra object ids). It is the
// one owner of that mapping: answers are kept durably in the state (so a
// restart knows everyone before Graph answers a lookup), looked up again
// every refresh, and dropped when Graph says an id is gone.
//
// Addresses are resolved ahead of any boundary: building spans asks the
// Directory (lookup, memory only) and notes the addresses it cannot answer
// yet; the engine's resolver resolves them (resolve) and reconciles again.
// A person the directory cannot name yet is simply not acted on: nobody
// else waits for them.
type Directory struct {
	resolver    Resolver
	store       Store
	log         *slog.Logger
	metrics     *Metrics
	refresh     time.Duration
	concurrency int

	mu  sync.Mutex
	gen uint64 // counts the changes of who an address names
	// unresolved keeps Unresolved's answer while unresGen, which counts
	// the changes that could alter it, stands: /readyz asks every 5 s,
	// and going through 100,000 addresses took 45 ms a time.
	unresGen   uint64
	unresolved struct {
		valid bool
		gen   uint64
		out   []Unresolved
	}
	known  map[string]state.Identity // by normalised address
	byID   map[string][]string       // person id → their known addresses, sorted
	failed map[string]lookupFailure  // transient lookup failures, by address
	// seen are the addresses met since start (kept fresh), with when a
	// feed or the configuration last named them (for one met otherwise,
	// a signal's or an operator's, when it was first met).
	seen map[string]time.Time
	// since is when the directory was made: an identity loaded from the
	// state with no CheckedAt (schema 1) counts from then.
	since time.Time
	// reported is when an unknown address was last reported (once per
	// refresh, not at every recheck).
	reported map[string]time.Time
	// recheck are unknown addresses a changed feed names: looked up again
	// at once, whatever their back-off.
	recheck map[string]bool
	want    chan struct{} // an address waits for a lookup
}

// lookupFailure is a lookup that failed for a reason other than "no such
// user": it is retried with back-off, and the address waits meanwhile.
type lookupFailure struct {
	tries   int
	retryAt time.Time
	err     string
}

// New makes a Directory that looks addresses up through p, at most
// concurrency at a time, keeps the answers in st and looks each up again
// every refresh (schedule.identity_refresh; its default when zero). Load
// reads the answers kept.
func New(p Resolver, st Store, refresh time.Duration, concurrency int, log *slog.Logger, m *Metrics) *Directory {
	if refresh <= 0 {
		refresh = config.Default().Schedule.IdentityRefresh
	}
	return &Directory{resolver: p, store: st, log: log, metrics: m, refresh: refresh, concurrency: max(concurrency, 1),
		known: make(map[string]state.Identity), byID: make(map[string][]string), failed: make(map[string]lookupFailure),
		seen: make(map[string]time.Time), since: time.Now(),
		reported: make(map[string]time.Time), recheck: make(map[string]bool), want: make(chan struct{}, 1)}
}

// Load reads the identities kept in the state. Records that do not decode
// are skipped (they are looked up again) and reported in the error.
func (d *Directory) Load(ctx context.Context) error {
	ids, err := d.store.Identities(ctx)
	if bad := (*state.BadRecordsError)(nil); err != nil && !errors.As(err, &bad) {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, v := range ids {
		d.set(v)
	}
	d.gauges()
	return err
}

// Lookup returns the person address names, from memory. An object id
// names itself, as is: it needs no lookup (a wrong one is answered 404 by
// setPresence, and held back). Another address not yet resolved is noted
// for the resolver and reported as unknown for now.
func (d *Directory) Lookup(address string) (id string, ok bool) {
	a := mailaddr.Normalize(address)
	if reObjectID.MatchString(a) {
		return a, true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.meet(a)
	if idn, found := d.known[a]; found {
		return idn.ID, !idn.Unknown && idn.ID != ""
	}
	return "", false
}

// Note meets the addresses a feed's new matches name, as lookup does; when
// the feed changed (new content), those Entra did not know are looked up
// again at once rather than at the end of their back-off.
func (d *Directory) Note(addresses []string, changed bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, address := range addresses {
		a := mailaddr.Normalize(address)
		if reObjectID.MatchString(a) {
			continue
		}
		d.meet(a)
		if changed && d.known[a].Unknown && !d.recheck[a] {
			d.recheck[a] = true
			d.signal()
		}
	}
}

// meet notes address a, normalised, for the resolver if it is new, and
// wakes the resolver when a has never been looked up. An address already
// resolved (kept in the store) waits for its refresh, which the resolver
// finds within a minute: waking it for each of them made a start over
// 100,000 feeds scan every address once a feed (DueAt), 77 s of CPU with
// d.mu held against the loads. d.mu must be held.
func (d *Directory) meet(a string) {
	if _, ok := d.seen[a]; !ok {
		d.seen[a] = time.Now()
		d.unresGen++
		if _, known := d.known[a]; !known {
			d.signal()
		}
	}
}

// unknownWait is how long after its last lookup the unknown address of
// idn is looked up again: as long as it has been unknown, within
// [UnknownUserRecheck, UnknownUserRecheckMax], both capped by the refresh.
func (d *Directory) unknownWait(idn state.Identity) time.Duration {
	first := min(UnknownUserRecheck, d.refresh)
	last := max(first, min(UnknownUserRecheckMax, d.refresh))
	since := idn.UnknownSince
	if since.IsZero() || since.After(idn.CheckedAt) {
		since = idn.CheckedAt // a record of an earlier release: start afresh
	}
	return min(max(idn.CheckedAt.Sub(since), first), last)
}

// set records what Entra said of idn.Address. d.mu must be held.
func (d *Directory) set(idn state.Identity) {
	if old, ok := d.known[idn.Address]; !ok || old.ID != idn.ID || old.Unknown != idn.Unknown {
		d.gen++
		d.unresGen++
	}
	d.drop(idn.Address)
	d.known[idn.Address] = idn
	if idn.ID != "" && !idn.Unknown {
		as := append(d.byID[idn.ID], idn.Address)
		slices.Sort(as)
		d.byID[idn.ID] = as
	}
}

// drop forgets address. d.mu must be held.
func (d *Directory) drop(address string) {
	old, ok := d.known[address]
	if !ok {
		return
	}
	delete(d.known, address)
	d.gen++
	d.unresGen++
	if as := slices.DeleteFunc(d.byID[old.ID], func(a string) bool { return a == address }); len(as) > 0 {
		d.byID[old.ID] = as
	} else {
		delete(d.byID, old.ID)
	}
}

// IsUnknown reports whether Entra said address names nobody.
func (d *Directory) IsUnknown(address string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.known[mailaddr.Normalize(address)].Unknown
}

// Resolved reports whether Entra has answered for address: it names a
// person (or is an object id), or it is known to name nobody. An address
// still awaiting its first lookup is not resolved.
func (d *Directory) Resolved(address string) bool {
	a := mailaddr.Normalize(address)
	if reObjectID.MatchString(a) {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	idn, found := d.known[a]
	return found && (idn.Unknown || idn.ID != "")
}

// Generation changes whenever an address comes to name another person, or
// none: what is keyed by person (the engine's spans) must be rebuilt then.
func (d *Directory) Generation() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gen
}

// UPN returns how a person is shown: their UPN when known, else one of
// their addresses, else the id.
func (d *Directory) UPN(id string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	as := d.byID[id]
	for _, a := range as {
		if u := d.known[a].UPN; u != "" {
			return u
		}
	}
	if len(as) > 0 {
		return as[0]
	}
	return id
}

// Addresses returns the known addresses of the person id, sorted.
func (d *Directory) Addresses(id string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.byID[id])
}

// Wanted is ready when an address waits for a lookup: the resolver's
// cue to call Due and Resolve.
func (d *Directory) Wanted() <-chan struct{} { return d.want }

// Sizes counts what the directory holds in memory, map by map: each must
// stay bounded however long the daemon runs and however many attendees
// come and go (the engine's growth test reads it).
type Sizes struct {
	Seen, Known, ByID, Failed, Reported, Recheck int
}

// Sizes returns the current Sizes.
func (d *Directory) Sizes() Sizes {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Sizes{Seen: len(d.seen), Known: len(d.known), ByID: len(d.byID), Failed: len(d.failed),
		Reported: len(d.reported), Recheck: len(d.recheck)}
}

// signal wakes the resolver. d.mu must be held.
func (d *Directory) signal() {
	select {
	case d.want <- struct{}{}:
	default:
	}
}

// Due returns the addresses met since start that need a lookup at now:
// never resolved, due for their refresh, unknown and at the end of their
// back-off (unknownWait) or named by a feed that changed, or whose last
// failure's back-off has passed. An address no feed names any more
// (idleAfter) needs none.
func (d *Directory) Due(now time.Time) []string {
	out, _ := d.DueAt(now)
	return out
}

// DueAt returns the addresses due at now (see due), sorted, and the
// earliest time one of the others falls due (zero: none is waiting), in
// one pass over them: the resolver asks every minute.
func (d *Directory) DueAt(now time.Time) (out []string, next time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for a, named := range d.seen {
		if now.Sub(named) > idleAfter {
			continue // until a feed names it again (prune)
		}
		var at time.Time // zero: due now
		if f, ok := d.failed[a]; ok {
			at = f.retryAt
		} else if idn, ok := d.known[a]; ok {
			switch {
			case idn.Unknown && d.recheck[a]:
			case idn.Unknown:
				at = idn.CheckedAt.Add(d.unknownWait(idn))
			default:
				at = idn.CheckedAt.Add(d.refresh)
			}
		}
		switch {
		case !now.Before(at):
			out = append(out, a)
		case next.IsZero() || at.Before(next):
			next = at
		}
	}
	slices.Sort(out)
	return out, next
}

// Resolve looks the addresses up in Entra, at most d.concurrency at a time,
// and keeps the answers. It reports whether any address now names another
// Person than before (or a person where it named none), so the caller knows
// to reconcile again.
//
// A transient failure (throttling, 5xx, a timeout) keeps what was known
// (an id resolved yesterday is still the best answer) and retries with
// back-off; "no such user" is kept as unknown and reported once per
// refresh; an ambiguous address is reported likewise.
func (d *Directory) Resolve(ctx context.Context, addrs []string) (changed bool) {
	if len(addrs) == 0 {
		return false
	}
	type answer struct {
		p   presence.Person
		err error
	}
	answers := make([]answer, len(addrs))
	sem := make(chan struct{}, d.concurrency)
	var wg sync.WaitGroup
	for i := range addrs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p, err := d.resolver.ResolveUser(ctx, addrs[i])
			if err == nil {
				p.ID = strings.ToLower(p.ID)
			}
			answers[i] = answer{p, err}
			d.metrics.GraphRequests.WithLabelValues("resolveUser", presence.StatusCode(err)).Inc()
		})
	}
	wg.Wait()
	now := time.Now()
	var (
		puts     []state.Identity
		failures int
		firstErr error
	)
	d.mu.Lock()
	for i, a := range addrs {
		ans, old := answers[i], d.known[a]
		switch kind := presence.KindOf(ans.err); {
		case ans.err == nil:
			delete(d.failed, a)
			d.unresGen++
			delete(d.recheck, a)
			idn := state.Identity{Address: a, ID: ans.p.ID, UPN: ans.p.UPN, CheckedAt: now}
			if old.ID != idn.ID || old.Unknown {
				changed = true
				d.reportMerge(a, idn)
			}
			d.set(idn)
			puts = append(puts, idn)
		case errors.Is(ans.err, context.Canceled):
			continue
		case kind == presence.NotFound || kind == presence.Permanent:
			delete(d.failed, a)
			d.unresGen++
			delete(d.recheck, a)
			idn := state.Identity{Address: a, Unknown: true, CheckedAt: now, UnknownSince: now}
			if old.Unknown {
				// Unknown still: the back-off grows with how long.
				idn.UnknownSince = old.UnknownSince
				if idn.UnknownSince.IsZero() || idn.UnknownSince.After(old.CheckedAt) {
					idn.UnknownSince = old.CheckedAt
				}
			}
			if r, ok := d.reported[a]; !ok || !now.Before(r.Add(d.refresh)) {
				// Reported once per refresh: rechecks in between are quiet.
				d.reported[a] = now
				d.log.Warn("address names no Entra user; its meetings are skipped", "address", a, "err", ans.err,
					"recheck_in", d.unknownWait(idn).String())
			}
			if old.ID != "" && !old.Unknown {
				changed = true
			}
			d.set(idn)
			puts = append(puts, idn)
		default:
			f := d.failed[a]
			f.tries++
			wait := policy.Wait(ans.err, f.tries)
			f.retryAt, f.err = now.Add(wait), ans.err.Error()
			d.failed[a] = f
			d.unresGen++
			failures++
			if firstErr == nil {
				firstErr = ans.err
			}
		}
	}
	d.gauges()
	d.mu.Unlock()
	if failures > 0 {
		msg := "address lookups failed; those people wait, nobody else does"
		if forbidden(firstErr) {
			msg = "address lookups refused (403): grant the app User.Read.All with admin consent; those people wait"
		}
		d.log.Warn(msg, "failed", failures, "of", len(addrs), "err", firstErr)
	}
	if len(puts) > 0 {
		if err := d.store.PutIdentities(ctx, puts); err != nil {
			// Memory holds them; a restart looks them up again.
			d.log.Warn("keep resolved addresses", "err", err)
		}
	}
	return changed
}

// Prune notes that the addresses in named (normalised) are named at now,
// and forgets every address that none has named for ForgetAfter, but for
// those in keep (the configuration's people, never forgotten): in memory,
// then in the state. An address met since start counts from when it was
// last named (or first met); one only loaded from the state, from its last
// lookup. It returns the addresses forgotten.
func (d *Directory) Prune(ctx context.Context, now time.Time, named, keep map[string]bool) []string {
	d.mu.Lock()
	for a := range named {
		if !reObjectID.MatchString(a) {
			d.meet(a)
			d.seen[a] = now
		}
	}
	for a := range keep {
		if _, met := d.seen[a]; met {
			d.seen[a] = now // named by the configuration
		}
	}
	var gone []string
	for a, last := range d.seen {
		if !keep[a] && now.Sub(last) >= ForgetAfter {
			gone = append(gone, a)
		}
	}
	for a, idn := range d.known {
		if _, met := d.seen[a]; met || keep[a] {
			continue
		}
		last := idn.CheckedAt
		if last.IsZero() {
			last = d.since
		}
		if now.Sub(last) >= ForgetAfter {
			gone = append(gone, a)
		}
	}
	for _, a := range gone {
		d.drop(a)
		delete(d.seen, a)
		delete(d.failed, a)
		d.unresGen++
		delete(d.reported, a)
		delete(d.recheck, a)
	}
	if len(gone) > 0 {
		d.gauges()
	}
	d.mu.Unlock()
	if len(gone) == 0 {
		return nil
	}
	slices.Sort(gone)
	if err := d.unstore(ctx, gone); err != nil {
		// Memory has forgotten them; the next start loads them again and
		// forgets them then.
		d.log.Warn("forget addresses no feed names", "addresses", len(gone), "err", err)
	}
	d.log.Info("addresses no feed has named for a while forgotten", "addresses", len(gone), "after", ForgetAfter.String())
	return gone
}

// forbidden reports whether Graph refused a lookup (403): the app lacks
// User.Read.All, or consent is being changed. That says nothing of the
// address: policy.Classify makes it a Retry, not unknown; the log names
// the missing permission.
func forbidden(err error) bool {
	var pe *presence.Error
	return errors.As(err, &pe) && pe.Status == 403
}

// reportMerge logs, at Info, that address turned out to name a person
// already known under other addresses: they are one presence. d.mu must be
// held.
func (d *Directory) reportMerge(address string, idn state.Identity) {
	others := slices.DeleteFunc(slices.Clone(d.byID[idn.ID]), func(a string) bool { return a == address })
	if len(others) == 0 {
		return
	}
	d.log.Info("addresses name one person; merged into one presence", "user", idn.UPN, "address", address, "also", others)
}

// Forget drops every address that maps to id: Graph answered 404 for it (a
// user deleted, perhaps re-created with a new id). They are looked up again
// at once.
func (d *Directory) Forget(ctx context.Context, id string) {
	d.mu.Lock()
	gone := slices.Clone(d.byID[id])
	for _, a := range gone {
		d.drop(a)
	}
	if len(gone) > 0 {
		d.signal()
	}
	d.gauges()
	d.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	if err := d.unstore(ctx, gone); err != nil {
		d.log.Warn("forget resolved addresses", "addresses", gone, "err", err)
	}
	d.log.Warn("Graph no longer knows this user id; looking its addresses up again", "user_id", id, "addresses", gone)
}

// unstore deletes from the state the identities of addresses, which the
// Directory has just dropped from memory. One the resolver answered again
// meanwhile is stored again: the resolver stores an answer after it sets it
// in memory, and its put may have come before this delete.
func (d *Directory) unstore(ctx context.Context, addresses []string) error {
	var err error
	if st, ok := d.store.(interface {
		DeleteIdentities(ctx context.Context, addresses []string) error
	}); ok {
		err = st.DeleteIdentities(ctx, addresses)
	} else {
		for _, a := range addresses {
			err = errors.Join(err, d.store.DeleteIdentity(ctx, a))
		}
	}
	var again []state.Identity
	d.mu.Lock()
	for _, a := range addresses {
		if idn, ok := d.known[a]; ok {
			again = append(again, idn)
		}
	}
	d.mu.Unlock()
	if len(again) > 0 {
		err = errors.Join(err, d.store.PutIdentities(ctx, again))
	}
	return err
}

// Person resolves address now if it is not known yet (an operator's
// -user), else answers from memory.
func (d *Directory) Person(ctx context.Context, address string) (string, error) {
	if id, ok := d.Lookup(address); ok {
		return id, nil
	}
	a := mailaddr.Normalize(address)
	d.Resolve(ctx, []string{a})
	if id, ok := d.Lookup(a); ok {
		return id, nil
	}
	d.mu.Lock()
	f, failed := d.failed[a]
	d.mu.Unlock()
	if failed {
		return "", errors.New(address + ": lookup failed: " + f.err)
	}
	return "", errors.New(address + ": no Entra user has this address")
}

// Unresolved is an address the directory cannot name a person for.
type Unresolved struct {
	Address string `json:"address"`
	Reason  string `json:"reason"` // "unknown", or the last lookup error
}

// UnresolvedShown is how many unresolved addresses /readyz names: the
// first, by address. Thousands of external attendees must not make a
// readiness probe's answer megabytes long.
const UnresolvedShown = 10

// UnresolvedSummary is what /readyz says of the calendar addresses that
// name nobody: how many there are, and the first UnresolvedShown of them by
// address (the status page lists more; the log names each once per
// refresh).
type UnresolvedSummary struct {
	Count int          `json:"count"`
	First []Unresolved `json:"first"`
}

// SummarizeUnresolved is all's summary for /readyz; nil when all is empty.
func SummarizeUnresolved(all []Unresolved) *UnresolvedSummary {
	if len(all) == 0 {
		return nil
	}
	return &UnresolvedSummary{Count: len(all), First: all[:min(len(all), UnresolvedShown)]}
}

// Unresolved lists the addresses met since start that name nobody yet.
func (d *Directory) Unresolved() []Unresolved {
	d.mu.Lock()
	defer d.mu.Unlock()
	if m := &d.unresolved; m.valid && m.gen == d.unresGen {
		return slices.Clone(m.out)
	}
	var out []Unresolved
	for a := range d.seen {
		if f, ok := d.failed[a]; ok {
			if idn, known := d.known[a]; !known || idn.Unknown {
				out = append(out, Unresolved{a, f.err})
			}
			continue
		}
		if idn, ok := d.known[a]; ok && idn.Unknown {
			out = append(out, Unresolved{a, "unknown"})
		}
	}
	slices.SortFunc(out, func(x, y Unresolved) int { return strings.Compare(x.Address, y.Address) })
	d.unresolved.valid, d.unresolved.gen, d.unresolved.out = true, d.unresGen, out
	return slices.Clone(out)
}

// gauges refreshes the identity gauges. d.mu must be held.
func (d *Directory) gauges() {
	var resolved, unknown, pending float64
	for a := range d.seen {
		idn, ok := d.known[a]
		switch {
		case !ok:
			pending++
		case idn.Unknown:
			unknown++
		default:
			resolved++
		}
	}
	d.metrics.Addresses.WithLabelValues("resolved").Set(resolved)
	d.metrics.Addresses.WithLabelValues("unknown").Set(unknown)
	d.metrics.Addresses.WithLabelValues("pending").Set(pending)
}
