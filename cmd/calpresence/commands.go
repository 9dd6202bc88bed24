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
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/calpresence/calpresence/app"
	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/server"
	"github.com/calpresence/calpresence/sync/engine"
	"github.com/calpresence/calpresence/sync/plan"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

// stateLockTimeout bounds the wait for the state file when state check
// or reset opens it: next to a daemon that holds it, they fail fast.
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

// newApp builds the daemon's App for cfg (app.New) with this build's
// version.
func newApp(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...app.Option) (*app.App, error) {
	return app.New(ctx, cfg, append([]app.Option{app.WithLogger(log), app.WithVersion(versionString())}, opts...)...)
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("run", "[-config FILE]", stderr)
	mkLog := logFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// SIGHUP reloads the configuration (it would end the process otherwise).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if err := app.Preflight(ctx, cfg); err != nil {
		return err
	}
	a, err := newApp(ctx, cfg, mkLog(stderr), app.WithReloadSignals(hup))
	if err != nil {
		return recoveryHint(err, args)
	}
	defer a.Close()
	if path := os.Getenv("CALPRESENCE_CPUPROFILE"); path != "" {
		// For profiling the daemon's start or a pass (BENCHMARKS.md): a
		// CPU profile from here to the exit.
		stop, err := startCPUProfile(path)
		if err != nil {
			return err
		}
		defer stop()
	}
	return a.Run(ctx)
}

// startCPUProfile writes a CPU profile to path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("CALPRESENCE_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("CALPRESENCE_CPUPROFILE: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
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
	// (docs/operations.md): a token file we cannot read is an error
	// here, not a request sent without it.
	token, err := app.AdminToken(cfg)
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
		return &out, &daemonError{resp.StatusCode, out.Error}
	}
	if resp.StatusCode != http.StatusOK {
		return &out, &daemonError{resp.StatusCode, fmt.Sprintf("ask daemon: HTTP %d", resp.StatusCode)}
	}
	return &out, nil
}

// daemonError is the daemon's answer to an admin action that failed.
type daemonError struct {
	code int // HTTP status
	msg  string
}

func (e *daemonError) Error() string { return e.msg }

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
		if r.Op == plan.OpSet {
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
	var results []engine.Result
	err = oneOff(ctx, cfg, mkLog(stderr), args, func(ctx context.Context, eng *engine.Engine) error {
		var err error
		results, err = eng.Resync(ctx, engine.ResyncRequest{Sources: srcs, Users: users, DryRun: *dryRun})
		return err
	})
	if err != nil && results == nil {
		return err
	}
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
	var results []engine.Result
	err = oneOff(ctx, cfg, mkLog(stderr), args, func(ctx context.Context, eng *engine.Engine) error {
		var err error
		results, err = eng.Clear(ctx, users, *all)
		return err
	})
	if err != nil && results == nil {
		return err
	}
	printReports(stdout, server.Reports(results), false)
	return err
}

// oneOffEngine builds, without running it, the engine a resync or clear
// with no daemon to ask drives itself. closeApp releases the state.
// oneOff runs fn with an engine of its own, when no daemon answered: on
// the state file, whose lock keeps a daemon out meanwhile, or with several
// replicas while this process holds the lead (app.Exclusive).
func oneOff(ctx context.Context, cfg *config.Config, log *slog.Logger, args []string, fn func(ctx context.Context, eng *engine.Engine) error) error {
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return recoveryHint(err, args)
	}
	defer a.Close()
	return a.Exclusive(ctx, fn)
}

func cmdReload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("reload", "[-config FILE]", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// The file must load here too: its server.listen and admin token say
	// where the daemon is and how to ask it. One that does not is not sent.
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	resp, err := askDaemon(ctx, cfg, "/-/reload", server.ActionRequest{})
	if errors.Is(err, errNoDaemon) {
		return fmt.Errorf("no daemon answers on server.listen (%q): nothing to reload", cfg.Server.Listen)
	}
	if de := (*daemonError)(nil); errors.As(err, &de) && de.code == http.StatusUnprocessableEntity {
		return usageError{fmt.Errorf("the daemon refused the configuration and keeps the one in force:\n%s", strings.TrimPrefix(de.msg, "configuration refused: "))}
	}
	if err != nil {
		return err
	}
	printReload(stdout, *cfgPath, resp.Reload)
	return nil
}

// printReload prints what a reload changed.
func printReload(w io.Writer, path string, r *engine.ReloadReport) {
	if r == nil {
		r = &engine.ReloadReport{}
	}
	list := func(n []string) string {
		if len(n) == 0 {
			return ""
		}
		return " (" + strings.Join(n, ", ") + ")"
	}
	fmt.Fprintf(w, "reloaded %s: %d added%s, %d removed%s, %d changed%s, %d unchanged\n", path,
		len(r.Added), list(r.Added), len(r.Removed), list(r.Removed), len(r.Changed), list(r.Changed), r.Unchanged)
	if len(r.NeedsRestart) > 0 {
		fmt.Fprintf(w, "not applied until a restart: %s\n", strings.Join(r.NeedsRestart, ", "))
	}
}

// planLine is one line of `plan -output json` (README.md).
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
	req := engine.PlanRequest{From: time.Now().Truncate(time.Second), Sources: srcs, Users: users}
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
	fetcher, err := app.NewFetcher(cfg, versionString())
	if err != nil {
		return usageError{err}
	}
	matches, planErr := engine.Plan(ctx, cfg, fetcher, req)
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
func isFeedError(err error) bool { return errors.As(err, new(*engine.SourceError)) }

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
	// (and every reload) checks it, contacting nothing.
	if err := app.Preflight(ctx, cfg); err != nil {
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
