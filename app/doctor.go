package app

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	neturl "net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph"
	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/leader"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/selfservice"
	"github.com/calpresence/calpresence/state/bolt"
	"github.com/calpresence/calpresence/sync/engine"
)

// CheckStatus is the outcome of one of Doctor's checks.
type CheckStatus int

// Outcomes of a check.
const (
	CheckPassed  CheckStatus = iota // ✓
	CheckFailed                     // ✗: Detail says what to do
	CheckSkipped                    // –: not checked, Detail says why
)

// Mark is the status as the report prints it: ✓, ✗ or –.
func (s CheckStatus) Mark() string {
	switch s {
	case CheckPassed:
		return "✓"
	case CheckFailed:
		return "✗"
	}
	return "–"
}

// Check is one line of Doctor's report.
type Check struct {
	Status CheckStatus
	// Name is what was checked: "graph", "users", "user <address>",
	// "read-back", "source <name>", "webhooks", "webex", "state", "leader".
	Name string
	// Detail is what was found; for a failure, also what to do.
	Detail string
}

// String is the line `calpresence doctor` prints, e.g.
// "✗ graph: token lacks Presence.ReadWrite.All: grant it (…) and consent".
func (c Check) String() string { return c.Status.Mark() + " " + c.Name + ": " + c.Detail }

// DoctorOptions adjust Doctor.
type DoctorOptions struct {
	// Version names the build in the feeds' User-Agent.
	Version string
	// Now is the clock for the feeds' window (default time.Now).
	Now func() time.Time
	// Logger receives the Graph client's logs (default: nowhere).
	Logger *slog.Logger
}

// Doctor checks a deployment end to end, with the configuration cfg (one
// config.Load returned), and calls report with each check as it ends: the
// application roles of the Graph token, each configured user resolved, a
// read-back of one person, each source fetched and parsed once, the
// webhook secrets, Webex Calling's access token (when configured), the
// authority's discovery document for the self-service sign-in (when
// configured), the state writable and, with PostgreSQL, who holds the leader lock. It disturbs no daemon running next to it: it sets no
// presence, writes nothing that stays, and only reads a state file the
// daemon holds. With graph.dry_run the Graph checks are skipped: nothing
// would be sent there.
//
// A check that fails is reported, not returned: the error is for what
// keeps the checks from running at all, a configuration problem
// (*ConfigError).
func Doctor(ctx context.Context, cfg *config.Config, o DoctorOptions, report func(Check)) error {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	fetcher, err := NewFetcher(cfg, o.Version)
	if err != nil {
		return &ConfigError{err}
	}
	if cfg.Graph.DryRun {
		const why = "not checked: graph.dry_run is set, nothing is sent to Graph"
		report(Check{CheckSkipped, "graph", why})
		report(Check{CheckSkipped, "users", why})
		report(Check{CheckSkipped, "read-back", why})
	} else {
		g, err := newGraph(ctx, cfg, policy.WriteRate(cfg.Graph), o.Logger)
		if err != nil {
			return &ConfigError{fmt.Errorf("graph client: %w", err)}
		}
		defer g.Close()
		doctorGraph(ctx, cfg, g, report)
	}
	doctorSources(ctx, cfg, fetcher, o.Now(), report)
	report(doctorWebhooks(cfg))
	if c, ok := doctorWebex(ctx, cfg); ok {
		report(c)
	}
	if cfg.Selfservice.Enabled() {
		report(doctorSelfservice(ctx, cfg))
	}
	doctorState(ctx, cfg, report)
	return nil
}

// roleAlternatives are, for each role calpresence needs, the roles that
// grant at least as much (Graph permissions reference).
var roleAlternatives = map[string][]string{
	graph.RolePresenceReadWrite: {graph.RolePresenceReadWrite},
	graph.RoleUserRead:          {graph.RoleUserRead, "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"},
}

// roleUse says what calpresence needs each role for.
var roleUse = map[string]string{
	graph.RolePresenceReadWrite: "to set, clear and read presence",
	graph.RoleUserRead:          "to look people up by address",
}

