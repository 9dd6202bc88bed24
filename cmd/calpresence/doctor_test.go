package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/pgtest"
	"github.com/calpresence/calpresence/leader"
	"github.com/calpresence/calpresence/state/pg"
)

// doctorEnv is a fake Entra + Graph that knows alice and grants both roles
// calpresence needs, a feed server with one meeting of alice's (/feed.ics;
// anything else is 404) and a directory for the configuration and state.
type doctorEnv struct {
	g       *graphtest.Server
	feedURL string
	dir     string
}

func newDoctorEnv(t *testing.T) *doctorEnv {
	t.Helper()
	g := graphtest.NewServer(t, graphtest.WithUsers(graphtest.User{ID: aliceID, UserPrincipalName: "alice@contoso.com", Mail: "alice@contoso.com"}))
	g.SetAppRoles("Presence.ReadWrite.All", "User.Read.All")
	start := time.Now().Add(time.Hour).UTC()
	feed := fmt.Sprintf("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//doctor//EN\r\nBEGIN:VEVENT\r\nUID:doctor-1\r\nDTSTAMP:20260101T000000Z\r\n"+
		"DTSTART:%s\r\nDTEND:%s\r\nSUMMARY:Zoom call\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
		start.Format("20060102T150405Z"), start.Add(time.Hour).Format("20060102T150405Z"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/feed.ics" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/calendar")
		io.WriteString(w, feed)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("DOCTOR_SECRET", string(g.Config().ClientSecret))
	return &doctorEnv{g: g, feedURL: srv.URL, dir: t.TempDir()}
}

// doctorConfig is what a test changes in the configuration doctorEnv
// writes.
type doctorConfig struct {
	users   string // the zoom source's users (YAML flow list)
	sources string // more sources, YAML list items
	state   string // the state block (default: a bbolt file in the directory)
	extra   string // more top-level YAML
	dryRun  bool
	// authority replaces graph.authority_host (default: the fake's).
	authority string
}

// write writes the configuration and returns its path.
func (e *doctorEnv) write(t *testing.T, c doctorConfig) string {
	t.Helper()
	if c.users == "" {
		c.users = "[alice@contoso.com]"
	}
	if c.state == "" {
		c.state = "  path: " + filepath.Join(e.dir, "state.db")
	}
	gc := e.g.Config()
	if c.authority != "" {
		gc.AuthorityHost = c.authority
	}
	cfg := fmt.Sprintf(`graph:
  tenant_id: %s
  client_id: %s
  client_secret: ${DOCTOR_SECRET}
  endpoint: %s
  authority_host: %s
  ca_file: %s
  dry_run: %t
state:
%s
server:
  listen: ""
sources:
  - name: zoom
    url: %s/feed.ics
    users: %s
%s
%s`, gc.TenantID, gc.ClientID, gc.Endpoint, gc.AuthorityHost, gc.CAFile, c.dryRun, c.state, e.feedURL, c.users, c.sources, c.extra)
	path := filepath.Join(e.dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// doctorLines runs doctor and returns its lines, stderr and exit status.
func doctorLines(t *testing.T, cfgPath string) ([]string, string, int) {
	t.Helper()
	stdout, stderr, code := runCLI(t, nil, "doctor", "-config", cfgPath)
	t.Logf("calpresence doctor: exit %d\n%s%s", code, stdout, stderr)
	return strings.Split(strings.TrimRight(stdout, "\n"), "\n"), stderr, code
}

// wantLines checks that every prefix in want starts one of lines.
func wantLines(t *testing.T, lines []string, want ...string) {
	t.Helper()
	for _, w := range want {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, w)
		}
		if !found {
			t.Errorf("doctor printed no line starting %q:\n%s", w, strings.Join(lines, "\n"))
		}
	}
}

// TestDoctorAllPass: a sound deployment gets a ✓ for every check and exit
// 0.
func TestDoctorAllPass(t *testing.T) {
	e := newDoctorEnv(t)
	t.Setenv("DOCTOR_ZOOM_SECRET", "zoom-secret")
	cfgPath := e.write(t, doctorConfig{extra: "webhooks:\n  listen: 127.0.0.1:0\n  zoom:\n    secret_token: ${DOCTOR_ZOOM_SECRET}\n"})
	lines, stderr, code := doctorLines(t, cfgPath)
	if code != 0 {
		t.Fatalf("doctor exit %d; want 0\nstdout:\n%s\nstderr: %s", code, strings.Join(lines, "\n"), stderr)
	}
	wantLines(t, lines,
		"✓ graph: token roles Presence.ReadWrite.All, User.Read.All",
		"✓ users: 1 configured user resolved",
		"✓ read-back: alice@contoso.com shows ",
		"✓ source zoom: fetched and parsed: 1 busy occurrence in the next 36h (1 person)",
		"✓ webhooks: zoom secret present",
		"✓ state: no file at "+filepath.Join(e.dir, "state.db")+" yet; its directory is writable")
	for _, l := range lines {
		if !strings.HasPrefix(l, "✓ ") {
			t.Errorf("doctor line %q; want every line to pass", l)
		}
	}
	if len(lines) != 6 {
		t.Errorf("doctor printed %d lines; want 6, one per check", len(lines))
	}
	// Nothing was set, and no state file was left behind.
	if calls := e.g.PresenceCalls(); len(calls) != 0 {
		t.Errorf("doctor made presence calls: %+v", calls)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "state.db")); !os.IsNotExist(err) {
		t.Errorf("doctor left a state file (stat: %v)", err)
	}
}

