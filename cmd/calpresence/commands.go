package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph"
	"github.com/calpresence/calpresence/server"
	"github.com/calpresence/calpresence/sources"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/sync"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

// stateLockTimeout bounds the wait for the state file: a resync or clear
// next to a daemon that holds it must fail fast, never hang.
const stateLockTimeout = 2 * time.Second

func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, usageError{err}
	}
	return cfg, nil
}

// logFlags adds -log-format and -log-level to fs. A value they do not
// know fails the parse (a usage error, exit 2), never quietly becomes the
// default.
func logFlags(fs *flag.FlagSet) func(w io.Writer) *slog.Logger {
	format, lv := "auto", slog.LevelInfo
	fs.Func("log-format", "log format: json, text, or auto (json unless stderr is a terminal) (default auto)", func(s string) error {
		if s != "json" && s != "text" && s != "auto" {
			return fmt.Errorf("want json, text or auto (got %q)", s)
		}
		format = s
		return nil
	})
	fs.Func("log-level", "log level: debug, info, warn, error (default info)", func(s string) error {
		if err := lv.UnmarshalText([]byte(s)); err != nil {
			return fmt.Errorf("want debug, info, warn or error (got %q)", s)
		}
		return nil
	})
	return func(w io.Writer) *slog.Logger {
		opts := &slog.HandlerOptions{Level: lv}
		json := format == "json"
		if format == "auto" {
			json = !isTerminal(w)
		}
		if json {
			return slog.New(slog.NewJSONHandler(w, opts))
		}
		return slog.New(slog.NewTextHandler(w, opts))
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// deps are the worker's collaborators, built from the configuration.
type deps struct {
	store   sync.Store
	feeds   sync.FeedCache
	closeFn func() error
	graph   *graph.Client
}

// openDeps opens the state file (in memory for a dry run) and the Graph
// client.
func openDeps(ctx context.Context, cfg *config.Config, log *slog.Logger) (*deps, error) {
	d := &deps{closeFn: func() error { return nil }}
	if cfg.Graph.DryRun {
		d.store = sync.NewMemStore()
	} else {
		st, err := state.Open(cfg.State.Path, stateLockTimeout)
		if err != nil {
			return nil, err // names the file already
		}
		d.store, d.feeds, d.closeFn = st, st, st.Close
		// Copies of feeds no longer configured are of no use.
		names := make([]string, len(cfg.Sources))
		for i, s := range cfg.Sources {
			names[i] = s.Name
		}
		if err := st.DeleteFeedsExcept(names); err != nil {
			log.Warn("drop stored copies of removed sources", "err", err)
		}
	}
	g, err := graph.New(ctx, cfg.Graph, log, graph.WithPacer(sync.NewLimiter(cfg.Graph.RateLimit, cfg.Graph.RateWindow)))
	if err != nil {
		_ = d.closeFn()
		return nil, fmt.Errorf("graph client: %w", err)
	}
	d.graph = g
	return d, nil
}

// openEngine opens the state and the Graph client and builds the worker on
// them; d.closeFn releases the state file.
func openEngine(ctx context.Context, cfg *config.Config, log *slog.Logger, m *sync.Metrics) (eng *sync.Engine, d *deps, err error) {
	d, err = openDeps(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	fetcher, err := newFetcher(cfg)
	if err != nil {
		_ = d.closeFn()
		return nil, nil, usageError{err}
	}
	eng, err = sync.New(sync.Options{Config: cfg, Presence: d.graph, Store: d.store, Feeds: d.feeds,
		Fetcher: fetcher, Logger: log, Metrics: m, Authenticated: d.graph.Authenticated})
	if err != nil {
		_ = d.closeFn()
		return nil, nil, usageError{err}
	}
	return eng, d, nil
}

func newFetcher(cfg *config.Config) (*sources.Fetcher, error) {
	f := sources.NewFetcher(cfg.Schedule.FetchTimeout, cfg.Schedule.MaxFeedBytes)
	f.UserAgent = "calpresence/" + versionString()
	if cfg.Schedule.CAFile != "" {
		if err := f.TrustCAFile(cfg.Schedule.CAFile); err != nil {
			return nil, fmt.Errorf("schedule.ca_file: %w", err)
		}
	}
	return f, nil
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("run", "[-config FILE]", stderr)
	mkLog := logFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if err := preflight(ctx, cfg); err != nil {
		return err
	}
	log := mkLog(stderr)
	token, err := adminToken(cfg)
	if err != nil {
		return usageError{err}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	eng, d, err := openEngine(ctx, cfg, log, sync.NewMetrics(reg))
	if err != nil {
		return recoveryHint(err, args)
	}
	defer d.closeFn()
	log.Info("calpresence starting", "version", versionString(), "sources", len(cfg.Sources), "dry_run", cfg.Graph.DryRun, "listen", cfg.Server.Listen)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srvErr := make(chan error, 1)
	if cfg.Server.Listen != "" {
		go func() {
			srvErr <- server.Serve(ctx, cfg.Server.Listen, server.Handler(eng, reg, token, log), cfg.Server.ShutdownTimeout, func(a net.Addr) {
				log.Info("serving", "addr", a.String())
			})
		}()
	} else {
		srvErr <- nil
	}
	go authenticate(ctx, d.graph, log)
	runErr := make(chan error, 1)
	go func() { runErr <- eng.Run(ctx) }()
	wh := startWebhooks(ctx, cfg, eng, reg, log) // webhooks.go
	select {
	case err = <-runErr:
		cancel()
		if serr := <-srvErr; err == nil {
			err = serr
		}
	case err = <-srvErr:
		// The listener failed (port taken): stop the worker too.
		cancel()
		<-runErr
	case err = <-wh.err:
		cancel()
		<-runErr
	}
	wh.wait()
	log.Info("calpresence stopped")
	return err
}

// authenticate asks Graph's authority for a token at start, and again with
// back-off until it answers: a broken secret shows at once, in the log and
// as /readyz 503, not at the first meeting.
func authenticate(ctx context.Context, g *graph.Client, log *slog.Logger) {
	for wait := time.Second; ; wait = min(2*wait, 5*time.Minute) {
		err := g.Authenticate(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		log.Error("no token from Graph's authority; not ready until there is one", "err", err, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// adminToken reads server.admin_token_file ("" when none is configured).
func adminToken(cfg *config.Config) (string, error) {
	if cfg.Server.AdminTokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(cfg.Server.AdminTokenFile)
	if err != nil {
		return "", fmt.Errorf("server.admin_token_file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		// An empty token would quietly turn the check off.
		return "", fmt.Errorf("server.admin_token_file: %s is empty", cfg.Server.AdminTokenFile)
	}
	return token, nil
}

// errNoDaemon means no daemon answered on server.listen.
var errNoDaemon = errors.New("no daemon listening")

// askDaemon posts an admin action to a daemon running with the same
// configuration. It returns errNoDaemon when nothing listens there.
func askDaemon(ctx context.Context, cfg *config.Config, path string, req server.ActionRequest) (*server.ActionResponse, error) {
	if cfg.Server.Listen == "" {
		return nil, errNoDaemon
	}
	host, port, err := net.SplitHostPort(cfg.Server.Listen)
	if err != nil {
		return nil, errNoDaemon
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	// The daemon needs the token from every caller when one is configured
	// (DESIGN "Admin surface"): a token file we cannot read is an error
	// here, not a request sent without it.
	token, err := adminToken(cfg)
	if err != nil {
		return nil, usageError{err}
	}
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+net.JoinHostPort(host, port)+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	if token != "" {
		hreq.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Minute}).Do(hreq)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, errNoDaemon
		}
		return nil, fmt.Errorf("ask daemon: %w", err)
	}
	defer resp.Body.Close()
	var out server.ActionResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("ask daemon: HTTP %d: unreadable answer: %w", resp.StatusCode, err)
	}
	if out.Error != "" {
		return &out, errors.New(out.Error)
	}
	if resp.StatusCode != http.StatusOK {
		return &out, fmt.Errorf("ask daemon: HTTP %d", resp.StatusCode)
	}
	return &out, nil
}

func printReports(w io.Writer, reports []server.ActionReport, dryRun bool) {
	if len(reports) == 0 {
		fmt.Fprintln(w, "no presence changes")
		return
	}
	prefix := ""
	if dryRun {
		prefix = "would "
	}
	for _, r := range reports {
		line := fmt.Sprintf("%s%s %s (%s)", prefix, r.Op, r.User, r.Reason)
		if r.Op == sync.OpSet {
			line += fmt.Sprintf(" %s for %s", r.Activity, r.Expiration)
		}
		if r.Error != "" {
			line += ": FAILED: " + r.Error
		}
		fmt.Fprintln(w, line)
	}
}

func cmdResync(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("resync", "[-config FILE] [-source NAME]... [-user USER]... [-dry-run]", stderr)
	var srcs, users stringList
	fs.Var(&srcs, "source", "resync only this source (repeatable)")
	fs.Var(&users, "user", "change only this user's presence (repeatable)")
	dryRun := fs.Bool("dry-run", false, "show the presence calls without making them")
	mkLog := logFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	for _, name := range srcs {
		if _, ok := cfg.SourceByName(name); !ok {
			return usagef("-source: no source named %q in %s", name, *cfgPath)
		}
	}
	req := server.ActionRequest{Sources: srcs, Users: users, DryRun: *dryRun}
	resp, err := askDaemon(ctx, cfg, "/-/resync", req)
	if !errors.Is(err, errNoDaemon) {
		if resp != nil {
			printReports(stdout, resp.Actions, *dryRun)
		}
		return err
	}
	// No daemon: one full pass here.
	if *dryRun {
		cfg.Graph.DryRun = true
	}
	eng, d, err := openEngine(ctx, cfg, mkLog(stderr), nil)
	if err != nil {
		return recoveryHint(err, args)
	}
	defer d.closeFn()
	results, err := eng.Resync(ctx, sync.ResyncRequest{Sources: srcs, Users: users, DryRun: *dryRun})
	reports := server.Reports(results)
	printReports(stdout, reports, *dryRun)
	for _, r := range reports {
		if r.Error != "" && err == nil {
			err = errors.New("some presence calls failed")
		}
	}
	return err
}

func cmdClear(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("clear", "[-config FILE] (-user USER... | -all)", stderr)
	var users stringList
	fs.Var(&users, "user", "clear this user's presence session (repeatable)")
	all := fs.Bool("all", false, "clear every session calpresence holds")
	mkLog := logFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (len(users) == 0) == !*all {
		return usagef("set one of -user or -all")
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	resp, err := askDaemon(ctx, cfg, "/-/clear", server.ActionRequest{Users: users, All: *all})
	if !errors.Is(err, errNoDaemon) {
		if resp != nil {
			printReports(stdout, resp.Actions, false)
		}
		return err
	}
	eng, d, err := openEngine(ctx, cfg, mkLog(stderr), nil)
	if err != nil {
		return recoveryHint(err, args)
	}
	defer d.closeFn()
	results, err := eng.Clear(ctx, users, *all)
	printReports(stdout, server.Reports(results), false)
	return err
}

// planLine is one line of `plan -output json` (DESIGN "Command line").
type planLine struct {
	User         string `json:"user"`
	Source       string `json:"source"`
	UID          string `json:"uid"`
	RecurrenceID string `json:"recurrence_id"`
	Summary      string `json:"summary"`
	Start        string `json:"start"`
	End          string `json:"end"`
	Availability string `json:"availability"`
	Activity     string `json:"activity"`
}

func utc(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func cmdPlan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("plan", "[-config FILE] [-from T] [-to T] [-source NAME]... [-user USER]... [-output table|json]", stderr)
	from := fs.String("from", "", "window start, RFC 3339 (default now)")
	to := fs.String("to", "", "window end, RFC 3339 (default now + schedule.horizon)")
	var srcs, users stringList
	fs.Var(&srcs, "source", "only this source (repeatable)")
	fs.Var(&users, "user", "only this user (repeatable)")
	output := fs.String("output", "table", "output format: table or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *output != "table" && *output != "json" {
		return usagef("-output must be table or json (got %q)", *output)
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	req := sync.PlanRequest{From: time.Now().Truncate(time.Second), Sources: srcs, Users: users}
	// Calendar data a feed loses is named on stderr; it does not change the
	// exit status (the feed was read).
	req.Dropped = func(source, warning string) {
		fmt.Fprintf(stderr, "warning: source %q: %s\n", source, warning)
	}
	if *from != "" {
		if req.From, err = time.Parse(time.RFC3339, *from); err != nil {
			return usagef("-from: %v", err)
		}
	}
	req.To = req.From.Add(cfg.Schedule.Horizon)
	if *to != "" {
		if req.To, err = time.Parse(time.RFC3339, *to); err != nil {
			return usagef("-to: %v", err)
		}
	}
	if !req.To.After(req.From) {
		return usagef("-to must be after -from")
	}
	fetcher, err := newFetcher(cfg)
	if err != nil {
		return usageError{err}
	}
	matches, planErr := sync.Plan(ctx, cfg, fetcher, req)
	if matches == nil && planErr != nil && !isFeedError(planErr) {
		return usageError{planErr}
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		for _, m := range matches {
			line := planLine{User: m.User, Source: m.Source, UID: m.Occ.UID, Summary: m.Occ.Summary,
				Start: utc(m.Occ.Start), End: utc(m.Occ.End), Availability: m.Pair.Availability, Activity: m.Pair.Activity}
			if !m.Occ.RecurrenceID.IsZero() {
				line.RecurrenceID = utc(m.Occ.RecurrenceID)
			}
			if err := enc.Encode(line); err != nil {
				return err
			}
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "START\tEND\tUSER\tSOURCE\tPRESENCE\tSUMMARY")
		for _, m := range matches {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/%s\t%s\n", utc(m.Occ.Start), utc(m.Occ.End), m.User, m.Source,
				m.Pair.Availability, m.Pair.Activity, oneLine(m.Occ.Summary))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return planErr
}

// isFeedError reports whether err is about reading feeds (exit 1) rather
// than the request (exit 2). Plan names each failed source.
func isFeedError(err error) bool { return errors.As(err, new(*sync.SourceError)) }

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

func cmdValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("validate", "[-config FILE]", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	// What run needs besides a valid file, checked the same way run
	// checks it, contacting nothing.
	if err := preflight(ctx, cfg); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok: %s\n", *cfgPath, cfg.Summary())
	return nil
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func cmdVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "calpresence %s %s %s/%s\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