// doctorGraph checks the token's roles, resolves every configured user and
// reads one person's presence back.
func doctorGraph(ctx context.Context, cfg *config.Config, g *graph.Client, report func(Check)) {
	roles, err := g.TokenRoles(ctx)
	switch {
	case errors.Is(err, graph.ErrOpaqueToken):
		report(Check{CheckSkipped, "graph", "roles not read: " + strings.TrimPrefix(err.Error(), "graph: ") +
			"; check in the Entra admin center that the application has " + graph.RolePresenceReadWrite + " and " + graph.RoleUserRead +
			" (API permissions → Microsoft Graph → Application), with admin consent"})
	case err != nil:
		report(Check{CheckFailed, "graph", strings.TrimPrefix(err.Error(), "graph: ") + ": check graph.tenant_id, graph.client_id and the credential (graph.auth)"})
		const why = "not checked: no token for Graph"
		report(Check{CheckSkipped, "users", why})
		report(Check{CheckSkipped, "read-back", why})
		return
	default:
		report(rolesCheck(roles))
	}

	users := cfg.ConfiguredUsers()
	if len(users) == 0 {
		const why = "none configured (sources that match attendees or organizers name people as meetings come)"
		report(Check{CheckSkipped, "users", why})
		report(Check{CheckSkipped, "read-back", "not checked: no configured user"})
		return
	}
	people, errs := resolveAll(ctx, g, users)
	first, failed := -1, 0
	for i, err := range errs {
		switch {
		case err == nil && first < 0:
			first = i
		case err != nil:
			if failed < maxUserLines {
				report(Check{CheckFailed, "user " + users[i], describeLookup(err)})
			}
			failed++
		}
	}
	switch {
	case failed == 0:
		report(Check{CheckPassed, "users", fmt.Sprintf("%d configured %s resolved", len(users), plural(len(users), "user", "users"))})
	case failed > maxUserLines:
		report(Check{CheckFailed, "users", fmt.Sprintf("%d more of the %d configured users not resolved, not listed", failed-maxUserLines, len(users))})
	}
	if first < 0 {
		report(Check{CheckSkipped, "read-back", "not checked: no configured user resolved"})
		return
	}
	report(readBack(ctx, g, users[first], people[first]))
}

// rolesCheck is the line about the token's roles.
func rolesCheck(roles []string) Check {
	var missing, uses []string
	for _, need := range []string{graph.RolePresenceReadWrite, graph.RoleUserRead} {
		if !slices.ContainsFunc(roleAlternatives[need], func(r string) bool { return slices.Contains(roles, r) }) {
			missing = append(missing, need)
			uses = append(uses, need+" "+roleUse[need])
		}
	}
	has := "none"
	if len(roles) > 0 {
		has = strings.Join(roles, ", ")
	}
	if len(missing) == 0 {
		return Check{CheckPassed, "graph", "token roles " + has}
	}
	it := "it"
	if len(missing) > 1 {
		it = "them"
	}
	return Check{CheckFailed, "graph", fmt.Sprintf("token lacks %s: grant %s (API permissions → Microsoft Graph → Application → %s) and consent; needed: %s; the token has: %s",
		strings.Join(missing, ", "), it, strings.Join(missing, ", "), strings.Join(uses, "; "), has)}
}

// resolveConcurrency bounds the lookups in flight at once.
const resolveConcurrency = 8

// maxUserLines caps the lines about users who did not resolve: a
// permission missing fails them all, and one screen says as much.
const maxUserLines = 20

// resolveAll looks up every address, a few at a time; errs[i] is nil when
// users[i] resolved to people[i].
func resolveAll(ctx context.Context, g *graph.Client, users []string) ([]presence.Person, []error) {
	people := make([]presence.Person, len(users))
	errs := make([]error, len(users))
	sem := make(chan struct{}, resolveConcurrency)
	var wg sync.WaitGroup
	for i, u := range users {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			people[i], errs[i] = g.ResolveUser(ctx, u)
		})
	}
	wg.Wait()
	return people, errs
}

// describeLookup says why an address did not resolve, and what to do.
func describeLookup(err error) string {
	var pe *presence.Error
	errors.As(err, &pe)
	switch {
	case presence.KindOf(err) == presence.NotFound:
		return "Entra has no user with this user principal name, mail or proxy address: correct it, or map the calendar address to the person with users:"
	case pe != nil && pe.Status == 403:
		return err.Error() + ": grant " + graph.RoleUserRead + " (API permissions → Microsoft Graph → Application) and consent"
	}
	return err.Error()
}

// readBack reads what Teams shows for one person.
func readBack(ctx context.Context, g *graph.Client, user string, p presence.Person) Check {
	shown, err := g.ReadPresences(ctx, []string{p.ID})
	var pe *presence.Error
	switch {
	case errors.As(err, &pe) && pe.Status == 403:
		return Check{CheckFailed, "read-back", fmt.Sprintf("%s: %v: grant %s (API permissions → Microsoft Graph → Application) and consent", user, err, graph.RolePresenceReadWrite)}
	case err != nil:
		return Check{CheckFailed, "read-back", fmt.Sprintf("%s: %v", user, err)}
	}
	s, ok := shown[p.ID]
	if !ok {
		return Check{CheckFailed, "read-back", fmt.Sprintf("%s: Graph's answer leaves %s out", user, p.ID)}
	}
	return Check{CheckPassed, "read-back", fmt.Sprintf("%s shows %s/%s", user, s.Availability, s.Activity)}
}