// TestDoctorLacksPresenceRole: a token without Presence.ReadWrite.All is
// exit 1, the role named with the way to grant it.
func TestDoctorLacksPresenceRole(t *testing.T) {
	e := newDoctorEnv(t)
	e.g.SetAppRoles("User.Read.All")
	lines, stderr, code := doctorLines(t, e.write(t, doctorConfig{}))
	if code != 1 {
		t.Errorf("doctor exit %d; want 1", code)
	}
	wantLines(t, lines, "✗ graph: token lacks Presence.ReadWrite.All: grant it (API permissions → Microsoft Graph → Application → Presence.ReadWrite.All) and consent")
	if want := "calpresence doctor: 1 check failed: graph\n"; stderr != want {
		t.Errorf("doctor stderr = %q; want %q", stderr, want)
	}
}

// TestDoctorTokenWithoutRoles: a JWT with no roles grants nothing (exit 1,
// both roles named); a token that is not a JWT is said to be one whose
// roles cannot be read, not taken to grant nothing (or everything).
func TestDoctorTokenWithoutRoles(t *testing.T) {
	e := newDoctorEnv(t)
	e.g.SetAppRoles() // nil is opaque; an empty list is a JWT with no roles
	lines, _, code := doctorLines(t, e.write(t, doctorConfig{}))
	if code != 1 {
		t.Errorf("doctor with a token granting no roles: exit %d; want 1", code)
	}
	wantLines(t, lines, "✗ graph: token lacks Presence.ReadWrite.All, User.Read.All: grant them")

	opaque := graphtest.NewServer(t, graphtest.WithUsers(graphtest.User{ID: aliceID, UserPrincipalName: "alice@contoso.com"}))
	e.g = opaque
	t.Setenv("DOCTOR_SECRET", string(opaque.Config().ClientSecret))
	lines, stderr, code := doctorLines(t, e.write(t, doctorConfig{}))
	if code != 0 {
		t.Errorf("doctor with an opaque token: exit %d; want 0\nstderr: %s", code, stderr)
	}
	wantLines(t, lines, "– graph: roles not read: the access token is not a JWT whose claims can be read", "✓ users:", "✓ read-back:")
}

// TestDoctorFeedFails: a feed that cannot be read is exit 1, the source
// named; the others are still checked.
func TestDoctorFeedFails(t *testing.T) {
	e := newDoctorEnv(t)
	lines, stderr, code := doctorLines(t, e.write(t, doctorConfig{sources: fmt.Sprintf("  - name: broken\n    url: %s/gone.ics\n    users: [alice@contoso.com]\n", e.feedURL)}))
	if code != 1 {
		t.Errorf("doctor exit %d; want 1", code)
	}
	wantLines(t, lines, "✓ source zoom: fetched and parsed: 1 busy occurrence", "✗ source broken: ")
	if !strings.Contains(stderr, "1 check failed: source broken") {
		t.Errorf("doctor stderr = %q; want it to name source broken", stderr)
	}
}

// TestDoctorUnknownUser: a configured user Entra does not know is exit 1,
// the user named; the read-back uses one who resolved.
func TestDoctorUnknownUser(t *testing.T) {
	e := newDoctorEnv(t)
	lines, stderr, code := doctorLines(t, e.write(t, doctorConfig{users: "[nobody@contoso.com, alice@contoso.com]"}))
	if code != 1 {
		t.Errorf("doctor exit %d; want 1", code)
	}
	wantLines(t, lines, "✗ user nobody@contoso.com: Entra has no user with this user principal name, mail or proxy address",
		"✓ read-back: alice@contoso.com shows ")
	if !strings.Contains(stderr, "1 check failed: user nobody@contoso.com") {
		t.Errorf("doctor stderr = %q; want it to name nobody@contoso.com", stderr)
	}
}

// TestDoctorDryRun: with graph.dry_run the Graph checks are not made (and
// say why); the rest pass.
func TestDoctorDryRun(t *testing.T) {
	e := newDoctorEnv(t)
	lines, stderr, code := doctorLines(t, e.write(t, doctorConfig{dryRun: true}))
	if code != 0 {
		t.Errorf("doctor exit %d; want 0\nstderr: %s", code, stderr)
	}
	wantLines(t, lines, "– graph: not checked: graph.dry_run is set", "– users: not checked", "– read-back: not checked",
		"✓ source zoom:", "– webhooks: not configured", "– state: not checked: a dry run keeps its state in memory")
	if n := len(e.g.Calls()); n != 0 {
		t.Errorf("doctor in dry run sent %d requests to the fake", n)
	}
}

// TestDoctorSelfservice: with selfservice configured, doctor fetches the
// tenant's discovery document where sign-in reads it: a ✓ with the issuer
// when the authority answers; a ✗ saying what failed, and exit 1, when
// nothing listens there. In dry run, so that the Graph checks ask the
// authority nothing and the fake's discovery requests are this check's.
func TestDoctorSelfservice(t *testing.T) {
	e := newDoctorEnv(t)
	key := filepath.Join(e.dir, "cookie")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	self := fmt.Sprintf("selfservice:\n  listen: 127.0.0.1:0\n  url: http://127.0.0.1:8082\n  cookie_key_file: %s\n", key)
	tenant := e.g.TenantID()

	t.Run("answers", func(t *testing.T) {
		lines, stderr, code := doctorLines(t, e.write(t, doctorConfig{dryRun: true, extra: self}))
		if code != 0 {
			t.Errorf("doctor exit %d; want 0\nstderr: %s", code, stderr)
		}
		url := e.g.AuthorityHost() + tenant + "/v2.0/.well-known/openid-configuration"
		wantLines(t, lines, fmt.Sprintf("✓ selfservice: the authority answers the discovery document %s (issuer %s)", url, e.g.Issuer(tenant)))
		calls := e.g.CallsOp(graphtest.OpOpenID)
		if len(calls) != 1 || calls[0].Path != "/"+tenant+"/v2.0/.well-known/openid-configuration" || calls[0].Status != http.StatusOK {
			t.Errorf("the fake's discovery requests = %+v; want one GET of /%s/v2.0/.well-known/openid-configuration answered 200", calls, tenant)
		}
	})

	t.Run("closed port", func(t *testing.T) {
		closed := "https://" + freeAddr(t) + "/"
		lines, stderr, code := doctorLines(t, e.write(t, doctorConfig{dryRun: true, extra: self, authority: closed}))
		if code != 1 || !strings.Contains(stderr, "1 check failed: selfservice") {
			t.Errorf("doctor exit %d, stderr %q; want 1 naming the selfservice check", code, stderr)
		}
		wantLines(t, lines, "✗ selfservice: GET "+closed+tenant+"/v2.0/.well-known/openid-configuration: ")
		for _, l := range lines {
			if strings.HasPrefix(l, "✗ selfservice") && !strings.Contains(l, "connection refused") {
				t.Errorf("the failed line does not say what failed (connection refused): %s", l)
			}
		}
	})

	t.Run("unknown tenant", func(t *testing.T) {
		cfgPath := e.write(t, doctorConfig{dryRun: true, extra: self})
		cfg, err := os.ReadFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		cfg = []byte(strings.Replace(string(cfg), "tenant_id: "+tenant, "tenant_id: fabrikam.onmicrosoft.com", 1))
		if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
			t.Fatal(err)
		}
		lines, _, code := doctorLines(t, cfgPath)
		if code != 1 {
			t.Errorf("doctor exit %d; want 1", code)
		}
		wantLines(t, lines, "✗ selfservice: GET "+e.g.AuthorityHost()+"fabrikam.onmicrosoft.com/v2.0/.well-known/openid-configuration: ")
		for _, l := range lines {
			if strings.HasPrefix(l, "✗ selfservice") && !strings.Contains(l, "AADSTS90002") {
				t.Errorf("the failed line does not carry the authority's answer (AADSTS90002, tenant not found): %s", l)
			}
		}
	})
}