// doctorSources reads every source once, as `calpresence plan` does
// (engine.Plan), over the daemon's window from now.
func doctorSources(ctx context.Context, cfg *config.Config, fetcher engine.Fetcher, now time.Time, report func(Check)) {
	if len(cfg.Sources) == 0 {
		report(Check{CheckSkipped, "sources", "none configured"})
		return
	}
	dropped := map[string]int{}
	req := engine.PlanRequest{From: now, To: now.Add(cfg.Schedule.Horizon),
		Dropped: func(source, _ string) { dropped[source]++ }}
	matches, err := engine.Plan(ctx, cfg, fetcher, req)
	failed := map[string]error{}
	var other []error
	for _, e := range flatten(err) {
		if se := (*engine.SourceError)(nil); errors.As(e, &se) {
			failed[se.Source] = se.Err
		} else {
			other = append(other, e)
		}
	}
	if len(other) > 0 {
		report(Check{CheckFailed, "sources", errors.Join(other...).Error()})
		return
	}
	occs := map[string]map[string]bool{} // source → occurrences
	people := map[string]map[string]bool{}
	for _, m := range matches {
		if occs[m.Source] == nil {
			occs[m.Source], people[m.Source] = map[string]bool{}, map[string]bool{}
		}
		occs[m.Source][m.Occ.UID+"\x00"+m.Occ.RecurrenceID.String()+"\x00"+m.Occ.Start.String()] = true
		people[m.Source][m.User] = true
	}
	for _, src := range cfg.Sources {
		name := "source " + src.Name
		if err, ok := failed[src.Name]; ok {
			report(Check{CheckFailed, name, fmt.Sprintf("%v: fix the feed or sources[].url (calpresence plan -source %s shows what it gives)", err, src.Name)})
			continue
		}
		n, p := len(occs[src.Name]), len(people[src.Name])
		detail := fmt.Sprintf("fetched and parsed: %d busy %s in the next %s", n, plural(n, "occurrence", "occurrences"), span(cfg.Schedule.Horizon))
		if n > 0 {
			detail += fmt.Sprintf(" (%d %s)", p, plural(p, "person", "people"))
		}
		if d := dropped[src.Name]; d > 0 {
			detail += fmt.Sprintf("; %d %s of calendar data lost (calpresence plan -source %s names them)", d, plural(d, "piece", "pieces"), src.Name)
		}
		report(Check{CheckPassed, name, detail})
	}
}