// TestDoctorNextToDaemon: the state file a running daemon holds is
// reported as held, not waited for or opened; the daemon goes on.
func TestDoctorNextToDaemon(t *testing.T) {
	e := newDoctorEnv(t)
	cfgPath := e.write(t, doctorConfig{})
	// The daemon serves on a free port: its "serving" line says it has
	// opened the state.
	cfg, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, []byte(strings.Replace(string(cfg), `listen: ""`, `listen: "`+freeAddr(t)+`"`, 1)), 0o600)
	d := startDaemon(t, cfgPath)
	select {
	case <-d.addr:
	case err := <-d.done:
		t.Fatalf("daemon exited: %v\n%s", err, d.log())
	case <-time.After(20 * time.Second):
		t.Fatalf("daemon did not serve within 20s\n%s", d.log())
	}
	lines, stderr, code := doctorLines(t, cfgPath)
	if code != 0 {
		t.Errorf("doctor exit %d; want 0\nstderr: %s", code, stderr)
	}
	wantLines(t, lines, "✓ state: "+filepath.Join(e.dir, "state.db")+" is writable and held by the running daemon")
	select {
	case err := <-d.done:
		t.Errorf("the daemon exited while doctor ran: %v", err)
	default:
	}
}

// TestDoctorPostgres: with the state in PostgreSQL, a write is made and
// rolled back (a table created, before the daemon has made its own), and
// doctor says which replica leads.
func TestDoctorPostgres(t *testing.T) {
	dsn := pgtest.DB(t)
	e := newDoctorEnv(t)
	t.Setenv("DOCTOR_DSN", dsn)
	cfgPath := e.write(t, doctorConfig{state: "  driver: postgres\n  dsn: ${DOCTOR_DSN}"})
	lines, stderr, code := doctorLines(t, cfgPath)
	if code != 0 {
		t.Errorf("doctor on an empty database: exit %d; want 0\nstderr: %s", code, stderr)
	}
	wantLines(t, lines, "✓ state: database ", "✓ leader: the lock is free: no replica leads now")
	if !slices.ContainsFunc(lines, func(l string) bool {
		return strings.HasSuffix(l, "has no calpresence tables yet; the role can create them (a table created and rolled back)")
	}) {
		t.Errorf("doctor on an empty database; want it to say the tables can be created:\n%s", strings.Join(lines, "\n"))
	}

	// The tables as the daemon creates them, and a replica that leads.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := pg.Open(ctx, dsn, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	el, err := leader.New(dsn, leader.Options{ID: "replica-1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	leading := make(chan struct{})
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() {
		ran <- el.Run(runCtx, func(ctx context.Context) error { close(leading); <-ctx.Done(); return nil })
	}()
	defer func() { stop(); <-ran; el.Close() }()
	select {
	case <-leading:
	case <-time.After(20 * time.Second):
		t.Fatal("replica-1 did not lead within 20s")
	}
	lines, stderr, code = doctorLines(t, cfgPath)
	if code != 0 {
		t.Errorf("doctor: exit %d; want 0\nstderr: %s", code, stderr)
	}
	wantLines(t, lines, "✓ leader: replica replica-1 leads")
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasSuffix(l, "is writable (a write rolled back)") }) {
		t.Errorf("doctor; want it to say a write was rolled back:\n%s", strings.Join(lines, "\n"))
	}
	// Nothing stayed.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var rows int
	var probe bool
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM sessions), to_regclass('calpresence_doctor') IS NOT NULL`).Scan(&rows, &probe); err != nil {
		t.Fatal(err)
	}
	if rows != 0 || probe {
		t.Errorf("after doctor: %d sessions, probe table left: %v; want none", rows, probe)
	}
}

// TestDoctorUsage: usage and configuration errors are exit 2.
func TestDoctorUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"doctor", "-config", "testdata/plan.yaml", "extra"}, `unexpected argument "extra"`},
		{[]string{"doctor", "-frobnicate"}, "flag provided but not defined: -frobnicate"},
		{[]string{"doctor", "-config", "testdata/nope.yaml"}, "nope.yaml"},
		{[]string{"doctor", "-config", "testdata/invalid.yaml"}, "invalid.yaml:8: sources[0].name"},
	} {
		stdout, stderr, code := runCLI(t, nil, tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("calpresence %v: exit %d, stderr %q; want exit 2 containing %q", tt.args, code, stderr, tt.want)
		}
		if stdout != "" {
			t.Errorf("calpresence %v printed checks: %q", tt.args, stdout)
		}
	}
	if _, stderr, code := runCLI(t, nil, "doctor", "-h"); code != 0 || !strings.Contains(stderr, "Usage: calpresence doctor [-config FILE]") {
		t.Errorf("doctor -h: exit %d, stderr %q; want 0 and the usage", code, stderr)
	}
}

// TestDoctorWebexToken: with Webex Calling configured, a token Webex
// refuses is exit 1, the check named; one it accepts passes.
func TestDoctorWebexToken(t *testing.T) {
	e := newDoctorEnv(t)
	webex := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/people/me" || r.Header.Get("Authorization") != "Bearer good-token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, `{"emails":["bot@contoso.com"]}`)
	}))
	defer webex.Close()
	tokenFile := filepath.Join(e.dir, "webex-token")
	cfgPath := e.write(t, doctorConfig{extra: fmt.Sprintf("webhooks:\n  listen: 127.0.0.1:0\n  webex:\n    secret: s\n    access_token_file: %s\n    api: %s/v1\n", tokenFile, webex.URL)})

	os.WriteFile(tokenFile, []byte("stale-token\n"), 0o600)
	lines, stderr, code := doctorLines(t, cfgPath)
	if code != 1 {
		t.Errorf("doctor with a refused Webex token: exit %d; want 1", code)
	}
	wantLines(t, lines, "✓ webhooks: webex secret present", "✗ webex: Webex refuses the access token in "+tokenFile+" (GET "+webex.URL+"/v1/people/me: 401)")
	if want := "calpresence doctor: 1 check failed: webex\n"; stderr != want {
		t.Errorf("doctor stderr = %q; want %q", stderr, want)
	}

	os.WriteFile(tokenFile, []byte("good-token\n"), 0o600)
	lines, stderr, code = doctorLines(t, cfgPath)
	if code != 0 {
		t.Errorf("doctor with a good Webex token: exit %d; want 0\nstderr: %s", code, stderr)
	}
	wantLines(t, lines, "✓ webex: the access token in "+tokenFile+" is accepted")
}