// flatten returns the errors errors.Join joined (err itself otherwise).
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// span prints a horizon the way people write it: 36h, 90m, 1h30m.
func span(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// doctorWebhooks checks that each configured webhook has its secret.
func doctorWebhooks(cfg *config.Config) Check {
	w := cfg.Webhooks
	if w == nil {
		return Check{CheckSkipped, "webhooks", "not configured"}
	}
	var present, missing []string
	if w.Zoom != nil {
		if w.Zoom.SecretToken != "" {
			present = append(present, "zoom")
		} else {
			missing = append(missing, "webhooks.zoom: no secret token: set secret_token or secret_token_file (Zoom Marketplace → Features → Access → Secret Token)")
		}
	}
	if w.Webex != nil {
		if w.Webex.Secret != "" {
			present = append(present, "webex")
		} else {
			missing = append(missing, "webhooks.webex: no secret: set secret or secret_file (the secret the webhooks were registered with)")
		}
	}
	if len(missing) > 0 {
		return Check{CheckFailed, "webhooks", strings.Join(missing, "; ")}
	}
	return Check{CheckPassed, "webhooks", fmt.Sprintf("%s present (listening on %s)", strings.Join(present, " and ")+" "+plural(len(present), "secret", "secrets"), w.Listen)}
}

// webexTimeout bounds doctor's call to the Webex API, as the daemon's
// look-ups are bounded.
const webexTimeout = 10 * time.Second

// doctorWebex checks Webex Calling's access token, when configured
// (webhooks.webex.access_token_file; false: not configured): the file is
// readable and not empty, and Webex accepts the token (GET {api}/people/me
// answers 200). A Webex API that cannot be reached leaves the token
// unchecked, said so, not failed. The token is never printed.
func doctorWebex(ctx context.Context, cfg *config.Config) (Check, bool) {
	w := cfg.Webhooks
	if w == nil || w.Webex == nil || w.Webex.AccessTokenFile == "" {
		return Check{}, false
	}
	const name = "webex"
	file := w.Webex.AccessTokenFile
	data, err := os.ReadFile(file)
	if err != nil {
		return Check{CheckFailed, name, fmt.Sprintf("webhooks.webex.access_token_file: %v: Webex Calling events are ignored until it can be read", err)}, true
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return Check{CheckFailed, name, fmt.Sprintf("webhooks.webex.access_token_file: %s is empty: put a Webex access token with spark:people_read in it", file)}, true
	}
	api := strings.TrimRight(cmp.Or(w.Webex.API, config.DefaultWebhooks().Webex.API), "/")
	ctx, cancel := context.WithTimeout(ctx, webexTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/people/me", nil)
	if err != nil {
		return Check{CheckFailed, name, fmt.Sprintf("webhooks.webex.api: %v", err)}, true
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := (&http.Client{Timeout: webexTimeout}).Do(req)
	if err != nil {
		return Check{CheckSkipped, name, fmt.Sprintf("the access token in %s is not checked: Webex (%s) was not reached: %v", file, api, err)}, true
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch resp.StatusCode {
	case http.StatusOK:
		return Check{CheckPassed, name, fmt.Sprintf("the access token in %s is accepted (GET %s/people/me: 200)", file, api)}, true
	case http.StatusUnauthorized:
		return Check{CheckFailed, name, fmt.Sprintf("Webex refuses the access token in %s (GET %s/people/me: 401): it expired or was revoked; put a new one in the file", file, api)}, true
	case http.StatusForbidden:
		return Check{CheckFailed, name, fmt.Sprintf("Webex refuses the access token in %s (GET %s/people/me: 403): it needs the scope spark:people_read (or spark-admin:people_read)", file, api)}, true
	}
	return Check{CheckFailed, name, fmt.Sprintf("GET %s/people/me with the access token in %s: HTTP %d", api, file, resp.StatusCode)}, true
}

// selfserviceTimeout bounds doctor's fetch of the discovery document.
const selfserviceTimeout = 15 * time.Second

// doctorSelfservice checks that the authority answers the tenant's OpenID
// Connect discovery document, at the URL the self-service sign-in reads
// (selfservice.Discover): without it nobody can sign in to the page.
func doctorSelfservice(ctx context.Context, cfg *config.Config) Check {
	const name = "selfservice"
	si, err := graph.NewSignIn(cfg.Graph)
	if err != nil {
		return Check{CheckFailed, name, fmt.Sprintf("sign-in cannot be set up: %v", err)}
	}
	url := selfservice.DiscoveryURL(si.Authority, cfg.Graph.TenantID)
	ctx, cancel := context.WithTimeout(ctx, selfserviceTimeout)
	defer cancel()
	issuer, err := selfservice.Discover(ctx, si.HTTPClient, si.Authority, cfg.Graph.TenantID)
	if ue := (*neturl.Error)(nil); errors.As(err, &ue) {
		err = ue.Err // the line names the URL already
	}
	if err != nil {
		return Check{CheckFailed, name, fmt.Sprintf("GET %s: %v: nobody can sign in to the page; check graph.tenant_id, graph.cloud or graph.authority_host, and that the worker reaches the authority", url, err)}
	}
	return Check{CheckPassed, name, fmt.Sprintf("the authority answers the discovery document %s (issuer %s)", url, issuer)}
}

// doctorState checks that the state can be written: the bbolt file (or
// its directory), or the PostgreSQL database and who leads there.
func doctorState(ctx context.Context, cfg *config.Config, report func(Check)) {
	switch {
	case cfg.Graph.DryRun:
		report(Check{CheckSkipped, "state", "not checked: a dry run keeps its state in memory"})
	case cfg.State.Driver == config.DriverPostgres:
		report(doctorPostgres(ctx, string(cfg.State.DSN)))
		report(doctorLeader(ctx, string(cfg.State.DSN)))
	default:
		report(doctorBolt(ctx, cfg.State.Path))
	}
}

// doctorBolt checks the state file: writable where it is, and its records
// readable. A running daemon holds the file (bbolt's lock): that is
// reported as such, and the file is left alone.
func doctorBolt(ctx context.Context, path string) Check {
	if err := bolt.CheckWritable(path); err != nil {
		return Check{CheckFailed, "state", err.Error()}
	}
	r, err := bolt.Check(ctx, path, stateLockTimeout)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Check{CheckPassed, "state", fmt.Sprintf("no file at %s yet; its directory is writable (the daemon creates it on start)", path)}
	case errors.Is(err, bolt.ErrLocked):
		return Check{CheckPassed, "state", fmt.Sprintf("%s is writable and held by the running daemon (its records are not read meanwhile)", path)}
	case err != nil:
		return Check{CheckFailed, "state", fmt.Sprintf("%v: see calpresence state check, and README \"State recovery\"", err)}
	case !r.Clean():
		return Check{CheckFailed, "state", fmt.Sprintf("%s: %d damaged %s: calpresence state check names them", path,
			r.BadRecords()+len(r.Problems), plural(r.BadRecords()+len(r.Problems), "record or page", "records or pages"))}
	}
	n := 0
	for _, b := range r.Buckets {
		n += b.Good
	}
	return Check{CheckPassed, "state", fmt.Sprintf("%s is writable; %d %s read", path, n, plural(n, "record", "records"))}
}

// doctorTimeout bounds each of the database checks.
const doctorTimeout = 30 * time.Second

// doctorPostgres writes to the database in a transaction it rolls back,
// so that a read-only server (a hot standby) or a role without the rights
// shows, and nothing stays. It does not open the database as state/pg
// does: that would migrate the schema, under a daemon of an older release
// perhaps.
func doctorPostgres(ctx context.Context, dsn string) Check {
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx quotes the DSN, its password masked on a best-effort basis
		// only: say nothing of it (validate says why, redacted).
		return Check{CheckFailed, "state", "state.dsn does not parse (calpresence validate says why)"}
	}
	where := fmt.Sprintf("database %q on %s:%d", cc.Database, cc.Host, cc.Port)
	if strings.HasPrefix(cc.Host, "/") {
		where = fmt.Sprintf("database %q on socket %s", cc.Database, cc.Host)
	}
	cc.RuntimeParams["application_name"] = "calpresence doctor"
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return Check{CheckFailed, "state", fmt.Sprintf("%s: connect: %v", where, err)}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.Begin(ctx)
	if err != nil {
		return Check{CheckFailed, "state", fmt.Sprintf("%s: begin: %v", where, err)}
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // the point: nothing stays
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('sessions') IS NOT NULL`).Scan(&exists); err != nil {
		return Check{CheckFailed, "state", fmt.Sprintf("%s: %v", where, err)}
	}
	const fix = ": the role must own calpresence's tables, on the primary (README, \"State in PostgreSQL\")"
	if !exists {
		// The daemon's first start creates the tables: the role must be
		// able to.
		if _, err := tx.Exec(ctx, `CREATE TABLE calpresence_doctor (key bytea)`); err != nil {
			return Check{CheckFailed, "state", fmt.Sprintf("%s: no calpresence tables yet, and cannot create one: %v%s", where, err, fix)}
		}
		return Check{CheckPassed, "state", where + " has no calpresence tables yet; the role can create them (a table created and rolled back)"}
	}
	// A row in the table the worker writes before every Graph call, under
	// a key no record uses; no other session ever sees it.
	key := "calpresence-doctor:" + rand.Text()
	if _, err := tx.Exec(ctx, `INSERT INTO sessions (key, record) VALUES ($1, $2)`, []byte(key), []byte("{}")); err != nil {
		return Check{CheckFailed, "state", fmt.Sprintf("%s: cannot write: %v%s", where, err, fix)}
	}
	return Check{CheckPassed, "state", where + " is writable (a write rolled back)"}
}

// doctorLeader asks who holds the leader lock, as any replica sees it.
func doctorLeader(ctx context.Context, dsn string) Check {
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	host, _ := os.Hostname()
	el, err := leader.New(dsn, leader.Options{ID: "doctor-" + host + "-" + strconv.Itoa(os.Getpid()), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return Check{CheckFailed, "leader", err.Error()}
	}
	defer el.Close()
	id, since, err := el.Leader(ctx)
	switch {
	case err != nil:
		return Check{CheckFailed, "leader", err.Error()}
	case id == "":
		return Check{CheckPassed, "leader", "the lock is free: no replica leads now (none running, or one taking over)"}
	case since.IsZero():
		return Check{CheckPassed, "leader", fmt.Sprintf("replica %s leads", id)}
	}
	return Check{CheckPassed, "leader", fmt.Sprintf("replica %s leads (its session began %s)", id, since.UTC().Format(time.RFC3339))}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
